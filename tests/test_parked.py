"""ParkedConnections: the cap drops the oldest, deadlines come due in any order, idle
keep-alive connections are told apart (a real epoll and socketpairs, no processes)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from uzerg.processes.parked import ParkedConnections
from uzerg.serve.connection import Connection
from uzerg.serve.pending import PendingHead


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def head(pairs: list[tuple[socket.socket, socket.socket]], deadline: float, data: bytes = b"x",
         idle: bool = False) -> PendingHead:
    server, client = socket.socketpair()
    pairs.append((server, client))
    return PendingHead(Connection(server, 4), None, "http", None, data, deadline, idle)


def test_beyond_the_limit_the_oldest_is_handed_back(pairs) -> None:
    with select.epoll() as poller:
        parked = ParkedConnections(poller, 2)
        first, second, third = (head(pairs, 10.0 + i) for i in range(3))
        assert parked.park(first) is None and parked.park(second) is None
        assert parked.park(third) is first
        assert len(parked) == 2 and parked.take(first.fd) is None


def test_deadlines_come_due_whatever_the_parking_order(pairs) -> None:
    with select.epoll() as poller:
        parked = ParkedConnections(poller, 10)
        late, early = head(pairs, 50.0), head(pairs, 20.0)
        parked.park(late)
        parked.park(early)
        assert parked.next_deadline == 20.0
        assert parked.due(30.0) == [early]
        assert parked.next_deadline == 50.0
        assert parked.due(60.0) == [late] and not parked


def test_a_readable_head_is_reported_by_the_poller_and_taken(pairs) -> None:
    with select.epoll() as poller:
        parked = ParkedConnections(poller, 10)
        pending = head(pairs, 20.0)
        parked.park(pending)
        pairs[-1][1].send(b"more")
        assert [fd for fd, _ in poller.poll(1)] == [pending.fd]
        assert parked.take(pending.fd) is pending and parked.take(pending.fd) is None
        parked.park(pending)  # parked again (still registered): no second register()
        assert len(parked) == 1


def test_idle_takes_keepalive_waits_only(pairs) -> None:
    with select.epoll() as poller:
        parked = ParkedConnections(poller, 10)
        begun, fresh = head(pairs, 1.0), head(pairs, 1.0, b"")
        idle = head(pairs, 1.0, b"", idle=True)
        for pending in (begun, fresh, idle):
            parked.park(pending)
        assert parked.idle() == [idle]
        assert list(parked) == [begun, fresh]
