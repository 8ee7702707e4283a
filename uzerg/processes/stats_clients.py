"""The stats server's clients, served without blocking the loop that runs them (the master's,
the Emperor's): each connection is its own watch. Over HTTP the request is read as its bytes
arrive (up to the blank line, 64 KiB at most); the answer is built once and written as the
kernel takes it. A client has ``EXCHANGE_SECONDS`` to send its request, then as long to read
the answer; past that it is dropped (logged at info, as a client that went away)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable

from uzerg.logs import get_logger
from uzerg.processes.guard import GUARD

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()

EXCHANGE_SECONDS = 2.0  # reading a stats request, and writing the answer: each at most
MAX_HEAD = 65536  # bytes of an HTTP request read at most
_ERROR_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
              b"Connection: close\r\n\r\n")
# a client that went away: not the server's failure (logged at info)
_CLIENT_GONE = (ConnectionError, TimeoutError)


def peer_name(conn: socket.socket, peer: object) -> str:
    """``host:port`` of a TCP client; ``pid N`` of a unix one (SO_PEERCRED)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except OSError:
        return "unix peer"
    return f"pid {struct.unpack('3i', raw)[0]}"


def wants_prometheus(head: bytes) -> bool:
    target = head.split(b"\r\n", 1)[0].split(b" ")
    if len(target) < 2:
        return False
    query = target[1].partition(b"?")[2]
    return b"format=prometheus" in query.split(b"&")


class StatsClient:
    """One connection: reading its request (HTTP), then writing its answer, then closed.
    ``where`` names the server in a failure's line; ``done`` is called once it is closed."""

    def __init__(self, conn: socket.socket, peer: object, *, http: bool, prometheus: bool,
                 build: Callable[[], dict[str, Any]], where: str,
                 done: Callable[[StatsClient], None]) -> None:
        conn.setblocking(False)
        self.conn = conn
        self.fd = conn.fileno()
        self.peer = peer_name(conn, peer)
        self.http = http
        self.prometheus = prometheus
        self.build = build
        self.where = where
        self.done = done
        self.request = b""
        self.answer: memoryview | None = None  # None: still reading the request
        self.closed = False
        self.deadline = time.monotonic() + EXCHANGE_SECONDS
        if not http:  # the plain stats socket: the document at once, no request
            self._prepare(b"")

    # -- the loop's calls ---------------------------------------------------------------------

    def on_readable(self) -> None:
        if self.closed or self.answer is not None:
            return
        try:
            piece = self.conn.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._gone(exc)
            return
        self.request += piece
        if not piece or b"\r\n\r\n" in self.request or len(self.request) >= MAX_HEAD:
            self._prepare(self.request)

    def on_writable(self) -> None:
        if self.closed or self.answer is None:
            return
        try:
            while self.answer:
                sent = self.conn.send(self.answer)
                self.answer = self.answer[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._gone(exc)
            return
        self.close()

    def expire(self, now: float) -> None:
        if not self.closed and now >= self.deadline:
            self._gone(TimeoutError("timed out"))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.close()
            self.done(self)

    # -- inside --------------------------------------------------------------------------------

    def _prepare(self, request: bytes) -> None:
        """Build the answer and write what the kernel takes now; the rest when writable."""
        try:
            body, content_type = self._body(request)
        except Exception as exc:  # this request's failure only: the next one is served
            if self.http:
                with contextlib.suppress(OSError):  # the scraper sees a failure, not nothing
                    self.conn.send(_ERROR_500)
            GUARD.failed(self.where, exc, self.peer, "connection closed")
            self.close()
            return
        if self.http:
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                "Access-Control-Allow-Origin: *\r\n\r\n"
            ).encode()
            body = head + body
        self.answer = memoryview(body)
        self.deadline = time.monotonic() + EXCHANGE_SECONDS
        self.on_writable()

    def _body(self, request: bytes) -> tuple[bytes, str]:
        import json  # a stats request only: not at start-up

        from uzerg.processes import prometheus as prometheus_text

        if self.http and (self.prometheus or wants_prometheus(request)):
            return prometheus_text.render(self.build()).encode(), prometheus_text.CONTENT_TYPE
        return json.dumps(self.build(), indent=1).encode(), "application/json"

    def _gone(self, exc: OSError) -> None:
        if isinstance(exc, _CLIENT_GONE):
            log.info(f"stats client {self.peer} went away: {exc.strerror or exc}",
                     event_kind="stats_error")
        else:
            GUARD.failed(self.where, exc, self.peer, "connection closed")
        self.close()
