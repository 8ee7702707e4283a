"""uWSGI-flavoured INI reader: file → ``(key, value, line)`` in order, with magic variables.

uWSGI's rules, not configparser's (SPEC §9, checked against uwsgi 2.0.31): one ``key = value``
per line split at the first ``=``; only space, tab and CR are stripped; no quotes, no inline
comments (``a = b ; c`` keeps ``b ; c``); ``;``/``#`` lines are comments; ``[name]`` starts a
section (the text between the first and the last character); a bare ``key`` has an empty value.

Magic variables (``%d``, ``%p``, ...) are replaced in the whole file text before parsing, as
uWSGI does: an unknown ``%X`` becomes empty, ``%%`` is ``%``, ``%(`` is kept for placeholders,
and a ``%`` ending a line swallows the line break (uWSGI joins the two lines).
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import os
import struct
import time

from uzerg import __version__
from uzerg.record import record

MAX_FILE_BYTES = 8 * 1024 * 1024  # a bigger "config" is a mistake (a log file, a binary)
DEFAULT_SECTION = "uwsgi"
_STRIP = " \t\r"


class ConfigError(Exception):
    """A configuration mistake; ``str()`` is one line: ``file:line: key: message``."""

    def __init__(self, where: str | None, key: str | None, message: str) -> None:
        self.where = where
        self.key = key
        self.message = message
        parts = [p for p in (where, key) if p]
        super().__init__(": ".join([*parts, message]))


@record(frozen=True)
class Origin:
    """Where a setting came from: a file and line, the command line or the environment."""

    source: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


COMMAND_LINE = Origin("command line")
ENVIRONMENT = Origin("environment")


@record(frozen=True)
class IniLine:
    key: str
    value: str
    line: int


@record(frozen=True)
class IniFile:
    path: str
    section: str
    lines: tuple[IniLine, ...]
    found_section: bool


def split_file_section(spec: str) -> tuple[str, str | None]:
    """``FILE:SECTION`` → (FILE, SECTION); split at the last ``:`` (uWSGI); no section → None."""
    scheme = spec.find("://")
    search_from = spec.rfind("/") if scheme >= 0 else 0
    colon = spec.rfind(":", max(search_from, 0))
    if colon < 0:
        return spec, None
    return spec[:colon], (spec[colon + 1 :] or None)


def magic_table(path: str, section: str | None, cwd: str | None = None) -> dict[str, str]:
    """The ``%X`` values for a config file (uWSGI's config_magic_table_fill)."""
    cwd = cwd if cwd is not None else os.getcwd()
    if os.path.islink(path):
        full = path if path.startswith("/") else f"{cwd}/{path}"
    else:
        full = os.path.realpath(path) if os.path.exists(path) else path
    name = full.rsplit("/", 1)[-1]
    directory = full[: len(full) - len(name)]
    table = {
        "%": "%", "(": "%(", "o": path, "p": full, "s": name, "d": directory,
        "c": directory.rstrip("/").rsplit("/", 1)[-1], "x": section or "",
        "e": path.rsplit(".", 1)[1] if "." in path else "",
        "n": name.rsplit(".", 1)[0] if "." in name else "",
        "h": _socket.gethostname(), "k": str(os.cpu_count() or 1),
        "u": str(os.getuid()), "g": str(os.getgid()),
        "U": _user_name(), "G": _group_name(),
        "t": str(int(time.time())), "T": str(int(time.time() * 1_000_000)),
        "v": cwd, "V": __version__, "b": _binary_path(),
        "j": struct.pack("<I", _djb33x(full)).hex().upper(),
        "i": str(os.stat(path).st_ino) if os.path.exists(path) else "",
    }
    for index, part in enumerate(p for p in directory.split("/") if p):
        if index > 9:
            break
        table[str(index)] = part
    for letter in "cdeijnopsx":  # uWSGI 2.0 gives the upper case ones the same value
        table[letter.upper()] = table[letter]
    return table


def magic_substitute(text: str, table: dict[str, str]) -> str:
    """Replace ``%X`` everywhere in ``text`` as uWSGI's magic_sub does (unknown X → empty)."""
    if "%" not in text:
        return text
    out: list[str] = []
    i = 0
    end = len(text)
    while i < end:
        pos = text.find("%", i)
        if pos < 0 or pos + 1 >= end:
            out.append(text[i:])
            break
        out.append(text[i:pos])
        out.append(table.get(text[pos + 1], ""))
        i = pos + 2
    return "".join(out)


def read_ini(path: str, section: str | None, where: str | None = None) -> IniFile:
    """Read one section of an INI file; raise ConfigError for unreadable or non-UTF-8 input."""
    asked = section or DEFAULT_SECTION
    label = where or path
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(label, None, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(label, None, f"{path} is larger than {MAX_FILE_BYTES} bytes: "
                          "not a configuration file")
    if b"\0" in data:
        raise ConfigError(label, None, f"{path} contains NUL bytes: not a configuration file")
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
    table = magic_table(path, section)
    lines: list[IniLine] = []
    current = ""
    found = False
    for number, raw in _logical_lines(text, table):
        stripped = raw.strip(_STRIP)
        if not stripped or stripped[0] in ";#":
            continue
        if stripped[0] == "[":
            current = stripped[1:-1]
            continue
        if current != asked:
            continue
        found = True
        key, _, value = stripped.partition("=")
        key = key.rstrip(_STRIP)
        value = value.lstrip(_STRIP)
        if has_undecodable(key) or has_undecodable(value):
            raise ConfigError(f"{path}:{number}", _printable(key), "not valid UTF-8")
        lines.append(IniLine(key, value, number))
    return IniFile(path, asked, tuple(lines), found)


def _logical_lines(text: str, table: dict[str, str]) -> list[tuple[int, str]]:
    """Lines after magic substitution, numbered as in the file; ``%`` at a line end joins."""
    physical = text.split("\n")
    result: list[tuple[int, str]] = []
    index = 0
    while index < len(physical):
        number = index + 1
        line = physical[index]
        index += 1
        while _dangling_percent(line) and index < len(physical):
            line = line[:-1] + physical[index]  # uWSGI: "%\n" → magic_table['\n'] = ""
            index += 1
        result.append((number, magic_substitute(line, table)))
    return result


def _dangling_percent(line: str) -> bool:
    i = 0
    while True:
        pos = line.find("%", i)
        if pos < 0:
            return False
        if pos == len(line) - 1:
            return True
        i = pos + 2


def has_undecodable(text: str) -> bool:
    """Bytes that were not UTF-8 (decoded with surrogateescape, as argv and files are)."""
    return not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _djb33x(text: str) -> int:
    value = 5381
    for byte in text.encode("utf-8", "surrogateescape"):
        value = (((value << 5) + value) ^ byte) & 0xFFFFFFFF
    return value


def _user_name() -> str:
    import pwd  # the %U magic variable only: not at every start (issue 13)

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _group_name() -> str:
    import grp  # the %G magic variable only: not at every start (issue 13)

    try:
        return grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        return str(os.getgid())


def _binary_path() -> str:
    import sys

    return os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else sys.executable
