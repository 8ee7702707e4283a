"""A vassal's end of the Emperor channel (``UWSGI_EMPEROR_FD``), a service of the master's
loop: it obeys stop/reload, tells the Emperor it is up, loyal (first request served) and alive
(``heartbeat``), and asks for zergs when a listen queue reaches ``vassal-sos-backlog`` (TCP
and, unlike uWSGI, unix sockets too) or every worker is busy (``vassal-sos``)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from uzerg.config.model import Config
from uzerg.emperor import channel
from uzerg.logs import get_logger
from uzerg.processes.services import Kept, MasterService, OnReadable
from uzerg.processes.stats import listen_queue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()

SOS_INTERVAL = 1.0  # at most one sos a second, as uWSGI's master cycle sends them
SOS_CHECK = 0.1  # the listen queue is looked at this often


class EmperorLink(MasterService):
    label = "Emperor channel"

    def __init__(self, fd: int, config: Config) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.config = config
        self.master: MasterView | None = None
        self.lost = False
        self.loyal = False
        self.next_heartbeat = 0.0
        self.last_sos = 0.0
        self.last_overload_sos = 0.0
        self.asked_to_stop = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], config: Config) -> EmperorLink | None:
        """The link when this process is a vassal (a valid ``UWSGI_EMPEROR_FD``), else None."""
        text = environ.get(channel.ENV_FD, "")
        if not text.isdigit():
            return None
        try:
            os.fstat(int(text))
        except OSError:
            log.warning(f"{channel.ENV_FD}={text} is not an open descriptor: not a vassal",
                        event_kind="emperor_fd_invalid")
            return None
        return cls(int(text), config)

    # -- the service ---------------------------------------------------------------------------

    def start(self, master: MasterView) -> None:
        self.master = master
        self.send(channel.SPAWNED)  # the workers are up (uWSGI's "ready" byte)

    def watches(self) -> Mapping[int, OnReadable]:
        return {} if self.lost else {self.sock.fileno(): self.handle_readable}

    def wake_at(self) -> float | None:
        if self.config.vassal_sos_backlog or self.config.vassal_sos:
            return time.monotonic() + SOS_CHECK
        return None

    def handover(self) -> Kept:
        return Kept(fds=(self.sock.fileno(),))  # the re-executed master is still a vassal

    def close_in_worker(self) -> None:
        self.sock.close()

    def shutdown(self, vacuum: bool) -> None:
        self.sock.close()

    # -- the channel ---------------------------------------------------------------------------

    def send(self, command: int) -> None:
        try:
            self.sock.send(bytes((command,)))
        except OSError as exc:
            log.error(f"cannot write to the Emperor: {exc.strerror}", event_kind="emperor_write")

    def handle_readable(self) -> None:
        master = self.master
        data = channel.receive(self.sock)
        if data is None or master is None:
            return
        if not data:
            log.error("lost connection with my emperor !!!", event_kind="emperor_lost")
            self.lost = True
            master.shutdown(graceful=False)
            return
        for byte in data:
            log.info(f"received message {byte} from emperor", event_kind="emperor_message",
                     command=byte)
            if byte == channel.STOP:
                master.shutdown(graceful=False)
            elif byte == channel.RELOAD:
                master.reload()
            elif byte == channel.GRACEFUL_STOP:
                master.shutdown(graceful=True)

    def ask_to_stop(self) -> None:
        """die-on-idle: the Emperor decides (it answers with a stop command)."""
        if not self.asked_to_stop:
            self.send(channel.STOP_ME)
            self.asked_to_stop = True

    # -- periodic ------------------------------------------------------------------------------

    def tick(self) -> None:
        master = self.master
        if master is None or self.lost:
            return
        now = time.monotonic()
        if not self.loyal and master.scoreboard.total_requests() > 0:
            log.info("announcing my loyalty to the Emperor...", event_kind="emperor_loyal")
            self.send(channel.LOYAL)
            self.loyal = True
        if self.config.heartbeat and now >= self.next_heartbeat:
            self.send(channel.HEARTBEAT)
            self.next_heartbeat = now + self.config.heartbeat
        if not master.stopping:
            self._check_backlog(master, now)
            self._check_overload(master, now)

    def _check_backlog(self, master: MasterView, now: float) -> None:
        limit = self.config.vassal_sos_backlog
        if limit and now - self.last_sos >= SOS_INTERVAL:
            backlog = max((listen_queue(item.sock)[0] for item in master.listeners), default=0)
            if backlog >= limit:
                log.info(f"asking Emperor for reinforcements (backlog: {backlog})...",
                         event_kind="sos", backlog=backlog)
                self.send(channel.SOS)
                self.last_sos = now

    def _check_overload(self, master: MasterView, now: float) -> None:
        """vassal-sos: every worker busy (uWSGI counts this as "overloaded")."""
        every = self.config.vassal_sos
        records = master.worker_records()
        if not every or not records or now - self.last_overload_sos <= every:
            return
        if all(master.scoreboard.busy_since(r.worker_id) for r in records):
            log.info(f"asking Emperor for reinforcements (overload: all {len(records)} workers "
                     "busy)...", event_kind="sos", workers=len(records))
            self.send(channel.SOS)
            self.last_overload_sos = now
