"""Value parsers of the option table: one function per kind of value, each used once, where
the Config is built. A parser takes the text as written and returns the typed value, or raises
ValueError with a one-line message (the loader prefixes ``file:line: key:``).

Numbers and booleans each have one parser here, so that a rule for reading them (uWSGI reads
numbers with C ``atoi``; issue 10) is applied in one place.
"""

from __future__ import annotations

import re

from uzerg.addresses import AddressError, parse_address
from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from typing import Literal

    Protocol = Literal["uwsgi", "http"]

PROTOCOLS: tuple[Protocol, ...] = ("uwsgi", "http")
FALSE_WORDS = frozenset({"false", "off", "no", "0"})

# patterns as text: compiled by re (and cached) when an option first needs one, not at
# every start-up (issue 13)
_INT = r"[+-]?\d+"
_INT_WITH_COMMENT = r"([+-]?\d+)\s+[;#].*"
_MODE = r"0?[0-7]{3}"


def parse_bool(value: str | None) -> bool:
    """uWSGI booleans: false/off/no (any case) and 0 are false; anything else, empty too, true."""
    if value is None:
        return True
    return value.strip().lower() not in FALSE_WORDS


class NotANumber(ValueError):
    """A number written as text uWSGI still reads: C ``strtol`` takes the leading digits
    (``true`` → 0, ``30s`` → 30, ``8M`` → 8, ``$(UNSET)`` → 0). ``value`` is what uWSGI reads;
    the loader applies it and warns once, with the line (issue 10)."""

    def __init__(self, text: str, value: int) -> None:
        super().__init__(f"{text!r} is not a number; uWSGI reads it as {value}")
        self.text = text
        self.value = value


def parse_int(value: str) -> int:
    """A decimal integer, read as uWSGI reads it (C ``strtol``: leading digits, else 0).

    A number followed by a ``; comment`` is that number (uWSGI has no inline comments but
    strtol stops there). Any other text raises NotANumber carrying uWSGI's value.
    """
    text = value.strip()
    match = re.fullmatch(_INT, text)
    if match is not None:
        return int(match.group(0))
    match = re.fullmatch(_INT_WITH_COMMENT, text)
    if match is not None:
        return int(match.group(1))
    leading = re.match(_INT, text)
    raise NotANumber(value, int(leading.group(0)) if leading else 0)


def parse_text(value: str) -> str:
    return value


def parse_mode(value: str) -> int:
    """``chmod-socket``: an octal mode such as 660 or 0660."""
    if not re.fullmatch(_MODE, value.strip()):
        raise ValueError(f"invalid socket mode (expected octal like 660): {value}")
    return int(value.strip(), 8)


def parse_protocol(value: str) -> Protocol:
    if value.strip() not in PROTOCOLS:
        raise ValueError(f"unsupported protocol (uzerg speaks uwsgi and http): {value}")
    return value.strip()  # type: ignore[return-value] # one of PROTOCOLS


def pair_parser(form: str) -> _PairParser:
    """A parser for ``NAME=VALUE``-style values (env, static-map, mount): kept as written."""
    return _PairParser(form)


@record(frozen=True, slots=True)
class _PairParser:
    form: str

    def __call__(self, value: str) -> str:
        if "=" not in value:
            raise ValueError(f"expected {self.form}: {value}")
        return value


@record(frozen=True, slots=True)
class ZergPoolEntry:
    """One ``zergpool`` value: the pool's unix address and the sockets it hands out, in order."""

    address: str
    sockets: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.address}:{','.join(self.sockets)}"


def parse_zergpool(value: str) -> ZergPoolEntry:
    """Parse ``ADDR:SOCK[,SOCK...]``; raise ValueError with a one-line message."""
    address, colon, listed = value.partition(":")
    address = address.strip()
    if not colon or not address:
        raise ValueError(f"invalid zergpool syntax: {value}")
    # uWSGI binds " b.sock" literally; we trim (SPEC §5) and skip empty items as it does.
    sockets = tuple(item.strip() for item in listed.split(",") if item.strip())
    if not sockets:
        raise ValueError(f"invalid zergpool syntax: {value} (no socket listed)")
    pool_address = parse_address(address)  # AddressError is a ValueError
    if not pool_address.is_unix:
        raise ValueError(f"zergpool {address}: the pool address must be a unix path or @name")
    for item in sockets:
        try:
            parse_address(item)
        except AddressError as exc:  # name the entry: a pool may list hundreds of sockets
            raise AddressError(f"{exc} in zergpool {value.strip()}") from None
    return ZergPoolEntry(address, sockets)


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
