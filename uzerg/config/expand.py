"""Reference expansion in option values, uWSGI's three passes (core/uwsgi.c, 2.0.31):
``$(NAME)`` environment, then ``@(FILE)`` file contents, then ``%(option)`` the first value of
an option or placeholder (``%(a + 2)``: uWSGI's little arithmetic pipeline). A reference that
cannot be resolved is kept as written (log-format variables like ``%(addr)`` rely on that).
"""

from __future__ import annotations

from uzerg.config.ini import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: not imported at run time (issue 13)
    from collections.abc import Callable, Mapping

    from uzerg.config.collect import Entry

    Hook = Callable[[str], str | None]

MAX_EXPANSIONS = 1000  # per value: more means a reference loop (a = %(b), b = %(a))


def expand_entries(entries: list[Entry], environ: Mapping[str, str],
                   warn: Callable[[str], None]) -> set[str]:
    """Expand every non-directive entry in place; return the names used as ``%(name)``."""
    referenced: set[str] = set()
    targets = [e for e in entries if not e.immediate and e.value]

    for entry in targets:
        def from_env(name: str, entry: Entry = entry) -> str | None:
            found = environ.get(name)
            if found is None:
                warn(f"{entry.origin}: {entry.shown_key}: $({name}): environment variable not "
                     "set, kept as written")
            return found
        entry.value = _expand(entry, "$", from_env)
    for entry in targets:
        entry.value = _expand(entry, "@", lambda name, entry=entry: _read_file(name, entry))
    for entry in targets:
        def from_option(name: str) -> str | None:
            referenced.add(name)
            return _placeholder(name, entries)
        entry.value = _expand(entry, "%", from_option)
    return referenced


def _expand(entry: Entry, symbol: str, hook: Hook) -> str | None:
    value = entry.value
    if value is None or symbol + "(" not in value:
        return value
    pos = 0
    for _ in range(MAX_EXPANSIONS):
        start = value.find(symbol + "(", pos)
        if start < 0:
            return value
        end = _closing(value, start + 2)
        if end < 0:
            return value
        name = value[start + 2 : end]
        replacement = hook(name) if name else None
        if replacement is None:
            pos = end + 1
            continue
        value = value[:start] + replacement + value[end + 1 :]
        pos = 0  # uWSGI scans again from the start: references inside the result expand too
    raise ConfigError(str(entry.origin), entry.shown_key,
                      f"{symbol}(...) references loop (more than {MAX_EXPANSIONS} expansions)")


def _closing(value: str, index: int) -> int:
    depth = 0
    for i in range(index, len(value)):
        if value[i] == "(":
            depth += 1
        elif value[i] == ")":
            if depth == 0:
                return i
            depth -= 1
    return -1


def _read_file(name: str, entry: Entry) -> str:
    try:
        with open(name, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(str(entry.origin), entry.shown_key,
                          f"@({name}): cannot read {name}: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text  # uWSGI drops one final newline


def _first(name: str, entries: list[Entry]) -> str | None:
    for entry in entries:
        if entry.key == name:
            return entry.value
    return None


def _placeholder(key: str, entries: list[Entry]) -> str | None:
    """uWSGI's uwsgi_manage_placeholder: a name, or a space-separated pipeline."""
    if " " not in key:
        return _first(key, entries)
    current: str | None = None
    state = "concat"
    for token in key.split():
        if token in ("+", "-", "*", "/"):
            state = token
            continue
        if token in ("++", "--"):
            if current is not None:
                current = str(_to_int(current) + (1 if token == "++" else -1))
            state = "concat"
            continue
        value = token if token.isdigit() else (_first(token, entries) or "")
        if state == "concat":
            current = (current or "") + value
        else:
            left, right = _to_int(current or ""), _to_int(value)
            if state == "+":
                current = str(left + right)
            elif state == "-":
                current = str(left - right)
            elif state == "*":
                current = str(left * right)
            else:
                current = "0" if right == 0 else str(abs(left) // abs(right) * (
                    1 if (left >= 0) == (right >= 0) else -1))
        state = "concat"
    return current


def _to_int(text: str) -> int:
    """C strtoll: the leading integer, 0 when there is none."""
    text = text.lstrip()
    digits = ""
    for index, char in enumerate(text):
        if char.isdigit() or (index == 0 and char in "+-"):
            digits += char
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0
