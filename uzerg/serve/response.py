"""Writing one WSGI response: start_response, write(), the iterable, framing, sendfile.

Headers are held until the first non-empty body chunk (PEP 3333) and go out in the same
send as that chunk. On a keep-alive HTTP connection a response without Content-Length is
framed: Content-Length when the whole body is known up front (a one-item list), else
chunked (HTTP/1.1), else the connection closes.
"""

from __future__ import annotations

import os
import stat

from uzerg.serve.connection import SEND_NOW, Connection
from uzerg.serve.wsgi_io import ClientDisconnected, FileWrapper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# the checks of names, values and statuses: plain string operations, no regular expression
# (compiling them cost every start; tests/test_regex_free_checks.py holds the old ones).
# RFC 9110 tchar, ASCII only: a name is valid when strip() leaves nothing of it
_TOKEN_CHARS = ("!#$%&'*+-.^_`|~0123456789"
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# the control characters a header value must not hold (HTAB may be there), a status none
_BAD_VALUE_CHARS = frozenset(map(chr, (*range(0x09), *range(0x0a, 0x20), 0x7f)))
_BAD_STATUS_CHARS = frozenset(map(chr, (*range(0x20), 0x7f)))
_NO_BODY_STATUS = frozenset((204, 304))
_VERSIONS = {"HTTP/1.1": b"HTTP/1.1", "HTTP/1.0": b"HTTP/1.0"}
_CLOSE = b"Connection: close\r\n"
_JOIN_LIMIT = 65536  # smaller bodies are joined to the headers, larger ones go by sendmsg()
# validated statuses and headers: "200 OK" -> (200, b" 200 OK\r\n"); ("Name", "value") ->
# (b"Name: value\r\n", Content-Length or -1, closes); apps send the same few over and over
_status_lines: dict[str, tuple[int, bytes]] = {}
_header_lines: dict[tuple[str, str], tuple[bytes, int, bool]] = {}
# whole header lists (as a tuple) -> (their lines joined, line count, Content-Length or None,
# closes): an app sends the same list for a route over and over; cleared when full
_HeaderBlock = tuple[bytes, int, "int | None", bool]
_header_blocks: dict[tuple[Any, ...], _HeaderBlock] = {}
_OK_LINE = b" 200 OK\r\n"
_SENDFILE_ONCE = 1 << 30  # Connection.sendfile()'s bytes per call
_HEADER_BLOCKS_MAX = 256


class ResponseError(ValueError):
    """The application broke the WSGI contract (bad status, header, body type)."""


def _status_entry(status: Any) -> tuple[int, bytes]:
    """(code, b" 200 OK\\r\\n") of a status; statuses already seen come from a cache."""
    entry = _status_lines.get(status) if type(status) is str else None
    if entry is not None:
        return entry
    if type(status) is not str:
        raise ResponseError(f"status must be a str, not {type(status).__name__}")
    if len(status) < 5 or not status[:3].isdigit() or status[3] != " " or not status[:3].isascii():
        raise ResponseError(f"invalid status line {status!r} (expected like '200 OK')")
    if not _BAD_STATUS_CHARS.isdisjoint(status):
        raise ResponseError(f"control character in status {status!r}")
    code = int(status[:3])
    if code < 100:
        raise ResponseError(f"invalid status code in {status!r}")
    entry = (code, _latin1(f" {status}\r\n"))
    if len(_status_lines) < 256:
        _status_lines[status] = entry
    return entry


def _header_entry(item: Any) -> tuple[bytes, int, bool]:
    """(b"Name: value\\r\\n", Content-Length or -1, closes the connection) of a valid
    header; raises ResponseError. Headers already seen come from a bounded cache."""
    if type(item) is not tuple or len(item) != 2:
        raise ResponseError(f"header {item!r} is not a (name, value) tuple")
    name, value = item
    if type(name) is not str or type(value) is not str:
        raise ResponseError(f"header {item!r}: name and value must be str")
    if not name or name.strip(_TOKEN_CHARS):
        raise ResponseError(f"invalid header name {name!r}")
    if not _BAD_VALUE_CHARS.isdisjoint(value):
        raise ResponseError(f"control character in the value of header {name!r}")
    length = -1
    lname = name.lower()
    if lname == "content-length":
        if not value.isdigit() or not value.isascii():
            raise ResponseError(f"invalid Content-Length {value!r}")
        length = int(value)
    # the app frames/ends the connection itself: close after the response
    closes = lname == "connection" or lname == "transfer-encoding"
    entry = (_latin1(f"{name}: {value}\r\n"), length, closes)
    if len(_header_lines) < 1024 and len(value) <= 256:  # bounded; dates etc. vary
        _header_lines[item] = entry
    return entry


def _header_block(headers: list[Any]) -> _HeaderBlock:
    """(lines joined, line count, Content-Length or None, closes the connection) of a valid
    header list; raises ResponseError. Kept for the next time the same list comes."""
    declared = None
    app_close = False
    lines = []
    cache = _header_lines
    size = 0
    for item in headers:
        try:
            line, length, closes = cache[item] if type(item) is tuple else _header_entry(item)
        except (KeyError, TypeError):  # not seen yet, or unhashable (then invalid)
            line, length, closes = _header_entry(item)
        lines.append(line)
        size += len(line)
        if length >= 0:
            declared = length
        if closes:
            app_close = True
    block = (b"".join(lines), len(lines), declared, app_close)
    if size <= 4096:  # bounded; a list with a date or a cookie may never come back
        if len(_header_blocks) >= _HEADER_BLOCKS_MAX:
            _header_blocks.clear()  # it follows the traffic
        _header_blocks[tuple(headers)] = block
    return block


header_block = _header_block  # static files encode their headers once (serve/static.py)


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ResponseError(f"status or header not encodable as latin-1: {exc}") from None


class Response:
    """The response side of one request. `finish()` reports whether the connection may stay."""

    # per-request state starts as these class defaults: __init__ stores only what varies
    # (a Response is built for every request)
    status: str | None = None
    status_code = 0
    status_line = b""
    headers = b""  # the encoded header lines of start_response, joined
    header_lines = 0  # how many
    headers_sent = False
    chunked = False
    declared_length: int | None = None
    body_size = 0
    via_sendfile = False  # the body went out with sendfile() (log-sendfile)
    header_size = 0
    header_count = 0
    app_close = False
    # disable-write-exception: the app's write() does not raise when the client is gone
    quiet_writes = False
    write_failed = False
    keep_alive = False  # the connection may carry another request after this one
    add_close = False  # say `Connection: close` when closing (HTTP/1.1 sockets)

    def __init__(
        self, conn: Connection, version: str, is_head: bool, keep_alive: bool, add_close: bool
    ) -> None:
        self.conn = conn
        self.version = version
        self.is_head = is_head
        self.keep_alive = keep_alive  # the connection may carry another request after this one
        self.add_close = add_close  # say `Connection: close` when closing (HTTP/1.1 sockets)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        # the cache lookup inlined (a call per request saved); a new status is validated
        entry = _status_lines.get(status) if type(status) is str else None
        code, status_line = entry if entry is not None else _status_entry(status)
        if type(headers) is not list:
            raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
        try:  # the whole list seen before: one lookup, no loop
            block = _header_blocks.get(tuple(headers))
        except TypeError:  # an unhashable item: invalid, _header_block() says which
            block = None
        if block is None:
            block = _header_block(headers)
        self.status = status
        self.status_code = code
        self.status_line = status_line
        self.headers, self.header_lines, self.declared_length, self.app_close = block
        return self.write_quietly if self.quiet_writes else self.write

    def write_quietly(self, data: bytes) -> None:
        """write() for disable-write-exception: a gone client is no exception for the app
        (uWSGI's "IOError: write error" is not raised); the request is logged as failed."""
        try:
            self.write(data)
        except ClientDisconnected:
            self.write_failed = True

    def write(self, data: bytes) -> None:
        """The write() callable returned by start_response (and used for every body chunk)."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ResponseError(f"body chunks must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if not data:
            return
        if not self.headers_sent:
            self.send_head(data, None)
            return
        if self.is_head:
            return
        declared = self.declared_length
        if declared is not None and self.body_size + len(data) > declared:
            data = data[: max(declared - self.body_size, 0)]  # never send past Content-Length
            self.keep_alive = False
            if not data:
                return
        self.body_size += len(data)
        if self.chunked:
            self.conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.conn.sendall(data)

    def send_head(self, first: bytes, total: int | None, more: bool = False) -> None:
        """Send status, headers and the first chunk. `total`: the whole body size when known;
        `more`: a sendfile() follows at once (Connection.sendall)."""
        if self.status is None:
            raise ResponseError("the application sent body data before calling start_response()")
        version = self.version
        extra = b""
        if self.keep_alive:
            code = self.status_code
            if self.app_close:
                self.keep_alive = False
            elif self.is_head or code < 200 or code in _NO_BODY_STATUS:
                pass
            elif self.declared_length is not None:
                pass
            elif total is not None:
                extra = b"Content-Length: %d\r\n" % total
            elif version == "HTTP/1.1":
                extra = b"Transfer-Encoding: chunked\r\n"
                self.chunked = True
            else:
                self.keep_alive = False
            if self.keep_alive and version == "HTTP/1.0":
                extra += b"Connection: keep-alive\r\n"
        # the head's parts; joined once, with a small first chunk (no second copy)
        parts = [_VERSIONS.get(version) or _latin1(version), self.status_line, self.headers,
                 extra, _CLOSE if not self.keep_alive and self.add_close and not self.app_close
                 else b"", b"\r\n"]
        self.header_count = self.header_lines
        if self.is_head or not first:
            head = b"".join(parts)
            self.header_size = len(head)
            self.headers_sent = True
            self.conn.sendall(head, more)
            return
        declared = self.declared_length
        if declared is not None and len(first) > declared:
            first = first[:declared]
            self.keep_alive = False
        self.body_size = size = len(first)
        self.headers_sent = True
        if self.chunked or size > _JOIN_LIMIT:
            head = b"".join(parts)
            self.header_size = len(head)
            if self.chunked:
                self.conn.sendall(b"%s%x\r\n%s\r\n" % (head, size, first))
            else:
                self.conn.sendall_pair(head, first)  # one syscall, no copy of a big body
        else:
            parts.append(first)
            data = b"".join(parts)
            self.header_size = len(data) - size
            conn = self.conn
            if conn.tls is not None:
                conn.sendall(data)
                return
            try:  # (conn.sendall()'s first attempt inlined: a small response always fits)
                sent = conn.sock.send(data, SEND_NOW)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise ClientDisconnected(exc.errno, f"write: {exc.strerror}") from None
            conn.tx += sent
            if sent < len(data):
                conn.sendall(data[sent:])

    def send_iterable(self, result: Any) -> None:
        """Send the body the application returned (closing it is the caller's job)."""
        if type(result) is list and len(result) == 1 and not self.headers_sent:
            body = result[0]
            if type(body) is bytes:
                # the commonest case: one chunk, sent with the headers in one send()
                self.send_head(body, len(body))
                declared = self.declared_length
                if declared is not None and self.body_size < declared:
                    self.finish_body()  # a declared length the body falls short of
                return
        kind = type(result)
        if (kind is list or kind is tuple) and _all_bytes(result):
            # the common case: the whole body known up front, sent with the headers at once
            body = result[0] if len(result) == 1 else b"".join(result)
            if not self.headers_sent:
                self.send_head(body, len(body))
            else:
                self.write(body)
        elif type(result) is FileWrapper and self._sendfile(result):
            pass
        else:
            for chunk in result:
                if chunk:
                    self.write(chunk)
                elif type(chunk) is not bytes and not isinstance(chunk, (bytes, bytearray)):
                    raise ResponseError(f"body chunks must be bytes, not {type(chunk).__name__}")
        self.finish_body()

    def finish_body(self) -> None:
        """After the last chunk: send headers still held back, or the chunked terminator."""
        if not self.headers_sent:
            self.send_head(b"", 0)
        elif self.chunked:
            self.conn.sendall(b"0\r\n\r\n")
        if (
            self.declared_length is not None
            and self.body_size < self.declared_length
            and not self.is_head
            and self.status_code not in _NO_BODY_STATUS
        ):
            self.keep_alive = False  # the client still waits for bytes that never come

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a file_wrapper's file with sendfile(); False when it is not a regular file."""
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            offset = filelike.tell()
        except (AttributeError, OSError, ValueError):
            offset = 0
        self.send_file(fd, offset, st.st_size)
        return True

    def send_file(self, fd: int, offset: int, size: int) -> None:
        """Send the regular file `fd` (`size` bytes long) from `offset` with sendfile()."""
        count = max(size - offset, 0)
        if self.declared_length is not None:
            count = min(count, self.declared_length - self.body_size)
        follows = count > 0 and not self.is_head
        if not self.headers_sent:
            # on keep-alive without a Content-Length from the app, the file size frames the body
            self.send_head(b"", count if self.declared_length is None else None, follows)
        if not follows:
            return
        if self.chunked:
            self.conn.sendall(b"%x\r\n" % count, True)
        sent = self.conn.sendfile(fd, offset, count)
        self.via_sendfile = True
        self.body_size += sent
        if self.chunked:
            self.conn.sendall(b"\r\n")
        if sent < count:
            self.keep_alive = False

    def send_whole_file(self, block: _HeaderBlock, fd: int, size: int) -> None:
        """start_response("200 OK", headers), send_file(fd, 0, size) and finish_body() in one
        call, for a static file: `block` is header_block() of its headers, which declare
        Content-Length: `size` (the caller checks: no chunking, no length to cut to)."""
        self.status = "200 OK"  # (a fresh response: the static file answers before any app)
        self.status_code = 200
        self.status_line = _OK_LINE
        self.headers, lines, self.declared_length, app_close = block
        self.header_lines = self.header_count = lines
        self.app_close = app_close
        version = self.version
        # send_head()'s framing for a response with a Content-Length: a close the app asked
        # for ends keep-alive; else HTTP/1.0 keep-alive says so, a close on HTTP/1.1 too
        extra = b""
        if self.keep_alive:
            if app_close:
                self.keep_alive = False
            elif version == "HTTP/1.0":
                extra = b"Connection: keep-alive\r\n"
        if not self.keep_alive and self.add_close and not app_close:
            extra = b"Connection: close\r\n"
        head = b"".join((_VERSIONS.get(version) or _latin1(version), _OK_LINE, block[0],
                         extra, b"\r\n"))
        self.header_size = len(head)
        self.headers_sent = True
        conn = self.conn
        follows = size > 0 and not self.is_head
        conn.sendall(head, follows)  # (a frame more than inlined, next to a 1 MB sendfile)
        if not follows:
            return
        if conn.tls is None and conn._snd_armed and size <= _SENDFILE_ONCE:
            # (conn.sendfile()'s first call inlined: on a connection whose send timeout is
            # set, one blocking sendfile() usually sends it all)
            try:
                sent = os.sendfile(conn.fd, fd, 0, size)
            except BlockingIOError:
                raise ClientDisconnected(0, "timeout writing the response") from None
            except OSError as exc:
                raise ClientDisconnected(exc.errno, f"sendfile(): {exc.strerror}") from None
            conn.tx += sent
            if 0 < sent < size:
                sent += conn.sendfile(fd, sent, size - sent)
        else:
            sent = conn.sendfile(fd, 0, size)
        self.via_sendfile = True
        self.body_size = sent
        if sent < size:
            self.keep_alive = False  # the file shrank: the client waits for bytes not coming


def _all_bytes(items: list[Any] | tuple[Any, ...]) -> bool:
    """A non-empty list of bytes small enough to join into one send."""
    if not items:
        return False
    if len(items) == 1:
        return type(items[0]) is bytes
    total = 0
    for item in items:
        if type(item) is not bytes:
            return False
        total += len(item)
    return total <= 4 * _JOIN_LIMIT
