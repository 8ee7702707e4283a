"""The master's service interface: the selector follows what services watch, and wakes up
when one asks for it (uzerg.processes.services)."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Mapping

from uzerg.processes.services import MasterService, OnReadable, Watches


class OneSocket(MasterService):
    def __init__(self) -> None:
        self.mine, self.peer = socket.socketpair()
        self.resume_at = 0.0
        self.readable = 0

    def on_readable(self) -> None:
        self.readable += 1
        self.mine.recv(16)

    def watches(self) -> Mapping[int, OnReadable]:
        if self.resume_at > time.monotonic():
            return {}
        return {self.mine.fileno(): self.on_readable}

    def wake_at(self) -> float | None:
        return self.resume_at if self.resume_at > time.monotonic() else None

    def close_in_worker(self) -> None:
        self.mine.close()

    def shutdown(self, vacuum: bool) -> None:
        self.mine.close()
        self.peer.close()


def test_the_selector_follows_what_services_watch() -> None:
    with selectors.DefaultSelector() as selector:
        service, other = OneSocket(), OneSocket()
        watches = Watches(selector)
        watches.sync([service, other])
        assert set(selector.get_map()) == {service.mine.fileno(), other.mine.fileno()}
        service.peer.send(b"x")
        watches.dispatch(1)
        assert (service.readable, other.readable) == (1, 0)
        service.resume_at = time.monotonic() + 60  # backing off: not watched, wake up then
        watches.sync([service, other])
        assert set(selector.get_map()) == {other.mine.fileno()}
        assert 59 < watches.timeout([service, other], 120) <= 60
        assert watches.timeout([other], 1.0) == 1.0
        service.resume_at = 0.0
        watches.sync([service, other])
        assert service.mine.fileno() in selector.get_map()
        for item in (service, other):
            item.shutdown(vacuum=False)


class Writer(OneSocket):
    """Watches its socket for writability while it has something to write."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = b"answer"

    def on_writable(self) -> None:
        self.pending = self.pending[self.mine.send(self.pending):]

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def write_watches(self) -> Mapping[int, OnReadable]:
        return {self.mine.fileno(): self.on_writable} if self.pending else {}


def test_write_watches_are_called_when_writable_and_dropped_after() -> None:
    with selectors.DefaultSelector() as selector:
        writer = Writer()
        watches = Watches(selector)
        watches.sync([writer])
        assert selector.get_key(writer.mine.fileno()).events == selectors.EVENT_WRITE
        watches.dispatch(1)
        assert writer.pending == b""
        assert writer.peer.recv(16) == b"answer"
        watches.sync([writer])
        assert writer.mine.fileno() not in selector.get_map()
        writer.shutdown(vacuum=False)
