"""The per-request log line: uWSGI's default shape (SPEC §11) or a `--log-format` template.

Default:
`[pid: 1234|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 244 bytes} [Fri Nov 27 16:50:00 2026]
GET / => generated 11 bytes in 0 msecs (HTTP/1.1 200) 1 headers in 45 bytes (1 switches on
core 0)` (one line). As in uWSGI: `req: N/M` is this worker's request count / the instance's;
`{V vars in B bytes}` counts keys and values of the CGI variables and their uwsgi-encoded
size; `generated` is the body size and `headers in` counts the status line, the headers and
the blank line. `--log-format` variables follow uWSGI's `%(name)`; an empty value prints `-`,
an unknown name prints `-` (uWSGI treats it as an unset logvar). `--memory-report` puts
uWSGI's `{address space usage: N bytes/NMB} {rss usage: N bytes/NMB} ` in front of the default
line (not of a `--log-format` line, as uWSGI), reading /proc/self/statm only when it is on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from uzerg.config.model import Config
from uzerg.logs import get_logger, is_plain, plain_output, request_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_PARTS_KEPT = 256  # texts of default lines kept for repeated requests (see log_request)

# log-format names that read a request variable directly (uWSGI's "offsetof" chunks)
_ENVIRON_VARS = {
    "uri": "REQUEST_URI",
    "method": "REQUEST_METHOD",
    "user": "REMOTE_USER",
    "addr": "REMOTE_ADDR",
    "host": "HTTP_HOST",
    "proto": "SERVER_PROTOCOL",
    "uagent": "HTTP_USER_AGENT",
    "referer": "HTTP_REFERER",
}


class RequestInfo:
    """What one request did, for the log line (filled in by the request handler)."""

    __slots__ = (
        "environ", "start", "micros", "status", "body_size", "header_size", "header_count",
        "worker_requests", "total_requests", "core", "var_count", "var_size", "pktsize",
        "modifier1", "modifier2", "write_errors", "read_errors", "app_id",
    )

    def __init__(self, environ: dict[str, Any], start: float) -> None:
        self.environ = environ
        self.start = start
        self.micros = 0
        self.status = 0
        self.body_size = 0
        self.header_size = 0
        self.header_count = 0
        self.worker_requests = 0
        self.total_requests = 0
        self.core = 0
        self.var_count = -1  # -1: count them from the environ when needed
        self.var_size = 0
        self.pktsize = 0
        self.modifier1 = 0
        self.modifier2 = 0
        self.write_errors = 0
        self.read_errors = 0
        self.app_id = 0

    def vars(self) -> tuple[int, int]:
        """(count, bytes) of the CGI variables as uWSGI reports them."""
        if self.var_count < 0:
            count = size = 0
            for key, value in self.environ.items():
                if "." not in key and type(value) is str:
                    count += 2
                    size += 4 + len(key) + len(value)
            self.var_count, self.var_size = count, size
        return self.var_count, self.var_size


class _TimeCache:
    """ctime/ltime strings, formatted once per second (one line per request is hot)."""

    def __init__(self) -> None:
        self._ctime_sec = -1
        self._ctime = ""
        self._ltime_sec = -1
        self._ltime = ""

    def ctime(self, t: float) -> str:
        sec = int(t)
        if sec != self._ctime_sec:
            self._ctime = time.ctime(sec)
            self._ctime_sec = sec
        return self._ctime

    def ltime(self, t: float) -> str:
        sec = int(t)
        if sec != self._ltime_sec:
            self._ltime = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(sec))
            self._ltime_sec = sec
        return self._ltime


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _statm() -> tuple[int, int]:
    """(address space, resident set) from /proc/self/statm, in bytes ((0, 0): unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[0]) * _PAGE_SIZE, int(fields[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0, 0


def memory_report() -> str:
    """uWSGI's `--memory-report` prefix of a request line (one read of /proc/self/statm)."""
    vsz, rss = _statm()
    return (f"{{address space usage: {vsz} bytes/{vsz // 1048576}MB}} "
            f"{{rss usage: {rss} bytes/{rss // 1048576}MB}} ")


class RequestLogger:
    """Formats and writes request lines; honours disable-logging, log-4xx, log-5xx, log-format.

    Create it in the process that logs (after fork and after `configure_logging`): it looks
    up the plain-mode stream once (see `refresh`).
    """

    def __init__(self, config: Config, worker_id: int, pid: int | None = None) -> None:
        self.worker_id = worker_id
        self.pid = pid if pid is not None else os.getpid()
        self.disabled = config.disable_logging
        self.log_4xx = config.log_4xx
        self.log_5xx = config.log_5xx
        self.json = config.log_json
        self.memory_report = config.memory_report
        # uWSGI's conditional logging: these log a request even with disable-logging
        self.slow_msecs = config.log_slow
        self.big = config.log_big
        self.zero = config.log_zero
        self.sendfile = config.log_sendfile
        self.ioerror = config.log_ioerror
        self.conditional = bool(self.slow_msecs or self.big or self.zero or self.sendfile
                                or self.ioerror)
        # wants() is True whatever the status (checked before calling it, once per request)
        self.logs_all = not self.disabled or self.conditional
        # log-x-forwarded-for: uWSGI logs the header's value as the client address
        self.addr_key = "HTTP_X_FORWARDED_FOR" if config.log_x_forwarded_for else "REMOTE_ADDR"
        self._times = _TimeCache()
        self._date, self._date_from, self._date_to = "", 0.0, 0.0  # see log_request
        self._parts: dict[tuple[Any, ...], tuple[str, str]] = {}  # see log_request
        fmt = config.log_format
        self._chunks = self.compile(fmt) if fmt else None
        self.refresh()

    def refresh(self) -> None:
        """Look up the log stream again (call after reconfiguring logging)."""
        self._info = get_logger().info
        # req-logger: request lines go to the master's request log pipe, whole, one send each
        self._request_fd = request_fd()
        # plain mode: write the line straight to the log stream, one write() per line, as
        # structlog's WriteLogger would (same bytes); structlog only costs time here
        self._processors: list[Any] = []
        self._fd = -1
        self._stream: Any = None
        output = None if self.json else plain_output()
        if output is not None:
            self._stream, self._processors = output
            try:
                self._fd = self._stream.fileno()
                self._encoding = self._stream.encoding or "utf-8"
                self._errors = self._stream.errors or "strict"
            except (AttributeError, OSError, ValueError):  # StringIO and the like
                self._fd = -1
        self._default_plain = (
            self._stream is not None and self._chunks is None and not self.memory_report
            and is_plain(self._processors) and self._request_fd < 0
        )
        self._renderer = self._processors[-1] if self._default_plain else None
        # log_request's path for the default line, written whole with one os.write()
        self._fast = self._default_plain and self._fd >= 0 and not self.disabled
        self._prefix = f"[pid: {self.pid}|app: 0|req: "

    def _write(self, line: str) -> None:
        """One plain line, straight to the log stream (same bytes as structlog's)."""
        if self._fd >= 0:
            self._stream.flush()  # whatever was written through the stream goes first
            data = (line + "\n").encode(self._encoding, self._errors)
            written = os.write(self._fd, data)
            if written < len(data):  # a signal or a full pipe: rare
                self._write_rest(data[written:])
        else:
            self._stream.write(line + "\n")
            self._stream.flush()

    def _write_rest(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        while written < len(data):
            data = data[written:]
            written = os.write(self._fd, data)

    @property
    def may_log(self) -> bool:
        """Whether any request line can be written at all (else its numbers need no counting)."""
        return not self.disabled or self.log_4xx or self.log_5xx or self.conditional

    def wants(self, status: int) -> bool:
        """Whether a request with this status may be logged (see ``logs_this`` for the rest)."""
        if not self.disabled or self.conditional:
            return True
        return (self.log_4xx and 400 <= status < 500) or (self.log_5xx and status >= 500)

    def logs_this(self, info: RequestInfo, via_sendfile: bool = False) -> bool:
        """uWSGI's log_request(): logging on, or one of the conditions holds."""
        if not self.disabled:
            return True
        status = info.status
        return bool(
            (self.zero and info.body_size == 0)
            or (self.slow_msecs and info.micros // 1000 >= self.slow_msecs)
            or (self.log_4xx and 400 <= status < 500) or (self.log_5xx and status >= 500)
            or (self.big and info.body_size >= self.big)
            or (self.sendfile and via_sendfile)
            or (self.ioerror and info.read_errors > 0 and info.write_errors > 0)
        )

    def log(self, info: RequestInfo, via_sendfile: bool = False) -> None:
        if not self.logs_this(info, via_sendfile):
            return
        line = self.format(info)
        if self._request_fd >= 0:
            _send_line(self._request_fd, line)
        elif self._stream is not None and is_plain(self._processors):
            self._write(line)
        elif self.json:
            env = info.environ
            self._info(
                line, event_kind="request", method=env.get("REQUEST_METHOD", ""),
                uri=env.get("REQUEST_URI", ""), status=info.status, size=info.body_size,
                msecs=info.micros // 1000, addr=env.get("REMOTE_ADDR", ""), pid=self.pid,
                wid=self.worker_id,
            )
        else:
            self._info(line)

    def format(self, info: RequestInfo) -> str:
        if self._chunks is not None:
            return "".join([c if type(c) is str else c(info) for c in self._chunks])
        count, size = info.vars()
        line = self._default_line(
            info.environ, count, size, info.start, info.micros, info.status, info.body_size,
            info.header_count, info.header_size, info.worker_requests, info.total_requests,
            info.core, info.app_id,
        )
        return memory_report() + line if self.memory_report else line

    def log_request(
        self, env: dict[str, Any], start: float, micros: int, status: int, response: Any,
        worker_requests: int, total_requests: int, core: int, var_count: int, var_size: int,
        modifier2: int, write_errors: int, read_errors: int = 0,
    ) -> None:
        """Log one request the caller checked `wants()`; `response` has body_size,
        header_count, header_size. The default line in plain mode skips RequestInfo and
        structlog (the common case, once per request): formatted here, as _default_line
        does (tests check they agree), and written with one os.write(). The text around
        the date is kept per request values (up to _PARTS_KEPT), so that a repeated request
        formats only its two counts."""
        # is_plain(), inlined: capture_logs() or a reconfiguration replace the renderer
        if self._fast and var_count >= 0 and self._processors[-1] is self._renderer:
            # the date text: made again when `start` leaves the second it was made for
            if self._date_from <= start < self._date_to:
                ctime = self._date
            else:
                ctime = self._date_of(start)
            # all but the counts and the date, as one key: a repeated request (same client,
            # URI, sizes, status) finds its text made, instead of 8 ints and 24 pieces joined
            try:  # (subscripts cost less than get(); these are nearly always there)
                key = (
                    env.get(self.addr_key, ""), env.get("REMOTE_USER", ""), var_count, var_size,
                    env["REQUEST_METHOD"], env["REQUEST_URI"], response.body_size,
                    micros // 1000, env["SERVER_PROTOCOL"], status, response.header_count,
                    response.header_size, core,
                )
            except KeyError:
                uri = env.get("REQUEST_URI")
                key = (
                    env.get(self.addr_key, ""), env.get("REMOTE_USER", ""), var_count, var_size,
                    env.get("REQUEST_METHOD", ""), _uri_of(env) if uri is None else uri,
                    response.body_size, micros // 1000, env.get("SERVER_PROTOCOL", ""), status,
                    response.header_count, response.header_size, core,
                )
            parts = self._parts.get(key)
            if parts is None:
                parts = self._new_parts(key)
            data = f"{self._prefix}{worker_requests}/{total_requests}{parts[0]}{ctime}{parts[1]}" \
                .encode(self._encoding, self._errors)
            self._stream.flush()  # whatever was written through the stream goes first
            written = os.write(self._fd, data)
            if written < len(data):  # a signal or a full pipe: rare
                self._write_rest(data[written:])
            return
        info = RequestInfo(env, start)
        info.micros = micros
        info.status = status
        info.body_size = response.body_size
        info.header_size = response.header_size
        info.header_count = response.header_count
        info.worker_requests = worker_requests
        info.total_requests = total_requests
        info.core = core
        info.var_count = var_count
        info.var_size = info.pktsize = var_size
        info.modifier2 = modifier2
        info.write_errors = write_errors
        info.read_errors = read_errors
        self.log(info, response.via_sendfile)

    def _date_of(self, start: float) -> str:
        """log_request's date text for `start`, kept with the second it is valid for."""
        self._date = self._times.ctime(start)
        self._date_from = float(int(start))
        self._date_to = self._date_from + 1.0
        return self._date

    def _new_parts(self, key: tuple[Any, ...]) -> tuple[str, str]:
        """The default line's text around the date for log_request's key, kept (bounded)."""
        addr, user, count, size, method, uri, body_size, msecs, proto, status, header_count, \
            header_size, core = key
        parts = (
            f"] {addr} ({user}) {{{count} vars in {size} bytes}} [",
            f"] {method} {uri} => generated {body_size} bytes in {msecs} msecs ({proto} "
            f"{status}) {header_count} headers in {header_size} bytes "
            f"(1 switches on core {core})\n",
        )
        if len(self._parts) >= _PARTS_KEPT:
            self._parts.clear()
        self._parts[key] = parts
        return parts

    def _default_line(
        self, env: dict[str, Any], count: int, size: int, start: float, micros: int,
        status: int, body_size: int, header_count: int, header_size: int,
        worker_requests: int, total_requests: int, core: int, app_id: int,
    ) -> str:
        uri = env.get("REQUEST_URI")
        if uri is None:
            uri = _uri_of(env)
        times = self._times
        ctime = times._ctime if int(start) == times._ctime_sec else times.ctime(start)
        return (
            f"[pid: {self.pid}|app: {app_id}|req: {worker_requests}/{total_requests}] "
            f"{env.get(self.addr_key, '')} ({env.get('REMOTE_USER', '')}) "
            f"{{{count} vars in {size} bytes}} [{ctime}] "
            f"{env.get('REQUEST_METHOD', '')} {uri} => generated {body_size} bytes in "
            f"{micros // 1000} msecs ({env.get('SERVER_PROTOCOL', '')} {status}) "
            f"{header_count} headers in {header_size} bytes (1 switches on core {core})"
        )

    def compile(self, fmt: str) -> list[str | Callable[[RequestInfo], str]]:
        """Split a log-format into literal text and value functions, once."""
        chunks: list[str | Callable[[RequestInfo], str]] = []
        pos = 0
        for start, end, name in format_variables(fmt):
            if start > pos:
                chunks.append(fmt[pos:start])
            chunks.append(_dash(self._variable(name)))
            pos = end
        if pos < len(fmt):
            chunks.append(fmt[pos:])
        return chunks

    def _variable(self, name: str) -> Callable[[RequestInfo], Any]:
        if name in _ENVIRON_VARS:
            key = self.addr_key if name == "addr" else _ENVIRON_VARS[name]
            return lambda i: i.environ.get(key, "")
        if name.startswith("var."):
            key = name[4:]
            return lambda i: i.environ.get(key, "")
        if name.startswith("metric."):
            return lambda i: 0  # uzerg keeps no metrics; uWSGI prints 0 for an unknown one
        times = self._times
        table: dict[str, Callable[[RequestInfo], Any]] = {
            "status": lambda i: i.status,
            "rsize": lambda i: i.body_size,
            "hsize": lambda i: i.header_size,
            "size": lambda i: i.body_size + i.header_size,
            "cl": lambda i: _int(i.environ.get("CONTENT_LENGTH")),
            "micros": lambda i: i.micros,
            "msecs": lambda i: i.micros // 1000,
            "secs": lambda i: f"{i.micros / 1e6:.6f}",
            "tmsecs": lambda i: int(i.start * 1000),
            "tmicros": lambda i: int(i.start * 1e6),
            "time": lambda i: int(i.start),
            "ltime": lambda i: times.ltime(i.start),
            "ftime": lambda i: times.ltime(i.start),
            "ctime": lambda i: times.ctime(i.start),
            "epoch": lambda i: int(time.time()),
            "pid": lambda i: self.pid,
            "wid": lambda i: self.worker_id,
            "switches": lambda i: 1,
            "vars": lambda i: i.vars()[0],
            "pktsize": lambda i: i.pktsize if i.pktsize else i.vars()[1],
            "core": lambda i: i.core,
            "vsz": lambda i: _statm()[0],
            "rss": lambda i: _statm()[1],
            "vszM": lambda i: _statm()[0] // 1048576,
            "rssM": lambda i: _statm()[1] // 1048576,
            "modifier1": lambda i: i.modifier1,
            "modifier2": lambda i: i.modifier2,
            "headers": lambda i: i.header_count,
            "werr": lambda i: i.write_errors,
            "rerr": lambda i: i.read_errors,
            "ioerr": lambda i: i.write_errors + i.read_errors,
        }
        return table.get(name, lambda i: "")


def format_variables(fmt: str) -> list[tuple[int, int, str]]:
    r"""(start, end, name) of each %(name) of a log-format, left to right: what the regular
    expression %\(([^)]+)\) found (tests/test_regex_free_checks.py), without loading re."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while (start := fmt.find("%(", pos)) >= 0:
        close = fmt.find(")", start + 2)
        if close < 0:  # no ")" left: no more variables
            break
        if close == start + 2:  # "%()": not one; the search goes on after its "%"
            pos = start + 1
            continue
        found.append((start, close + 1, fmt[start + 2:close]))
        pos = close + 1
    return found


def _uri_of(env: dict[str, Any]) -> str:
    """The request's URI when the environ has no REQUEST_URI."""
    query = env.get("QUERY_STRING")
    return env.get("PATH_INFO", "") + ("?" + query if query else "")


def _send_line(fd: int, line: str) -> None:
    try:
        os.write(fd, (line + "\n").encode("utf-8", "surrogateescape"))
    except OSError:
        pass  # the master is gone or its pipe is full: uWSGI drops the line too


def _dash(func: Callable[[RequestInfo], Any]) -> Callable[[RequestInfo], str]:
    def value(info: RequestInfo) -> str:
        text = str(func(info))
        return text if text else "-"

    return value


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
