"""Where `wsgi.input` gets its bytes: the pull functions over one connection.

`LengthBody` reads a uwsgi request body (CONTENT_LENGTH bytes after the vars); `HttpBody`
pulls an HTTP body through the sans-I/O parser (Content-Length or chunked) and sends
`100 Continue` the first time the application asks for bytes that have not arrived. A
malformed chunked body raises `InvalidBody` to the application and is kept in `HttpBody.error`
for the request handler (a 400, or a closed connection once a response has started).
"""

from __future__ import annotations

import os

from uzerg.protocols.http import END, HttpError
from uzerg.protocols.http_stream import HttpRequestParser
from uzerg.serve.connection import Connection, ReadTimeout
from uzerg.serve.wsgi_io import BodyReadError, ClientDisconnected, InputStream, body_read_error


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
            raise _failed(exc, hint, min(hint, self.remaining), self.length,
                          self.length - self.remaining) from None
        if not data:
            raise _failed(None, hint, min(hint, self.remaining), self.length,
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
            raise _failed(exc, hint, min(hint, self.remaining), self.length,
                          self.length - self.remaining) from None
        if not got:
            raise _failed(None, hint, min(hint, self.remaining), self.length,
                          self.length - self.remaining)
        self.remaining -= got
        return got


class HttpBody:
    """Body bytes of an HTTP request, decoded by the parser (Content-Length or chunked)."""

    __slots__ = ("conn", "parser", "expect_continue", "consumed", "error")

    def __init__(self, conn: Connection, parser: HttpRequestParser, expect_continue: bool) -> None:
        self.conn = conn
        self.parser = parser
        self.expect_continue = expect_continue
        self.consumed = 0  # body bytes handed out (for the error line)
        self.error: HttpError | None = None  # the body was malformed

    def __call__(self, hint: int) -> bytes:
        if self.error is not None:
            raise InvalidBody(hint, self.error)
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except HttpError as exc:
                self.error = exc
                raise InvalidBody(hint, exc) from None
            if type(event) is bytes:
                self.consumed += len(event)
                return event
            if event is END:
                return b""
            if self.expect_continue:
                self.expect_continue = False
                self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                data = self.conn.recv(max(hint, 65536))
            except ClientDisconnected as exc:
                raise self._failed(exc, hint) from None
            if not data:
                raise self._failed(None, hint)
            body = parser.feed_body(data)
            if body:
                self.consumed += len(body)
                return body
            parser.feed(data)

    def left(self) -> int:
        """The body bytes not handed out yet; -1 for a chunked body (not known), and over
        TLS (no large reads into a buffer)."""
        head = self.parser.head
        if head is None or head.chunked or type(self.conn) is not Connection:
            return -1
        return max((head.content_length or 0) - self.consumed, 0)

    def into(self, view: memoryview, hint: int) -> int:
        """Up to len(view) bytes of a Content-Length body received straight into `view`
        when nothing is buffered (a large read, see InputStream.read; `hint`: the read's,
        for the error); 0 at the end of the body; -1: use __call__ instead (bytes buffered,
        chunked, 100 Continue owed, TLS)."""
        parser = self.parser
        if self.error is not None or self.expect_continue or type(self.conn) is not Connection:
            return -1
        room = parser.body_room()
        if room <= 0:
            return 0 if parser.message_complete else -1
        try:
            got = self.conn.recv_into(view[: min(room, len(view))])
        except ClientDisconnected as exc:
            raise self._failed(exc, hint) from None
        if not got:
            raise self._failed(None, hint)
        parser.body_received(got)
        self.consumed += got
        return got

    def _failed(self, exc: ClientDisconnected | None, hint: int) -> BodyReadError:
        head = self.parser.head
        # a chunked body has no Content-Length: uWSGI's line then shows what was consumed
        length = max(head.content_length or 0, self.consumed) if head is not None else 0
        return _failed(exc, hint, min(hint, length - self.consumed) or hint, length,
                       self.consumed)


def _failed(
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
