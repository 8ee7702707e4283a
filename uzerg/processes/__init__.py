"""Processes: start-up, the master loop, workers, re-exec, fifo, scoreboard, stats."""
