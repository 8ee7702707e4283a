"""uWSGI's pluggable loggers, as the log master runs them (uWSGI core/logging.c and the
logfile, syslog and logsocket plugins).

- ``logger = [NAME ]PLUGIN[:ARG]`` (and ``req-logger`` for request lines): ``file:PATH`` (or
  ``file:logfile=PATH,maxsize=N,backupname=B``), ``fd:N``, ``stdio``, ``syslog[:IDENT[,FACILITY]]``
  (RFC 3164 datagrams to /dev/log, as libc's syslog()), ``socket:ADDR[,PREFIX]`` (a datagram to
  ``host:port`` over UDP or to a unix path).
- A named logger only gets the lines a ``log-route``/``log-req-route`` (``NAME REGEX``) sends it;
  a line a route matched goes nowhere else. Unnamed loggers get every other line; with none, the
  line goes to the original log target (stdio).
- ``log-encoder``/``log-req-encoder`` (``NAME[:LOGGER] ARGS``), applied in order: ``prefix``,
  ``suffix``, ``nl``, ``format`` and ``json`` with ``${msg}``, ``${msgnl}``, ``${unix}``,
  ``${micros}``, ``${millis}``, ``${strftime:FMT}``.
- A file logger with ``maxsize`` (or the stdio target with ``log-maxsize``) is renamed to its
  backup name (``log-backupname``; by default ``PATH.<unix time>``) and reopened when it grows past
  it; the writes are sequential in the master, so no line is lost or split.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Sequence

from uzerg.config.log_values import EncoderSpec, LoggerSpec, RouteSpec
from uzerg.record import field, record

SYSLOG_PATH = "/dev/log"
_LOG_INFO = 6
_FORMAT_VAR = re.compile(r"\$\{([^}]*)\}")


class Sink:
    """One logger: ``write(message)`` sends one line (bytes, newline included)."""

    name: str | None = None

    def write(self, message: bytes) -> None:
        raise NotImplementedError

    def reopen(self) -> None:
        """SIGHUP/fifo ``l``: reopen a file by its name (a rotating tool moved it away)."""

    def close(self) -> None:
        """Release the descriptor."""


class FdSink(Sink):
    def __init__(self, fd: int, *, owned: bool = False) -> None:
        self.fd = fd
        self.owned = owned

    def write(self, message: bytes) -> None:
        try:
            view = memoryview(message)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:
            pass  # a log target that went away must not stop the master

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)
            self.fd = -1


class FileSink(FdSink):
    """A log file opened for appending; rotated past ``maxsize`` bytes (0: never)."""

    def __init__(self, path: str, maxsize: int = 0, backupname: str | None = None) -> None:
        self.path = path
        self.maxsize = maxsize
        self.backupname = backupname
        super().__init__(_open_append(path), owned=True)

    def write(self, message: bytes) -> None:
        super().write(message)
        if self.maxsize > 0:
            size = os.lseek(self.fd, 0, os.SEEK_CUR)
            if size > self.maxsize:
                self.rotate(size)

    def rotate(self, size: int) -> None:
        target = _free_name(self.backupname or f"{self.path}.{int(time.time())}")
        FdSink.write(self, f"{time.ctime()} - logsize: {size}, triggering rotation to "
                           f"{target}...\n".encode())
        try:
            os.rename(self.path, target)
        except OSError:
            return  # uWSGI: "unable to rotate log", keeps writing to the same file
        self.reopen(truncate=True)

    def reopen(self, truncate: bool = False) -> None:
        flags = os.O_TRUNC if truncate else 0
        try:
            fd = _open_append(self.path, flags)
        except OSError:
            return
        os.dup2(fd, self.fd)  # the same descriptor number: the stdio target stays fd-stable
        os.close(fd)


class StdioSink(FdSink):
    """The original log target (the terminal, ``logto``/``daemonize`` file) as a logger."""


class DatagramSink(Sink):
    def __init__(self, family: int, address: str | tuple[str, int], prefix: bytes = b"") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.address = address
        self.prefix = prefix

    def write(self, message: bytes) -> None:
        try:
            self.sock.sendto(self.prefix + message, self.address)
        except OSError:
            pass  # no reader (yet): a datagram logger drops the line, as uWSGI's sendmsg()

    def close(self) -> None:
        self.sock.close()


class SyslogSink(DatagramSink):
    """libc syslog(LOG_INFO) to /dev/log: ``<PRI>Mmm dd hh:mm:ss IDENT: line``."""

    def __init__(self, ident: str, facility: int, path: str = SYSLOG_PATH) -> None:
        super().__init__(socket.AF_UNIX, path)
        self.ident = ident
        self.pri = facility * 8 + _LOG_INFO

    def write(self, message: bytes) -> None:
        stamp = time.strftime("%b %e %H:%M:%S")
        super().write(f"<{self.pri}>{stamp} {self.ident}: ".encode() + message.rstrip(b"\n"))


def open_sink(spec: LoggerSpec, stdio_fd: int, *, maxsize: int = 0,
              backupname: str | None = None) -> Sink:
    """The logger a ``logger``/``req-logger`` value names; OSError if it cannot be opened."""
    sink: Sink
    if spec.plugin == "file":
        sink = FileSink(spec.path, spec.maxsize, spec.backupname)
    elif spec.plugin == "fd":
        sink = FdSink(spec.fd)
    elif spec.plugin == "stdio":
        sink = StdioSink(stdio_fd)
    elif spec.plugin == "syslog":
        sink = SyslogSink(spec.ident, spec.facility)
    elif spec.host_port is not None:  # socket, UDP
        sink = DatagramSink(socket.AF_INET, spec.host_port, spec.prefix.encode())
    else:  # socket, unix datagram
        sink = DatagramSink(socket.AF_UNIX, spec.path, spec.prefix.encode())
    sink.name = spec.name
    return sink


def _free_name(name: str) -> str:
    """``name``, or ``name.1``, ``name.2``... if taken: uWSGI's rename() would overwrite an
    earlier backup (two rotations in one second, or a fixed log-backupname) and lose its lines."""
    candidate, n = name, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{name}.{n}"
    return candidate


def _open_append(path: str, flags: int = 0) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | flags, 0o640)


# -- encoders ------------------------------------------------------------------------------------

Encode = Callable[[bytes], bytes]


def build_encoder(spec: EncoderSpec) -> Encode:
    """The function one ``log-encoder`` applies to a message (bytes, newline included)."""
    args = spec.args.encode()
    if spec.name == "prefix":
        return lambda msg: args + msg
    if spec.name == "suffix":
        return lambda msg: msg + args
    if spec.name == "nl":
        return lambda msg: msg + b"\n"
    parts = _split_format(spec.args)
    escape = spec.name == "json"
    if escape:
        import json  # the json encoder only: not at start-up

        dumps = json.dumps

    def encode(msg: bytes) -> bytes:
        out: list[str] = []
        text = msg.decode("utf-8", "replace")
        for literal, var in parts:
            if var is None:
                out.append(literal)
                continue
            value = _format_var(var, text)
            out.append(dumps(value)[1:-1] if escape else value)
        return "".join(out).encode()

    return encode


def _split_format(template: str) -> list[tuple[str, str | None]]:
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for match in _FORMAT_VAR.finditer(template):
        parts.append((template[pos:match.start()], None))
        parts.append(("", match[1]))
        pos = match.end()
    parts.append((template[pos:], None))
    return parts


def _format_var(var: str, msg: str) -> str:
    now = time.time()
    if var == "msg":
        return msg[:-1] if msg.endswith("\n") else msg
    if var == "msgnl":
        return msg
    if var == "unix":
        return str(int(now))
    if var == "micros":
        return str(int(now * 1e6))
    if var == "millis":
        return str(int(now * 1e3))
    if var.startswith("strftime:"):
        return time.strftime(var[9:], time.localtime(now))
    return ""


# -- routing -------------------------------------------------------------------------------------

@record
class LogRouter:
    """Where each line of one log pipe goes (uWSGI's uwsgi_master_log/uwsgi_master_req_log)."""

    sinks: list[Sink]
    routes: list[tuple[re.Pattern[bytes], Sink]]
    encoders: list[tuple[str | None, Encode]]
    fallback: Sink
    _unnamed: list[Sink] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._unnamed = [s for s in self.sinks if s.name is None]

    def dispatch(self, message: bytes) -> None:
        routed = False
        for pattern, sink in self.routes:
            if pattern.search(message):
                self._emit(sink, message)
                routed = True
        if routed:
            return
        for sink in self._unnamed or [self.fallback]:
            self._emit(sink, message)

    def _emit(self, sink: Sink, message: bytes) -> None:
        for use_for, encode in self.encoders:
            if use_for is None or use_for == sink.name:
                message = encode(message)
        sink.write(message)

    def reopen(self) -> None:
        for sink in {id(s): s for s in (*self.sinks, self.fallback)}.values():
            sink.reopen()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def build_router(loggers: Sequence[LoggerSpec], routes: Sequence[RouteSpec],
                 encoders: Sequence[EncoderSpec], fallback: Sink, stdio_fd: int) -> LogRouter:
    """Open the loggers (OSError if one cannot be) and resolve routes to named loggers."""
    sinks = [open_sink(spec, stdio_fd) for spec in loggers]
    named = {s.name: s for s in sinks if s.name}
    resolved = [(re.compile(r.pattern.encode()), named[r.logger]) for r in routes
                if r.logger in named]  # uWSGI: a route to an unknown logger is ignored
    return LogRouter(sinks, resolved,
                     [(e.use_for, build_encoder(e)) for e in encoders], fallback)
