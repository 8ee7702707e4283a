"""`HttpBody`: the body of an HTTP request, pulled through the sans-I/O parser (Content-Length
or chunked), with `100 Continue` sent the first time the application asks for bytes that have
not arrived. The HTTP side (see uzerg.serve.body for the uwsgi one and the shared errors).
"""

from __future__ import annotations

from uzerg.protocols.http import END, HttpError
from uzerg.protocols.http_stream import HttpRequestParser
from uzerg.serve.body import InvalidBody, read_failed
from uzerg.serve.connection import Connection
from uzerg.serve.wsgi_io import BodyReadError, ClientDisconnected


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
        return read_failed(exc, hint, min(hint, length - self.consumed) or hint, length,
                       self.consumed)
