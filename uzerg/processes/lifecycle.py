"""Readiness as a master service: once every worker accepts, take over from the old version
(``takeover``) and tell systemd (``NOTIFY_SOCKET``); then keep systemd told.

"Ready" is the scoreboard's per-worker ``ready`` flag, set by a worker once it has its app and
has registered its listeners (forked is not enough: a takeover must not pause the old version
while the new one still imports its app). Until then the service asks the loop to wake up
every ``READY_POLL`` seconds. Notifications: ``READY=1`` (with the worker count in
``STATUS=``), ``RELOADING=1`` when the master re-executes itself (``handover``; ``READY=1``
again from the new master once its workers are ready, or at once if the exec failed),
``STOPPING=1`` as soon as the master starts stopping, ``STATUS=`` when the worker count
changes (TTIN/TTOU, cheaper mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.services import Kept, MasterService, OnReadable
from uzerg.systemd import Notifier

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()

READY_POLL = 0.02  # seconds between readiness checks until every worker is ready


class LifecycleService(MasterService):
    label = "readiness"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.notifier = Notifier.from_environ(os.environ)
        self.master: MasterView | None = None
        self.announced = False
        self.stopping_sent = False
        self.reloading = False  # RELOADING=1 sent; still running afterwards: the exec failed
        self.workers_told = 0
        self.took_over = False

    def start(self, master: MasterView) -> None:
        self.master = master

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def wake_at(self) -> float | None:
        if self.announced or self.master is None or self.master.stopping:
            return None
        return time.monotonic() + READY_POLL

    def tick(self) -> None:
        master = self.master
        if master is None:
            return
        if master.stopping:
            if not self.stopping_sent:
                self.stopping_sent = True
                self.notifier.stopping()
            return
        if self.reloading:  # handover() ran, and we are still here: the re-exec failed
            self.reloading = False
            self.notifier.ready("uzerg is ready: the reload failed, the old code keeps serving")
        if not self.announced:
            if self._all_ready(master):
                self.announced = True
                self.workers_told = master.wanted
                self._take_over()
                self.notifier.ready(self._status(master.wanted))
            return
        if master.wanted != self.workers_told:
            self.workers_told = master.wanted
            self.notifier.status(self._status(master.wanted))

    def _all_ready(self, master: MasterView) -> bool:
        records = master.worker_records()
        if len(records) < master.wanted:
            return False
        return all(master.scoreboard.worker(record.worker_id).ready for record in records)

    def _status(self, workers: int) -> str:
        if self.master is not None and not self.master.listeners:
            return "uzerg is ready: zergpools only"
        return f"uzerg is ready: {workers} worker{'s' if workers != 1 else ''} accepting"

    def _take_over(self) -> None:
        """Before READY=1: `systemctl start` of a deploy returns once it is in service."""
        pidfile = self.config.takeover
        if not pidfile:
            return
        # loaded when configured (a plain start-up does not: issue 13), before the privilege
        # drop by import_before_privilege_drop
        from uzerg.processes.takeover import TakeoverError, take_over

        try:
            take_over(pidfile, stop=self.config.takeover_stop)
            self.took_over = True
        except (TakeoverError, OSError) as exc:
            log.error(f"takeover {pidfile} failed: {exc}", event_kind="takeover_failed")

    def handover(self) -> Kept:
        self.reloading = True
        self.notifier.reloading()
        return Kept()

    def close_in_worker(self) -> None:
        self.notifier.close()  # a worker never speaks for the service

    def shutdown(self, vacuum: bool) -> None:
        self.notifier.close()
