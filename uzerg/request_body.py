"""Where `wsgi.input` gets its bytes: the pull functions over one connection.

`LengthBody` reads a uwsgi request body (CONTENT_LENGTH bytes after the vars); `HttpBody`
pulls an HTTP body through the sans-I/O parser (Content-Length or chunked) and sends
`100 Continue` the first time the application asks for bytes that have not arrived.
"""

from __future__ import annotations

from uzerg.connection import Connection
from uzerg.protocols.http import END, HttpError, HttpRequestParser
from uzerg.wsgi_io import ClientDisconnected, InputStream

DRAIN_LIMIT = 65536  # unread body bytes worth reading to keep a connection or close it cleanly


class LengthBody:
    """Body bytes of a uwsgi request: what followed the vars, then the socket, up to length."""

    __slots__ = ("conn", "prefix", "remaining")

    def __init__(self, conn: Connection, prefix: bytes, length: int) -> None:
        self.conn = conn
        self.prefix = prefix[:length]
        self.remaining = length - len(self.prefix)

    def __call__(self, hint: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        if self.remaining <= 0:
            return b""
        data = self.conn.recv(min(self.remaining, max(hint, 65536)))
        if not data:
            raise ClientDisconnected(0, "client closed the connection in the request body")
        self.remaining -= len(data)
        return data


class HttpBody:
    """Body bytes of an HTTP request, decoded by the parser (Content-Length or chunked)."""

    __slots__ = ("conn", "parser", "expect_continue")

    def __init__(self, conn: Connection, parser: HttpRequestParser, expect_continue: bool) -> None:
        self.conn = conn
        self.parser = parser
        self.expect_continue = expect_continue

    def __call__(self, hint: int) -> bytes:
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except HttpError as exc:
                raise ClientDisconnected(0, f"invalid request body: {exc.message}") from None
            if type(event) is bytes:
                return event
            if event is END:
                return b""
            if self.expect_continue:
                self.expect_continue = False
                self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            data = self.conn.recv(max(hint, 65536))
            if not data:
                raise ClientDisconnected(0, "client closed the connection in the request body")
            parser.feed(data)


def drain_before_close(stream: InputStream) -> None:
    """Read what is left of a small unread body: closing a socket with unread input makes
    the kernel send a reset, which can destroy the response before the client reads it."""
    try:
        stream.drain(DRAIN_LIMIT)
    except ClientDisconnected:
        pass
