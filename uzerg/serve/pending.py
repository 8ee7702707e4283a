"""A connection waiting for the rest of its request head, handed back by the request handler,
and what is done with one: wait for it (blocking callers), or drop it.

The handler never waits on a head: what the socket holds is parsed, and a head that is not
complete comes back as a `PendingHead` for the worker to park in its epoll until more bytes
come or `deadline` passes (issue 11: slow-loris clients must not pin a worker).
"""

from __future__ import annotations

import select
import time
from collections import namedtuple

from uzerg.logs import get_logger
from uzerg.serve.connection import Connection, peer_text
from uzerg.serve.wsgi_io import ClientDisconnected

TYPE_CHECKING = False

log = get_logger()

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
    b"Connection: close\r\n\r\n408 Request Timeout\n"
)


class PendingHead:
    __slots__ = ("conn", "peer", "protocol", "server_port", "data", "deadline", "idle",
                 "redirect_port")

    def __init__(
        self, conn: Connection, peer: Any, protocol: str, server_port: str | None,
        data: bytes, deadline: float, idle: bool, redirect_port: str = "",
    ) -> None:
        self.conn = conn
        self.peer = peer
        self.protocol = protocol  # "uwsgi", "http", "http11" or "https-redirect"
        self.redirect_port = redirect_port  # "https-redirect": the port of the Location
        self.server_port = server_port
        self.data = data  # the head's bytes so far
        self.deadline = deadline  # time.monotonic() after which it is dropped
        # between two keep-alive requests: nothing owed, and the head's deadline starts with
        # its first byte
        self.idle = idle

    @property
    def fd(self) -> int:
        return self.conn.fd


if TYPE_CHECKING:
    from typing import Any, NamedTuple, Protocol

    class HandledCounts(NamedTuple):
        """What serving (part of) a connection did, for the worker's counters."""

        requests: int  # requests answered on this connection (errors included)
        exceptions: int  # application exceptions
        tx: int  # bytes written
        status: int  # status of the last response (0: none)
        static_requests: int = 0  # files served by --static-map
        read_errors: int = 0  # failed reads of request bodies
        pending: PendingHead | None = None  # not closed: waiting for the rest of a request head

    class _ConnectionHandler(Protocol):
        def resume(self, pending: PendingHead, *, core: int = 0) -> HandledCounts: ...

        def expire(self, pending: PendingHead, why: str = "timeout") -> HandledCounts: ...
else:
    # the same class as typing.NamedTuple makes (a collections.namedtuple), without importing
    # typing at run time (a zerg's start-up time, issue 13); the fields are described above
    HandledCounts = namedtuple(
        "HandledCounts",
        ("requests", "exceptions", "tx", "status", "static_requests", "read_errors", "pending"),
        defaults=(0, 0, None), module=__name__,
    )
    HandledCounts.__doc__ = "What serving (part of) a connection did, for the worker's counters."


def serve_blocking(handler: _ConnectionHandler, counts: HandledCounts, core: int) -> HandledCounts:
    """Wait on each pending head of one connection in turn (a private epoll), until it is
    closed; the sum of the counts."""
    total = counts._replace(pending=None)
    while (pending := counts.pending) is not None:
        if pending.conn.buffered():
            ready = True  # TLS: bytes already decrypted, the fd may never become readable
        else:
            with select.epoll(1) as poller:
                poller.register(pending.fd, select.EPOLLIN)
                ready = bool(poller.poll(max(0.0, pending.deadline - time.monotonic()), 1))
        counts = handler.resume(pending, core=core) if ready else handler.expire(pending)
        total = add_counts(total, counts)
    return total


def add_counts(total: HandledCounts, counts: HandledCounts) -> HandledCounts:
    """`total` and `counts` summed; the status and the pending head are the later ones."""
    return HandledCounts(
        total.requests + counts.requests, total.exceptions + counts.exceptions,
        total.tx + counts.tx, counts.status or total.status,
        total.static_requests + counts.static_requests,
        total.read_errors + counts.read_errors, counts.pending,
    )


def drop_pending(pending: PendingHead, why: str, head_timeout: float) -> HandledCounts:
    """Close a parked connection: a 408 to an HTTP client that sent part of a head, and a log
    line; quietly when no request had begun."""
    conn = pending.conn
    conn.tx = 0  # what was sent before is counted already
    status = 0
    if pending.data and not pending.idle:
        if why == "timeout":
            what = f"timeout: request head incomplete after {head_timeout:g} s"
        else:
            what = f"{why}: request head incomplete"
        if pending.protocol != "uwsgi":
            conn.send_nowait(_408)
            status = 408
        log.info(f"{what} ({peer_text(pending.peer)}): closing", event_kind="client_timeout",
                 status=status)
    conn.close()
    return HandledCounts(1 if status else 0, 0, conn.tx, status)


def read_more(pending: PendingHead, size: int, head_timeout: float) -> bool | None:
    """Read what a readable parked connection has. True: `pending.data` holds all the bytes
    so far and its deadline is the head's, serve on; False: nothing came after all (a
    spurious wake-up); None: the client closed it (and so did we)."""
    conn = pending.conn
    try:
        data = conn.recv_nowait(size)
    except ClientDisconnected as exc:
        log.info(f"client {peer_text(pending.peer)} disconnected: {exc.strerror}",
                 event_kind="client_gone")
        data = b""
    if data is None:
        return False
    if not data:
        if pending.data.strip():
            log.info("uwsgi_proto_http_parser() -> client closed connection"
                     if pending.protocol != "uwsgi" else
                     "uwsgi: client closed the connection before the end of the packet")
        conn.close()
        return None
    conn.tx = 0  # what was sent before is counted already
    pending.data += data
    if pending.idle:  # the next keep-alive request has begun: its head's deadline starts
        pending.deadline = time.monotonic() + head_timeout
        pending.idle = False
    return True
