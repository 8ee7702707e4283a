"""The scoreboard lives in shared memory: what a forked worker writes, the master reads."""

from __future__ import annotations

import os

from uzerg.processes.scoreboard import Scoreboard


def test_scoreboard_is_shared_with_children() -> None:
    board = Scoreboard(4, 2)
    board.reset_for_spawn(2, 99)
    pid = os.fork()
    if pid == 0:
        board.core(2, 1).requests += 5
        board.core(2, 1).running_time += 500
        board.core(2, 0).request_start = 12.5
        board.header.total_requests += 5
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.worker(2).pid == 99 and board.worker(2).accepting == 1
    assert board.worker_totals(2) == {"requests": 5, "exceptions": 0, "tx": 0,
                                      "running_time": 500, "avg_rt": 100}
    assert board.busy_since(2) == 12.5 and board.busy_since(1) == 0.0
    assert board.total_requests() == 5 and board.header.total_requests == 5
    board.header.paused = 1
    board.reset_for_spawn(2, 100)
    assert board.worker(2).accepting == 0 and board.busy_since(2) == 0.0
    board.close()
