"""Where `wsgi.input` gets its bytes: the pull functions over one connection.

`LengthBody` reads a uwsgi request body (CONTENT_LENGTH bytes after the vars); `HttpBody`
(uzerg.serve.http_body, the HTTP side: not loaded for uwsgi sockets only) pulls an HTTP body.
A malformed chunked body raises `InvalidBody` to the application and is kept in
`HttpBody.error` for the request handler (a 400 by `send_error_response()`, or a closed
connection once a response has started).
"""

from __future__ import annotations

import os

from uzerg.serve.connection import Connection, ReadTimeout
from uzerg.serve.wsgi_io import BodyReadError, ClientDisconnected, InputStream, body_read_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.protocols.http import HttpError


class InvalidBody(BodyReadError):
    """The request body's framing is malformed (a bad chunk size, extension or CRLF): to the
    application, a failed `wsgi.input` read; `http_error` is the parser's error."""

    def __init__(self, hint: int, http_error: HttpError) -> None:
        message = f"error during read({hint}) on wsgi.input: invalid request body"
        super().__init__(message)
        self.strerror = message
        self.http_error = http_error

DRAIN_LIMIT = 65536  # unread body bytes worth reading to keep a connection or close it cleanly


class LengthBody:
    """Body bytes of a uwsgi request: what followed the vars, then the socket, up to length."""

    __slots__ = ("conn", "prefix", "remaining", "length")

    def __init__(self, conn: Connection, prefix: bytes, length: int) -> None:
        self.conn = conn
        self.prefix = prefix[:length]
        self.length = length
        self.remaining = length - len(self.prefix)

    def __call__(self, hint: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        if self.remaining <= 0:
            return b""
        size = min(self.remaining, max(hint, 65536))
        try:
            data = self.conn.recv(size)
        except ClientDisconnected as exc:
            raise read_failed(exc, hint, min(hint, self.remaining), self.length,
                              self.length - self.remaining) from None
        if not data:
            raise read_failed(None, hint, min(hint, self.remaining), self.length,
                              self.length - self.remaining)
        self.remaining -= len(data)
        return data

    def left(self) -> int:
        """The body bytes not handed out yet (-1 over TLS: no large reads into a buffer)."""
        if type(self.conn) is not Connection:
            return -1
        return self.remaining + len(self.prefix)

    def into(self, view: memoryview, hint: int) -> int:
        """Up to len(view) body bytes received straight into `view` (a large read, see
        InputStream.read; `hint`: the read's, for the error); 0 at the end of the body; -1:
        use __call__ instead."""
        if self.prefix or type(self.conn) is not Connection:
            return -1
        if self.remaining <= 0:
            return 0
        try:
            got = self.conn.recv_into(view[: min(self.remaining, len(view))])
        except ClientDisconnected as exc:
            raise read_failed(exc, hint, min(hint, self.remaining), self.length,
                              self.length - self.remaining) from None
        if not got:
            raise read_failed(None, hint, min(hint, self.remaining), self.length,
                              self.length - self.remaining)
        self.remaining -= got
        return got


def read_failed(
    exc: ClientDisconnected | None, hint: int, wanted: int, length: int, consumed: int
) -> BodyReadError:
    """uWSGI's body-read error: the line it logs and the OSError the application sees."""
    counts = (f"{wanted} bytes. Content-Length: {length} consumed: {consumed} "
              f"left: {max(length - consumed, 0)}")
    if isinstance(exc, ReadTimeout):
        line = f"[uwsgi-body-read] Timeout reading {counts}"
    else:
        if exc is None:
            message = "Client closed connection"
        else:
            message = os.strerror(exc.errno) if exc.errno else str(exc.strerror)
        line = f"[uwsgi-body-read] Error reading {counts} message: {message}"
    return body_read_error(hint, line, timed_out=isinstance(exc, ReadTimeout))


def drain_before_close(stream: InputStream) -> None:
    """Read what is left of a small unread body: closing a socket with unread input makes
    the kernel send a reset, which can destroy the response before the client reads it."""
    try:
        stream.drain(DRAIN_LIMIT)
    except ClientDisconnected:
        pass


def send_error_response(conn: Connection, exc: HttpError, extra: bytes = b"") -> None:
    """The error's response (with the `extra` header lines of add-header), then a brief read
    of what the client still sends (see Connection.discard_input); the connection is to be
    closed after it."""
    body = f"{exc.status} {exc.reason}\n".encode()
    conn.sendall(
        f"HTTP/1.1 {exc.status} {exc.reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode() + extra + b"\r\n"
        + body
    )
    conn.discard_input()
