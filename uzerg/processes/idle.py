"""``idle = SECONDS`` (uWSGI's meaning), a service of the master's loop: after that long without
a request and with no worker busy, the instance goes cheap (its workers stop; this service
watches the sockets and the next connection brings them back), or with ``die-on-idle`` it exits
(a vassal asks its Emperor to stop it). ``cheap`` starts in cheap mode."""

from __future__ import annotations

import time
from collections.abc import Mapping

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.services import MasterService, OnReadable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.emperor.link import EmperorLink
    from uzerg.processes.services import MasterView

log = get_logger()


class IdleService(MasterService):
    label = "idle"

    def __init__(self, config: Config, link: EmperorLink | None) -> None:
        self.seconds = config.idle
        self.die = config.die_on_idle
        self.link = link
        self.master: MasterView | None = None
        self.last_count = -1
        self.last_change = time.monotonic()

    def start(self, master: MasterView) -> None:
        self.master = master

    def watches(self) -> Mapping[int, OnReadable]:
        master = self.master
        if master is None or not master.cheap:
            return {}
        return {item.fd: master.leave_cheap for item in master.listeners}

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        pass

    def tick(self) -> None:
        master = self.master
        if master is None or not self.seconds or master.cheap or master.stopping:
            return
        now = time.monotonic()
        board = master.scoreboard
        count = board.total_requests()
        busy = any(board.busy_since(r.worker_id) for r in master.worker_records())
        if count != self.last_count or busy or board.header.paused:
            self.last_count = count
            self.last_change = now
            return
        if now - self.last_change <= self.seconds:
            return
        self.last_change = now
        log.info(f"workers have been inactive for more than {self.seconds} seconds",
                 event_kind="idle", seconds=self.seconds)
        if self.die:
            if self.link is not None:
                log.info("die-on-idle: asking the Emperor to stop this vassal",
                         event_kind="die_on_idle")
                self.link.ask_to_stop()
            else:
                log.info("die-on-idle: shutting down", event_kind="die_on_idle")
                master.shutdown(graceful=True)
            return
        master.enter_cheap()
