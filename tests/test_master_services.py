"""The master's service interface: the loop's epoll follows what services watch, and wakes up
when one asks for it (uzerg.processes.services)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Mapping

import pytest

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


def test_the_epoll_follows_what_services_watch() -> None:
    watches = Watches()
    service, other = OneSocket(), OneSocket()
    watches.sync([service, other])
    assert set(watches.callbacks) == {service.mine.fileno(), other.mine.fileno()}
    service.peer.send(b"x")
    watches.dispatch(1)
    assert (service.readable, other.readable) == (1, 0)
    service.resume_at = time.monotonic() + 60  # backing off: not watched, wake up then
    watches.sync([service, other])
    assert set(watches.callbacks) == {other.mine.fileno()}
    assert 59 < watches.timeout([service, other], 120) <= 60
    assert watches.timeout([other], 1.0) == 1.0
    service.resume_at = 0.0
    watches.sync([service, other])
    assert service.mine.fileno() in watches.callbacks
    for item in (service, other):
        item.shutdown(vacuum=False)
    watches.close()


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
    watches = Watches()
    writer = Writer()
    watches.sync([writer])
    assert watches.callbacks[writer.mine.fileno()].events == select.EPOLLOUT  # type: ignore[union-attr]
    watches.dispatch(1)
    assert writer.pending == b""
    assert writer.peer.recv(16) == b"answer"
    watches.sync([writer])
    assert writer.mine.fileno() not in watches.callbacks
    writer.shutdown(vacuum=False)
    watches.close()


def test_a_watched_descriptor_calls_back_when_readable_or_hung_up() -> None:
    # the signal wake-up pipe and the Emperor's vassal channels: watch() and unwatch()
    watches = Watches()
    calls: list[str] = []
    one, peer_one = socket.socketpair()
    two, peer_two = socket.socketpair()
    try:
        watches.watch(one.fileno(), lambda: calls.append("one"))
        watches.watch(two.fileno(), lambda: calls.append("two"))
        with pytest.raises(KeyError):
            watches.watch(one.fileno(), lambda: None)
        watches.dispatch(0)
        assert calls == []
        peer_one.send(b"x")
        peer_two.close()  # hung up: readable (EOF)
        watches.dispatch(1)
        assert sorted(calls) == ["one", "two"]
        watches.unwatch(two.fileno())
        calls.clear()
        watches.dispatch(0)
        assert calls == ["one"]  # still unread
        with pytest.raises(KeyError):
            watches.unwatch(two.fileno())
        one_fd = one.fileno()
        one.close()
        watches.unwatch(one_fd)  # closed meanwhile: no error
        assert watches.callbacks == {}
    finally:
        for sock in (one, peer_one, two, peer_two):
            sock.close()
        watches.close()


def test_a_handler_that_unwatches_another_ready_one_does_not_cancel_its_call() -> None:
    # as selectors: every ready descriptor's handler is looked up before any runs
    watches = Watches()
    calls: list[int] = []
    pairs = [socket.socketpair() for _ in range(2)]
    fds = [mine.fileno() for mine, _peer in pairs]

    def handler(index: int) -> None:
        calls.append(index)
        other = fds[1 - index]
        if other in watches.callbacks:
            watches.unwatch(other)

    try:
        for index, fd in enumerate(fds):
            watches.watch(fd, lambda index=index: handler(index))
        for _mine, peer in pairs:
            peer.send(b"x")
        watches.dispatch(1)
        assert sorted(calls) == [0, 1]
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()
        watches.close()


def test_a_negative_timeout_does_not_wait() -> None:
    # selectors waits 0 for a timeout <= 0; to epoll, a negative one means forever
    watches = Watches()
    mine, peer = socket.socketpair()
    waker = threading.Timer(3.0, lambda: peer.send(b"x"))  # bounds a broken version's wait
    try:
        watches.watch(mine.fileno(), lambda: None)
        waker.start()
        started = time.monotonic()
        watches.dispatch(-0.5)
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        watches.dispatch(0.05)
        assert time.monotonic() - started >= 0.05
    finally:
        waker.cancel()
        waker.join()
        mine.close()
        peer.close()
        watches.close()
