"""The file-like objects of a WSGI environ: `wsgi.input`, `wsgi.errors`, `wsgi.file_wrapper`."""

from __future__ import annotations

import _thread
from collections.abc import Callable, Iterable, Iterator

from uzerg.logs import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()


class ClientDisconnected(OSError):
    """The peer went away (or stalled past the socket timeout) in the middle of a request."""


class BodyReadError(ClientDisconnected):
    """Reading the request body failed (client closed, reset or stalled). The application sees
    uWSGI's `OSError: error during read(N) on wsgi.input`; `log_line` is uWSGI's
    `[uwsgi-body-read] ...` line, logged when the application's read fails (not when uzerg
    drains a body nobody asked for)."""

    log_line = ""
    timed_out = False  # uWSGI counts a read error, not a timeout, in `read_errors`/`%(rerr)`


def body_read_error(hint: int, log_line: str, timed_out: bool = False) -> BodyReadError:
    message = f"error during read({hint}) on wsgi.input"
    exc = BodyReadError(message)
    exc.strerror = message
    exc.log_line = log_line
    exc.timed_out = timed_out
    return exc


def _no_body(_hint: int) -> bytes:
    return b""


# A read of more than _INTO_MIN and at most _SPARE_MAX bytes is received straight into one
# buffer and copied out once, and the buffer is kept for the next such read (one per process).
# Received piece by piece and joined, a 1 MB body took 2 MB of heap per request, which glibc
# gave back to the kernel at the end of each (its trim threshold is twice the largest block it
# has seen) and faulted in again on the next: ~500 page faults per request.
_INTO_MIN = 65536
_SPARE_MAX = 4 << 20
_spare: list[bytearray] = []  # (list.pop/append: atomic for the threads of a worker)


class InputStream:
    """`wsgi.input`: the request body, pulled from the connection only when the app reads it.

    `pull(hint)` returns the next non-empty piece of the body, or b"" once the body has been
    read to its end (Content-Length reached, or the last chunk of a chunked body); after that
    every read returns b"" (reading past the body never blocks).
    """

    __slots__ = ("_pull", "_buf", "_eof", "read_errors")

    def __init__(self, pull: Callable[[int], bytes] = _no_body, initial: bytes = b"") -> None:
        self._pull = pull
        self._buf = initial
        self._eof = pull is _no_body
        self.read_errors = 0  # failed reads of the application (uWSGI's per-request count)

    def _more(self, hint: int) -> bool:
        if self._eof:
            return False
        try:
            data = self._pull(hint)
        except BodyReadError as exc:
            self._failed(exc)
            raise
        if not data:
            self._eof = True
            return False
        self._buf = self._buf + data if self._buf else data
        return True

    def _failed(self, exc: BodyReadError) -> None:
        if exc.log_line:  # (a malformed body is logged once, by the request handler)
            log.error(exc.log_line, event_kind="body_read_error")
        if not exc.timed_out:
            self.read_errors += 1

    def _known_size(self, size: int) -> int:
        """How many bytes read(size) (-1: all) will return when the body's length is known
        and that is more than _INTO_MIN (then _read_into() reads them), else 0."""
        left = getattr(self._pull, "left", None)
        if left is None or self._eof:
            return 0
        more = left()
        if more < 0:  # chunked: not known
            return 0
        total = len(self._buf) + more
        if 0 <= size < total:
            total = size
        # (the buffer is made before the bytes arrive: never larger than _SPARE_MAX, whatever
        # length a client declares)
        return total if _INTO_MIN < total <= _SPARE_MAX else 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            known = self._known_size(-1)
            if known:
                data = self._read_into(known, -1)
                rest = b"" if self._eof else self.read()  # (the body's end: b"")
                return data + rest if rest else data
            parts = [self._buf]
            while not self._eof:
                try:
                    data = self._pull(65536)
                except BodyReadError as exc:
                    self._failed(exc)
                    raise
                if not data:
                    self._eof = True
                    break
                parts.append(data)
            self._buf = b""
            return b"".join(parts)
        buf = self._buf
        if len(buf) >= size or self._eof:
            data, self._buf = buf[:size], buf[size:]
            return data
        if size > _INTO_MIN:
            known = self._known_size(size)
            if known:
                return self._read_into(known, size)
        # the pieces are joined once at the end: appending each to the buffer copied a 1 MB
        # body ~16 times over (a third of the CPU of a 1 MB POST echoed back)
        parts = [buf] if buf else []
        have = len(buf)
        self._buf = b""
        try:
            while have < size:
                data = self._pull(size - have)
                if not data:
                    self._eof = True
                    break
                parts.append(data)
                have += len(data)
        except BodyReadError as exc:
            self._buf = b"".join(parts)
            log.error(exc.log_line, event_kind="body_read_error")
            raise
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if have > size:
            data, self._buf = data[:size], data[size:]
        return data

    def _read_into(self, size: int, asked: int) -> bytes:
        """`size` bytes of a body known to hold at least that many more (its end too: then
        the stream reaches EOF on the next read, as it would have) for read(asked); the
        hints of the pulls and a failed read are as that read's (read()'s when asked < 0)."""
        whole = asked < 0
        into = self._pull.into  # type: ignore[attr-defined]
        store = _spare.pop() if _spare else None
        if store is None or len(store) < size:
            store = bytearray(size)
        before = self._buf
        have = len(before)
        with memoryview(store) as view:
            view[:have] = before
            self._buf = b""
            try:
                while have < size:
                    hint = 65536 if whole else asked - have
                    got = into(view[have:size], hint)
                    if got < 0:  # (bytes the parser holds, ...): the pull function's way
                        data = self._pull(hint)
                        got = min(len(data), size - have)
                        view[have : have + got] = data[:got]
                        if got < len(data):
                            self._buf = data[got:]
                    if got == 0:
                        self._eof = True
                        break
                    have += got
                data = bytes(view[:have])
            except BodyReadError as exc:
                if whole:
                    self._buf = before
                    self._failed(exc)
                else:
                    self._buf = bytes(view[:have])
                    log.error(exc.log_line, event_kind="body_read_error")
                raise
            finally:
                view.release()  # (before another thread may take the buffer)
                if not _spare:
                    _spare.append(store)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        scanned = 0
        while True:
            nl = self._buf.find(b"\n", scanned)
            if nl >= 0:
                end = nl + 1
                break
            scanned = len(self._buf)
            if 0 <= limit <= scanned:
                end = limit
                break
            if not self._more(8192):
                end = len(self._buf)
                break
        if 0 <= limit < end:
            end = limit
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, limit: int) -> bool:
        """Discard the unread body (up to `limit` bytes); True when the body was read to its end
        (False too when the client went away before sending it all)."""
        self._buf = b""
        while not self._eof:
            try:
                data = self._pull(65536)
            except BodyReadError:
                return False
            if not data:
                self._eof = True
                break
            limit -= len(data)
            if limit < 0:
                return False
        return True


# the wsgi.input of every request without a body, shared: reading it returns b"" and changes
# nothing (it never pulls, so it never fails), so no stream is built per request
NO_BODY = InputStream()


class ErrorStream:
    """`wsgi.errors`: a text stream whose lines go to the log (one log event per line)."""

    def __init__(self) -> None:
        self._partial = ""
        self._lock = _thread.allocate_lock()  # threading.Lock, without importing threading

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        with self._lock:
            pending = self._partial + text
            *lines, self._partial = pending.split("\n")
        for line in lines:
            log.error(line, event_kind="wsgi_errors")
        return len(text)

    def writelines(self, seq: Iterable[str]) -> None:
        for text in seq:
            self.write(text)

    def flush(self) -> None:
        with self._lock:
            pending, self._partial = self._partial, ""
        if pending:
            log.error(pending, event_kind="wsgi_errors")


class FileWrapper:
    """`wsgi.file_wrapper`: when its file is a real file the response goes out with sendfile()."""

    __slots__ = ("filelike", "blksize", "close")

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data
