"""``touch-chain-reload = FILE``: uWSGI's chain reload (core/master_checks.c,
uwsgi_master_check_chain), as a master service.

Touching the file replaces the workers one after the other: worker 1 is asked to finish its
request and exit (SIGHUP; the master respawns it at once), and worker 2 goes only once the
new worker 1 is ready (its app loaded, listening), and so on; workers not running (cheaper
slots, a respawn pending) are skipped. With lazy-apps each new worker loads fresh code, with
never fewer than ``processes - 1`` workers serving. uWSGI's lines: ``*** FILE has been
touched... chain reload !!! ***``, ``chain next victim is worker N``, ``chain is still waiting
for worker N...`` (once a second), ``chain reloading complete``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence

from uzerg.logs import get_logger
from uzerg.processes.checks import TouchReload
from uzerg.processes.services import MasterService, OnReadable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()

POLL = 0.05  # seconds between readiness checks while a chain runs


class ChainReload(MasterService):
    label = "touch-chain-reload"

    def __init__(self, paths: Sequence[str]) -> None:
        self.touch = TouchReload(paths)
        self.master: MasterView | None = None
        self.position = 0  # the worker id in hand; 0: no chain running
        self.victim_pid = 0  # the process of that worker asked to go (0: not yet)
        self._last_touch_check = 0
        self._last_wait_log = 0

    def start(self, master: MasterView) -> None:
        self.master = master

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def wake_at(self) -> float | None:
        return time.monotonic() + POLL if self.position else None

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        self.position = 0

    def tick(self) -> None:
        master = self.master
        if master is None:
            return
        if master.stopping:
            self.position = 0
            return
        self._check_touch()
        if self.position:
            self._advance(master)

    def _check_touch(self) -> None:
        second = int(time.time())
        if second == self._last_touch_check:
            return
        self._last_touch_check = second
        changed = self.touch.changed()
        if not changed:
            return
        path = changed[0]
        if self.position:
            log.info(f"*** {path} has been touched... but chain reload is already "
                     "running ***", event_kind="chain_reload_busy", path=path)
        else:
            log.info(f"*** {path} has been touched... chain reload !!! ***",
                     event_kind="chain_reload", path=path)
            self.position, self.victim_pid = 1, 0

    def _advance(self, master: MasterView) -> None:
        records = {record.worker_id: record for record in master.worker_records()}
        cheap = {record.worker_id for record in master.cheap_records()}
        while self.position <= master.desired:
            wid = self.position
            record = records.get(wid)
            slot = master.scoreboard.worker(wid)
            if self.victim_pid:
                replaced = record is not None and record.pid != self.victim_pid
                if (replaced and slot.pid == record.pid and slot.ready) or wid in cheap:
                    self.position, self.victim_pid = wid + 1, 0
                    continue
                second = int(time.time())
                if second != self._last_wait_log:
                    self._last_wait_log = second
                    log.info(f"chain is still waiting for worker {wid}...",
                             event_kind="chain_wait", worker=wid)
                return
            if record is None or wid in cheap or not slot.ready:
                self.position += 1  # not running: nothing to replace
                continue
            log.info(f"chain next victim is worker {wid}", event_kind="chain_victim",
                     worker=wid, pid=record.pid)
            self.victim_pid = record.pid
            try:
                os.kill(record.pid, signal.SIGHUP)  # finish the request, exit, respawned
            except ProcessLookupError:
                pass
            return
        log.info("chain reloading complete", event_kind="chain_complete")
        self.position = 0
