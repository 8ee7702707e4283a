"""Value parsers of the option table: one function per kind of value, each used once, where
the Config is built. A parser takes the text as written and returns the typed value, or raises
ValueError with a one-line message (the loader prefixes ``file:line: key:``).

Numbers and booleans each have one parser here, so that a rule for reading them (uWSGI reads
numbers with C ``atoi``; issue 10) is applied in one place.
"""

from __future__ import annotations

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
    # the common case without a pattern's compile at every start (issue 13); isascii keeps
    # other digits (isdigit takes "²", which neither \d nor int() does) on the patterns' path
    if text.isascii() and (text.isdigit() or (text[1:].isdigit() and text[0] in "+-")):
        return int(text)
    import re  # here, not at start-up: an app that loads no re pays nothing for it (issue 13)

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
    import re

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


@record(frozen=True)
class _PairParser:
    form: str

    def __call__(self, value: str) -> str:
        if "=" not in value:
            raise ValueError(f"expected {self.form}: {value}")
        return value


@record(frozen=True)
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
