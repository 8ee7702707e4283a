"""The uWSGI option stream: environment, command line and INI files → ordered entries.

This is uWSGI's ``add_exported_option`` (core/config.c, checked against uwsgi 2.0.31): entries
arrive in order; ``ini``/``include`` load a file in place; ``if-*``/``for*`` open a block that
filters or repeats the following entries until ``endif``/``endfor``/``end``, with ``%(_)``
replaced in their values. Values are expanded later (``uzerg.config.expand``), as uWSGI does.
"""

from __future__ import annotations

import _socket  # not socket: ~14M instructions to import (IntEnums of every constant)
import os

from uzerg.config.ini import ConfigError, Origin, has_undecodable, read_ini, split_file_section
from uzerg.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: not imported at run time (issue 13)
    from collections.abc import Callable, Mapping

END_KEYS = frozenset({"end", "endif", "endfor", "end-if", "end-for"})
IF_KEYS = frozenset({
    "if-env", "if-not-env", "if-exists", "if-not-exists", "if-file", "if-not-file", "if-dir",
    "if-not-dir", "if-directory", "if-opt", "if-not-opt", "if-hostname", "if-not-hostname",
    "if-reload", "if-not-reload", "if-plugin", "if-not-plugin", "if-hostname-match",
    "if-not-hostname-match",
})
FOR_KEYS = frozenset({"for", "for-glob", "for-times", "for-readline"})
LOGIC_KEYS = IF_KEYS | FOR_KEYS | END_KEYS | {"else"}
LOAD_KEYS = frozenset({"ini", "include"})
SET_KEYS = frozenset({"set", "set-placeholder", "set-ph"})
# uWSGI 2.0 spellings of the same directives
KEY_ALIASES = {"ifenv": "if-env", "ifexists": "if-exists", "ifdir": "if-dir",
               "ifplugin": "if-plugin", "if-directory": "if-dir"}


@record
class Entry:
    """One ``key = value`` as it arrived. ``value`` None: a flag given bare on the command line."""

    key: str
    value: str | None
    origin: Origin
    label: str = ""  # how the user wrote the key: "--processes", "UWSGI_PROCESSES", "processes"
    immediate: bool = False  # a directive handled while collecting, never an option
    placeholder: bool = False  # declared with set-placeholder

    @property
    def shown_key(self) -> str:
        return self.label or self.key


@record
class _Block:
    kind: str
    arg: str
    origin: Origin
    passed: bool = False  # if-blocks: the condition held
    in_else: bool = False
    warned: bool = False  # for-blocks: the one warning about the argument was given


@record
class Collector:
    environ: Mapping[str, str]
    warn: Callable[[str], None]
    entries: list[Entry] = field(default_factory=list)
    _block: _Block | None = None
    _running: bool = False
    _loading: list[tuple[str, str]] = field(default_factory=list)
    _last_file: str | None = None

    # -- the stream -------------------------------------------------------------------------
    def add(self, key: str, value: str | None, origin: Origin, label: str = "") -> None:
        key = KEY_ALIASES.get(key, key)
        if value and key not in LOAD_KEYS and has_undecodable(value):
            # bytes that are not UTF-8 from argv or the environment, refused as an INI line's
            # are; a file to load may have any name
            raise ConfigError(str(origin), label or key, "not valid UTF-8")
        if not self._running:
            if key in END_KEYS:
                self._block = None
                self._record(key, value, origin, label)
                return
            if key == "else":
                self._else(origin, label)
                return
            if self._block is not None:
                if key in IF_KEYS or key in FOR_KEYS:
                    raise ConfigError(str(origin), label or key, "nested if/for blocks are not "
                                      f"supported (the block opened at {self._block.origin} "
                                      "needs its endif/endfor first)")
                self._run_block(key, value or "", origin, label)
                return
        self._append(key, value, origin, label)

    def _append(self, key: str, value: str | None, origin: Origin, label: str) -> None:
        if key in IF_KEYS or key in FOR_KEYS:
            if self._block is not None:
                raise ConfigError(str(origin), label or key, "nested if/for blocks are not "
                                  "supported (uWSGI: recursive logic in options)")
            self._record(key, value, origin, label)
            self._open_block(key, value or "", origin)
        elif key in LOAD_KEYS:
            self._record(key, value, origin, label)
            self.load(value or "", origin, label or key)
        elif key in SET_KEYS:
            self._record(key, value, origin, label)
            name, equal, setting = (value or "").partition("=")
            if not equal or not name.strip():
                raise ConfigError(str(origin), label or key, f"expected NAME=VALUE: {value}")
            self.entries.append(Entry(name.strip(), setting, origin, name.strip(),
                                      placeholder=key != "set"))
        else:
            self.entries.append(Entry(key, value, origin, label))

    def _record(self, key: str, value: str | None, origin: Origin, label: str) -> None:
        self.entries.append(Entry(key, value, origin, label, immediate=True))

    # -- files ------------------------------------------------------------------------------
    def load(self, spec: str, origin: Origin | None, label: str = "ini") -> None:
        """Load ``FILE[:SECTION]`` (``:SECTION`` = the file read last) in place."""
        path, section = split_file_section(spec)
        where = str(origin) if origin else None
        if not path:
            if self._last_file is None:
                raise ConfigError(where, label, f"{spec}: no file was read before")
            path = self._last_file
        if path.endswith((".xml", ".yaml", ".yml", ".json", ".js")) or "://" in path:
            raise ConfigError(where, label, f"{path}: only INI configuration files are "
                              "supported by uzerg")
        identity = (os.path.realpath(path), section or "uwsgi")
        if identity in self._loading:
            chain = " -> ".join(f"{p}:{s}" for p, s in [*self._loading, identity])
            raise ConfigError(where, label, f"include loop: {chain}")
        ini = read_ini(path, section, where)
        self._last_file = path
        if not ini.found_section:
            self.warn(f"{path}: section [{ini.section}] not found")
        self._loading.append(identity)
        try:
            for line in ini.lines:
                self.add(line.key, line.value, Origin(path, line.line), line.key)
        finally:
            self._loading.pop()

    # -- logic ------------------------------------------------------------------------------
    def _open_block(self, kind: str, arg: str, origin: Origin) -> None:
        block = _Block(kind, arg, origin)
        if kind in IF_KEYS:
            if kind.endswith("hostname-match") and _hostname_match(arg) is None:
                self.warn(f"{origin}: {kind}: invalid regular expression {arg!r}; uWSGI counts "
                          "it as a match, so does uzerg")
            block.passed = self._condition(kind, arg) is not None
        self._block = block

    def _else(self, origin: Origin, label: str) -> None:
        block = self._block
        if block is None or block.kind not in IF_KEYS or block.in_else:
            raise ConfigError(str(origin), label or "else", "else without an open if-block")
        self.warn(f"{origin}: else: uWSGI 2.0 ignores `else` (its lines stay in the if-block); "
                  "uzerg applies them when the condition failed, as uWSGI 2.1 does")
        block.in_else = True
        self._record("else", "", origin, label)

    def _run_block(self, key: str, value: str, origin: Origin, label: str) -> None:
        block = self._block
        assert block is not None
        if block.kind in FOR_KEYS:
            items = self._for_items(block, origin)
        elif block.in_else:
            items = [""] if not block.passed else []
        else:  # uWSGI evaluates the condition again for every entry of the block
            found = self._condition(block.kind, block.arg)
            block.passed = found is not None
            items = [found] if found is not None else []
        self._running = True
        try:
            for item in items:
                self._append(key, value.replace("%(_)", item), origin, label)
        finally:
            self._running = False

    def _condition(self, kind: str, arg: str) -> str | None:
        """The ``%(_)`` value when the condition of an if-block holds, else None."""
        negate = "-not-" in kind
        test = kind.replace("-not-", "-")
        if test in ("if-env", "if-opt"):
            name, equal, wanted = arg.partition("=")
            actual = self.environ.get(name) if test == "if-env" else self.first_value(name)
            holds = actual is not None and (not equal or actual == wanted)
            if negate:
                return (actual or "") if not holds else None
            return actual if holds else None
        if test == "if-exists":
            holds = os.access(arg, os.R_OK)
        elif test == "if-file":
            holds = os.path.isfile(arg)
        elif test == "if-dir":
            holds = os.path.isdir(arg)
        elif test == "if-hostname":
            holds = _socket.gethostname() == arg
        elif test == "if-hostname-match":  # uWSGI: a regexp that does not compile matches
            holds = _hostname_match(arg) is not False
        elif test == "if-reload":
            holds = False  # a configuration being read is never a reload
        else:  # if-plugin: the Python plugin is the one uzerg has
            from uzerg.config import uwsgi_options  # not at start-up (issue 13)

            holds = uwsgi_options.plugins_are_python(arg) and bool(arg.strip())
        return arg if holds != negate else None

    def _for_items(self, block: _Block, origin: Origin) -> list[str]:
        arg = block.arg
        if block.kind == "for":
            return arg.split()
        if block.kind == "for-times":  # uWSGI reads the count with atoi
            from uzerg.config.values import NotANumber, parse_int

            try:
                count = parse_int(arg)
            except NotANumber as lenient:
                count = lenient.value
                self._warn_once(block, f"for-times: {lenient}, so does uzerg")
            return [str(i) for i in range(1, count + 1)]
        if block.kind == "for-glob":
            import glob  # for-glob only: not at start-up

            found = sorted(glob.glob(arg))
            return [p + "/" if os.path.isdir(p) else p for p in found] or [arg]
        try:
            with open(arg, encoding="utf-8", errors="surrogateescape") as handle:
                return [line.split("\n")[0].split("\r")[0] for line in handle]
        except OSError as exc:  # uWSGI logs the failed open and skips the block
            self._warn_once(block, f"for-readline: cannot read {arg}: {exc.strerror}; uWSGI "
                            "skips the block, so does uzerg")
            return []

    def _warn_once(self, block: _Block, message: str) -> None:
        if not block.warned:
            block.warned = True
            self.warn(f"{block.origin}: {message}")

    def first_value(self, key: str) -> str | None:
        """The first value recorded for ``key`` (uWSGI's uwsgi_get_exported_opt)."""
        for entry in self.entries:
            if entry.key == key:
                return entry.value
        return None


def _hostname_match(pattern: str) -> bool | None:
    """Whether the regexp finds a match in the hostname (PCRE search); None: it is invalid."""
    import re  # if-hostname-match only

    try:
        return re.search(pattern, _socket.gethostname()) is not None
    except re.error:
        return None
