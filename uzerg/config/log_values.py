"""Value parsers of the logging options (``logger``, ``req-logger``, ``log-route``,
``log-encoder``, ``log-date``...) and the records they make: imported when one of these options
is first set (``uzerg.config.option.LazyParser``; a plain start sets none, issue 13) and by
``uzerg.logsinks``, which opens what they describe."""

from __future__ import annotations

import re

from uzerg.record import record

CTIME_FORMAT = "%a %b %e %H:%M:%S %Y"  # what C ctime() prints
LOGGER_PLUGINS = ("file", "fd", "stdio", "syslog", "socket")
ENCODERS = ("prefix", "suffix", "nl", "format", "json")


@record(frozen=True, slots=True)
class LoggerSpec:
    """One ``logger``/``req-logger`` value: ``[NAME ]PLUGIN[:ARG]`` (uWSGI's syntax), its
    argument parsed here so that opening the sink only opens it."""

    name: str | None
    plugin: str
    arg: str
    path: str = ""  # file: the log file; socket: a unix datagram socket's path
    maxsize: int = 0  # file: rotate past this many bytes (0: never)
    backupname: str | None = None  # file: where a rotated file goes
    fd: int = -1  # fd: the descriptor
    ident: str = "uwsgi"  # syslog
    facility: int = 3  # syslog: daemon
    host_port: tuple[str, int] | None = None  # socket: a UDP address
    prefix: str = ""  # socket: put before each line

    def __str__(self) -> str:
        head = f"{self.name} " if self.name else ""
        return f"{head}{self.plugin}:{self.arg}" if self.arg else f"{head}{self.plugin}"


SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "security": 4, "syslog": 5,
    "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}


def parse_logger(value: str) -> LoggerSpec:
    text = value.strip()
    name: str | None = None
    first, space, rest = text.partition(" ")
    if space and first.isalnum():  # uWSGI: an alphanumeric word before a space is an id
        name, text = first, rest.strip()
    plugin, _, arg = text.partition(":")
    if plugin not in LOGGER_PLUGINS:
        raise ValueError(f"unknown logger plugin {plugin!r} (uzerg has "
                         f"{', '.join(LOGGER_PLUGINS)})")
    if plugin == "file":
        keys = dict(item.split("=", 1) for item in arg.split(",") if "=" in item) \
            if "=" in arg else {"logfile": arg}
        if not keys.get("logfile"):
            raise ValueError("file logger needs a path: file:/path/to/log")
        maxsize = keys.get("maxsize", "0") or "0"
        if not maxsize.isdigit():  # a plain error: the loader's lenient int is for whole values
            raise ValueError(f"file logger: maxsize {maxsize!r} is not a number")
        return LoggerSpec(name, plugin, arg, path=keys["logfile"], maxsize=int(maxsize),
                          backupname=keys.get("backupname"))
    if plugin == "fd":
        if not arg.isdigit():
            raise ValueError(f"fd logger needs a descriptor number: {value}")
        return LoggerSpec(name, plugin, arg, fd=int(arg))
    if plugin == "syslog":
        ident, _, facility = (arg or "uwsgi").partition(",")
        return LoggerSpec(name, plugin, arg, ident=ident,
                          facility=SYSLOG_FACILITIES.get(facility, 3))
    if plugin == "socket":
        address, _, prefix = arg.partition(",")
        if not address:
            raise ValueError("socket logger needs an address: socket:host:port or socket:/path")
        if ":" not in address:
            return LoggerSpec(name, plugin, arg, path=address, prefix=prefix)
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"socket logger: bad port in {address!r}")
        return LoggerSpec(name, plugin, arg, host_port=(host or "127.0.0.1", int(port)),
                          prefix=prefix)
    return LoggerSpec(name, plugin, arg)


@record(frozen=True, slots=True)
class RouteSpec:
    """One ``log-route``/``log-req-route`` value: ``LOGGER REGEX``."""

    logger: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.logger} {self.pattern}"


def parse_route(value: str) -> RouteSpec:
    logger, _, pattern = value.strip().partition(" ")
    if not pattern:
        raise ValueError(f"expected LOGGER REGEX: {value}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return RouteSpec(logger, pattern)


@record(frozen=True, slots=True)
class EncoderSpec:
    """One ``log-encoder`` value: ``NAME[:LOGGER] [ARGS]``."""

    name: str
    use_for: str | None
    args: str

    def __str__(self) -> str:
        head = f"{self.name}:{self.use_for}" if self.use_for else self.name
        return f"{head} {self.args}" if self.args else head


def parse_encoder(value: str) -> EncoderSpec:
    head, _, args = value.strip().partition(" ")
    name, _, use_for = head.partition(":")
    if name not in ENCODERS:
        raise ValueError(f"unknown log encoder {name!r} (uzerg has {', '.join(ENCODERS)})")
    return EncoderSpec(name, use_for or None, args)


def parse_log_date(value: str) -> str:
    """``log-date``: bare or a true word → uWSGI's ctime() prefix, else a strftime format."""
    return CTIME_FORMAT if value.strip().lower() in ("", "true", "1", "on", "yes") else value
