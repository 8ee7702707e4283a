"""Periodic checks of the master's tick: harakiri (a worker stuck on one request too long is
killed), the mercy of stopping workers (killed when it runs out), max-worker-lifetime (a
worker past it is asked to finish and exit) and touch-reload (touching a file reloads the
instance)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from uzerg.logs import get_logger
from uzerg.processes.process import file_mtime
from uzerg.processes.scoreboard import Scoreboard

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()


def harakiri_victims(scoreboard: Scoreboard, records: Iterable[Any], limit: float,
                     now: float) -> list[Any]:
    """The workers busy on one request for ``limit`` seconds or more (wall clock ``now``);
    each is counted and logged once per stuck request."""
    victims = []
    for record in records:
        since = scoreboard.busy_since(record.worker_id)
        if since and now - since >= limit:
            record.harakiri_count += 1
            log.error(f"*** HARAKIRI ON WORKER {record.worker_id} (pid: {record.pid}, "
                      "try: 1, graceful: no) ***", event_kind="harakiri",
                      worker=record.worker_id, pid=record.pid)
            for core in scoreboard.cores_of(record.worker_id):
                core.request_start = 0.0  # once per stuck request
            victims.append(record)
    return victims


def out_of_mercy(records: Iterable[Any], now: float) -> list[Any]:
    """The stopping workers whose mercy deadline (``kill_at``, monotonic) has passed; each is
    logged once (its deadline is cleared)."""
    overdue = []
    for record in records:
        if record.kill_at and now >= record.kill_at:
            log.error(f"worker {record.worker_id} (pid: {record.pid}) is taking too much "
                      "time to die...NO MERCY !!!", event_kind="no_mercy", pid=record.pid)
            record.kill_at = 0.0
            overdue.append(record)
    return overdue


def lifetime_reached(records: Iterable[Any], lifetime: int, delta: int, now: float) -> list[Any]:
    """max-worker-lifetime (+ ``delta`` seconds per worker id, as uWSGI's master_checks): the
    workers that ran longer (monotonic ``now``); each is logged and returned once."""
    reached = []
    for record in records:
        running = now - record.spawned_mono
        if running > lifetime + (record.worker_id - 1) * delta and not record.lifetime_reached:
            record.lifetime_reached = True
            log.info(f"worker {record.worker_id} lifetime reached, it was running for "
                     f"{int(running)} second(s)", event_kind="worker_lifetime",
                     worker=record.worker_id)
            reached.append(record)
    return reached


class TouchReload:
    """The touch-reload files and their last modification times."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.mtimes = {path: file_mtime(path) for path in paths}

    def changed(self) -> list[str]:
        """The files whose modification time changed since the last call."""
        changed = []
        for path, mtime in self.mtimes.items():
            current = file_mtime(path)
            if current != mtime:
                self.mtimes[path] = current
                changed.append(path)
        return changed

    def touched(self) -> bool:
        """touch-reload: True when a file changed since the last call (each change logged)."""
        changed = self.changed()
        for path in changed:
            log.info(f"*** {path} has been touched... grace them all !!! ***",
                     event_kind="touch_reload", path=path)
        return bool(changed)

