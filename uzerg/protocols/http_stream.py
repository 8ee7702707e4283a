"""One HTTP connection's request stream (SPEC §8), sans-I/O: heads, body bytes, message ends.

`HttpRequestParser.feed(bytes)` then `next_event()` returns a `RequestHead`, body `bytes`,
`END` (message complete) or `NEED_DATA`; malformed input raises `HttpError`. Heads are read by
`uzerg.protocols.http.parse_request_head`; this module adds the body framing
(Content-Length, chunked with its extensions and trailers, RFC 9112 §6-7) and pipelining.
"""

from __future__ import annotations

import re

from uzerg.protocols.http import (
    END,
    FORBIDDEN_TRAILERS,
    HEADER_LINE,
    MAX_HEADER_FIELDS,
    NEED_DATA,
    TOKEN,
    Event,
    HttpError,
    RequestHead,
    describe_bad_header,
    parse_request_head,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
# RFC 9112 §7.1.1: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ); rare,
# so compiled by re when first met
_CHUNK_EXT = (
    rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN
    + rb'|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*'
)
MAX_CHUNK_LINE: Final = 4096


class HttpRequestParser:
    """One connection's request stream: heads, body bytes and message ends, in order.

    After `END`, call `start_next_request()` to parse a pipelined/keep-alive request from the
    bytes that are already buffered.
    """

    __slots__ = ("max_head", "max_fields", "buffer", "head", "_state", "_remaining",
                 "_trailer_fields")

    # body states
    _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _DONE = range(7)

    def __init__(self, max_head: int = 4096, max_fields: int = MAX_HEADER_FIELDS) -> None:
        self.max_head = max_head
        self.max_fields = max_fields
        self._trailer_fields = 0
        self.buffer = bytearray()
        self.head: RequestHead | None = None
        self._state = self._HEAD
        self._remaining = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def feed_body(self, data: bytes) -> bytes | None:
        """feed() then next_event() for bytes received in a Content-Length body with nothing
        buffered: the body part of `data` comes back as it is, not copied in and out of the
        buffer (a 1 MB upload was copied three times); bytes after the body are buffered.
        None when not in such a body: use feed()."""
        if self._state != self._LENGTH or self.buffer:
            return None
        take = self._remaining
        if len(data) > take:
            self.buffer += data[take:]  # a pipelined request after the body
            data = data[:take]
        self._remaining = take - len(data)
        if self._remaining == 0:
            self._state = self._DONE
        return data

    def body_room(self) -> int:
        """The bytes left of a Content-Length body when none are buffered (they may then be
        received straight into the reader's buffer, see body_received()); else 0: use
        next_event()."""
        if self._state != self._LENGTH or self.buffer:
            return 0
        return self._remaining

    def body_received(self, size: int) -> None:
        """`size` bytes (at most body_room()) of the body were received past the parser."""
        self._remaining -= size
        if self._remaining == 0:
            self._state = self._DONE

    @property
    def message_complete(self) -> bool:
        return self._state == self._DONE

    def start_next_request(self) -> None:
        if self._state != self._DONE:
            raise RuntimeError("the current request body has not been read to its end")
        self.head = None
        self._state = self._HEAD

    def after_head(self, head: RequestHead, rest: bytes) -> None:
        """Go on after `head`, parsed by parse_request_head() from bytes not fed to the parser,
        as if next_event() had returned it; `rest`: the bytes that came after it."""
        self.buffer += rest
        self.head = head
        if head.chunked:
            self._state = self._CHUNK_SIZE
        elif head.content_length:
            self._state = self._LENGTH
            self._remaining = head.content_length
        else:
            self._state = self._DONE

    def next_event(self) -> Event:
        state = self._state
        buf = self.buffer
        if state == self._HEAD:
            # RFC 9112 §2.2: ignore blank lines before a request line
            while buf.startswith(b"\r\n"):
                del buf[:2]
            head = parse_request_head(buf, self.max_head, self.max_fields)
            if head is None:
                return NEED_DATA
            del buf[: head.head_size]
            self.after_head(head, b"")
            return head
        if state == self._LENGTH or state == self._CHUNK_DATA:
            if not buf:
                return NEED_DATA
            take = min(self._remaining, len(buf))
            if take == len(buf):
                data = bytes(buf)  # one copy, not a bytearray slice and then bytes()
                buf.clear()
            else:
                data = bytes(buf[:take])
                del buf[:take]
            self._remaining -= take
            if self._remaining == 0:
                self._state = self._DONE if state == self._LENGTH else self._CHUNK_CRLF
            return data
        if state == self._CHUNK_SIZE:
            line = self._take_line("chunk size line")
            if line is None:
                return NEED_DATA
            size_text, semicolon, ext = line.partition(b";")
            if semicolon:  # (whitespace may come before the extension's ";")
                size_text = size_text.rstrip(b" \t")
            if _CHUNK_SIZE.fullmatch(size_text) is None or (
                semicolon and re.fullmatch(_CHUNK_EXT, b";" + ext) is None
            ):
                raise HttpError(400, "invalid chunk size line")
            size = int(size_text, 16)
            if size == 0:
                self._state = self._TRAILER
                self._remaining = 0  # counts trailer bytes from here on
                self._trailer_fields = 0
            else:
                self._state = self._CHUNK_DATA
                self._remaining = size
            return self.next_event()
        if state == self._CHUNK_CRLF:
            if len(buf) < 2:
                return NEED_DATA
            if buf[:2] != b"\r\n":
                raise HttpError(400, "chunk data not followed by CRLF")
            del buf[:2]
            self._state = self._CHUNK_SIZE
            return self.next_event()
        if state == self._TRAILER:
            line = self._take_line("trailer line")
            if line is None:
                return NEED_DATA
            if line == b"":
                self._state = self._DONE
                return END
            self._remaining += len(line) + 2
            self._trailer_fields += 1
            if self._remaining > self.max_head or self._trailer_fields > self.max_fields:
                raise HttpError(431, "trailer section too large")
            if HEADER_LINE.fullmatch(line) is None:
                raise HttpError(400, describe_bad_header(line))
            name = line.partition(b":")[0].lower()
            if name in FORBIDDEN_TRAILERS:
                raise HttpError(400, f"{name.decode('ascii')} field in a chunked trailer")
            return self.next_event()
        return END

    def _take_line(self, what: str) -> bytes | None:
        buf = self.buffer
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > MAX_CHUNK_LINE:
                raise HttpError(400, f"{what} too long")
            if buf.find(b"\n") >= 0:
                raise HttpError(400, f"bare LF in {what}")
            return None
        if end > MAX_CHUNK_LINE:
            raise HttpError(400, f"{what} too long")
        line = bytes(buf[:end])
        del buf[: end + 2]
        if b"\n" in line or b"\r" in line:
            raise HttpError(400, f"bare CR or LF in {what}")
        return line
