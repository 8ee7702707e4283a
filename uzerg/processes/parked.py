"""One core's parked connections: partial request heads waiting in its epoll next to the
listeners, each with a deadline, at most `limit` of them (the oldest makes room)."""

from __future__ import annotations

import select
from collections.abc import Iterator

from uzerg.serve.pending import PendingHead

_NEVER = float("inf")  # (math.inf: one module more to load at a zerg's start)


class ParkedConnections:
    def __init__(self, poller: select.epoll, limit: int) -> None:
        self._poller = poller
        self.limit = max(1, limit)
        # fd -> waiting head, in the order they were parked (the first is the oldest); the
        # worker's loop tests this dict, not len(self): a Python call per wake-up costs
        self.waiting: dict[int, PendingHead] = {}
        # fds registered in the poller: a taken head stays registered while it is served, so
        # that a keep-alive connection parked again costs no epoll_ctl()
        self._registered: set[int] = set()
        self.next_deadline = _NEVER

    def __len__(self) -> int:
        return len(self.waiting)

    def park(self, pending: PendingHead) -> PendingHead | None:
        """Wait for `pending`'s next bytes; returns the oldest head, to be dropped, when that
        makes one too many."""
        fd = pending.conn.fd
        if fd not in self._registered:
            self._poller.register(fd, select.EPOLLIN)
            self._registered.add(fd)
        self.waiting[fd] = pending
        if pending.deadline < self.next_deadline:
            self.next_deadline = pending.deadline
        if len(self.waiting) <= self.limit:
            return None
        oldest = next(iter(self.waiting))
        return self.waiting.pop(oldest)

    def take(self, fd: int) -> PendingHead | None:
        """The head waiting on `fd` (now readable), or None: not one of ours."""
        return self.waiting.pop(fd, None)

    def forget(self, fd: int) -> None:
        """`fd`'s connection was closed (which took it out of the epoll)."""
        self._registered.discard(fd)

    def unregister_stale(self, fd: int) -> None:
        """An event for an fd that is neither waiting nor a listener: stop watching it."""
        self._registered.discard(fd)
        try:
            self._poller.unregister(fd)
        except (OSError, ValueError):
            pass

    def due(self, now: float) -> list[PendingHead]:
        """Take every head whose deadline has passed."""
        expired = [p for p in self.waiting.values() if p.deadline <= now]
        for pending in expired:
            del self.waiting[pending.conn.fd]
        self.next_deadline = min((p.deadline for p in self.waiting.values()), default=_NEVER)
        return expired

    def idle(self) -> list[PendingHead]:
        """Take every keep-alive connection that waits for a next request it has not begun
        (a fresh connection with no bytes yet is not one: its client is about to send)."""
        quiet = [p for p in self.waiting.values() if p.idle]
        for pending in quiet:
            del self.waiting[pending.conn.fd]
        return quiet

    def __iter__(self) -> Iterator[PendingHead]:
        return iter(list(self.waiting.values()))
