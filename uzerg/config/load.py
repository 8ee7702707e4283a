"""Merge the sources, expand references, validate → a frozen ``Config``.

Order (as uwsgi 2.0.31 resolves it): ``UWSGI_*``/``UZERG_*`` environment variables, then the
command line in order (``--ini FILE`` is read in place), then bare ``FILE.ini`` arguments.
List options accumulate; for the others the last value wins. Unknown keys are sorted per
SPEC §9 (``uzerg.config.uwsgi_options``): silent, warning or error; ``strict`` makes warnings
errors.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import field, make_dataclass
from typing import Any

from uzerg.config import options, uwsgi_options
from uzerg.config.argv import parse_argv
from uzerg.config.collect import Collector, Entry
from uzerg.config.expand import expand_entries
from uzerg.config.ini import COMMAND_LINE, ENVIRONMENT, ConfigError, Origin
from uzerg.config.options import Option

__all__ = ["Config", "ConfigError", "format_config", "load_config"]

_EXTRA_FIELDS: list[tuple[str, Any, Any]] = [
    ("warnings", tuple, field(default=())),
    # canonical option name → where its (last) value came from, for every option that was set
    ("origins", dict, field(default_factory=dict, compare=False)),
    # canonical option names in the order they were first set (what --check-config prints)
    ("set_options", tuple, field(default=())),
]

Config = make_dataclass(
    "Config",
    [(o.attr, Any, field(default=o.initial)) for o in options.OPTIONS] + _EXTRA_FIELDS,
    frozen=True,
    slots=True,
)
Config.__module__ = __name__
Config.__doc__ = """The resolved configuration: one attribute per option (``-`` → ``_``)."""

_INT = re.compile(r"[+-]?\d+")
_INT_WITH_COMMENT = re.compile(r"([+-]?\d+)\s+[;#].*")
_FLAG_FALSE_WITH_COMMENT = re.compile(r"(false|off|no|0)\s+[;#].*", re.IGNORECASE)
_MODE = re.compile(r"0?[0-7]{3}")
_SKIP_ENV_PREFIXES = ("UWSGI_VASSAL_", "UWSGI_EMPEROR_")


def load_config(argv: list[str], environ: Mapping[str, str], *,
                write: Callable[[str], None] | None = None) -> Any:
    """Build the Config from a command line (without the program name) and an environment.

    Raises ConfigError (one line); its ``warnings`` attribute holds the warnings produced first.
    ``print`` directives go to ``write`` (default: stdout), as uWSGI prints them while loading.
    """
    warnings: list[str] = []
    try:
        return _load(argv, environ, warnings, write or _stdout)
    except ConfigError as exc:
        exc.warnings = tuple(warnings)  # type: ignore[attr-defined]
        raise


def _stdout(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _load(argv: list[str], environ: Mapping[str, str], warnings: list[str],
          write: Callable[[str], None]) -> Any:
    collector = Collector(environ, warnings.append)
    for name, value in environ.items():
        key = _env_key(name)
        if key is not None:
            collector.add(key, value, ENVIRONMENT, name)
    parsed, positional = parse_argv(argv)
    for arg in parsed:
        collector.add(arg.key, arg.value, COMMAND_LINE, arg.label)
    for arg in positional:
        if arg.endswith((".py", ".wsgi")):  # uWSGI's python plugin: a bare script is wsgi-file
            collector.add("wsgi-file", arg, COMMAND_LINE, arg)
        elif ".ini" in arg:
            collector.load(arg, None)
        else:
            raise ConfigError("command line", arg, "unexpected argument (expected FILE.ini)")
    referenced = expand_entries(collector.entries, environ, warnings.append)
    return _resolve(collector.entries, referenced, warnings, write)


def _env_key(name: str) -> str | None:
    if not name.startswith(("UWSGI_", "UZERG_")) or name.startswith(_SKIP_ENV_PREFIXES):
        return None
    key = name[6:].lower().replace("_", "-")
    if options.lookup(key) is None and key not in uwsgi_options.KNOWN:
        return None  # build and internal variables (UWSGI_PROFILE, UWSGI_RELOADS, ...)
    return key


class _Resolver:
    def __init__(self, warnings: list[str], write: Callable[[str], None]) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[str, Origin] = {}
        self.order: list[str] = []
        self.warnings = warnings
        self.write = write
        self.strict = False

    def warn(self, entry: Entry, message: str) -> None:
        where = str(entry.origin)
        if self.strict:
            raise ConfigError(where, entry.shown_key, f"{message} (strict mode)")
        self.warnings.append(": ".join(p for p in (where, entry.shown_key, message) if p))

    def apply(self, option: Option, entry: Entry) -> None:
        value = _convert(option, entry, self)
        if value is _SKIP:
            return
        name = option.name
        if option.kind == "list":
            value = (*self.values.get(name, ()), value)
        self.values[name] = value
        self.origins[name] = entry.origin
        if name not in self.order:
            self.order.append(name)
        if name == "strict" and value:
            self.strict = True


_SKIP = object()


def _resolve(entries: list[Entry], referenced: set[str], warnings: list[str],
             write: Callable[[str], None]) -> Any:
    collected = list(warnings)  # produced while reading: sections, $(ENV), else
    resolver = _Resolver(warnings, write)
    # uWSGI's strict applies from where it is set; the command line and environment set it first
    resolver.strict = any(
        e.key == "strict" and e.origin in (COMMAND_LINE, ENVIRONMENT)
        and options.parse_bool(e.value) for e in entries
    )
    known_names = sorted(set(options.BY_NAME) | uwsgi_options.KNOWN)
    for entry in entries:
        if entry.immediate:
            continue
        option = options.lookup(entry.key)
        if option is not None:
            if option.name == "print":
                write(entry.value or "")
            elif option.name not in options.DIRECTIVES:
                resolver.apply(option, entry)
            continue
        _unknown_key(entry, referenced, known_names, resolver)
    if resolver.strict and collected:
        raise ConfigError(None, None, f"{collected[0]} (strict mode)")
    return Config(
        **{options.BY_NAME[name].attr: value for name, value in resolver.values.items()},
        warnings=tuple(warnings),
        origins=dict(resolver.origins),
        set_options=tuple(resolver.order),
    )


def _unknown_key(entry: Entry, referenced: set[str], known_names: list[str],
                 resolver: _Resolver) -> None:
    key = entry.key
    where = str(entry.origin)
    if not key:
        resolver.warn(entry, "line without a key ignored")
        return
    if uwsgi_options.is_uwsgi_option(key):
        severity = uwsgi_options.classify(key, entry.value or "")
        if severity == "error":
            hint = uwsgi_options.refusal_hint(key)
            raise ConfigError(where, entry.shown_key, "uzerg does not provide this uWSGI "
                              "feature; running without it would change the service"
                              + (f" ({hint})" if hint else ""))
        if severity == "warning":
            resolver.warn(entry, "uWSGI option not implemented by uzerg, ignored")
        return
    if entry.placeholder:
        return
    if key in referenced:
        if resolver.strict:
            raise ConfigError(where, entry.shown_key, "unknown option (strict mode: declare "
                              "placeholders with set-placeholder)")
        return
    short = options.BY_SHORT.get(key)
    hint = short.name if short else uwsgi_options.closest(key, known_names)
    resolver.warn(entry, f"unknown option, ignored (did you mean `{hint}`?)" if hint
                  else "unknown option, ignored")


def _convert(option: Option, entry: Entry, resolver: _Resolver) -> Any:
    raw = entry.value
    if option.kind == "flag":
        if raw is not None and _FLAG_FALSE_WITH_COMMENT.fullmatch(raw.strip()):
            resolver.warn(entry, f"value {raw!r} counts as true (uWSGI has no inline comments)")
        return options.parse_bool(raw)
    if raw is None or (raw.strip() in ("", "true") and option.bare is not None):
        if option.bare is not None:
            raw = option.bare
        elif raw is None:
            raise _error(entry, "needs a value")
    if option.kind == "int":
        return _to_int(option, entry, raw, resolver)
    if option.kind == "list":
        if not raw.strip():
            resolver.warn(entry, "empty value ignored")
            return _SKIP
        _validate_item(option, entry, raw)
        return raw
    if not raw.strip():
        return option.default  # `pidfile =` means "not set", not an empty path
    _validate_string(option, entry, raw)
    return raw


def _to_int(option: Option, entry: Entry, raw: str, resolver: _Resolver) -> int:
    text = raw.strip()
    match = _INT.fullmatch(text) or _INT_WITH_COMMENT.fullmatch(text)
    if match is None:
        unset = re.search(r"\$\(([^)]*)\)", raw)
        hint = f" (environment variable {unset.group(1)} is not set)" if unset else ""
        raise _error(entry, f"invalid integer: {raw}{hint}")
    number = int(match.group(1) if match.re is _INT_WITH_COMMENT else match.group(0))
    if option.minimum is not None and number < option.minimum:
        raise _error(entry, f"must be at least {option.minimum}: {raw}")
    if option.maximum is not None and number > option.maximum:
        resolver.warn(entry, f"{number} is above the maximum {option.maximum}, "
                      f"using {option.maximum}")
        number = option.maximum
    return number


def _validate_item(option: Option, entry: Entry, raw: str) -> None:
    if option.name == "zergpool":
        from uzerg.zerg.pool import parse_zergpool

        try:
            parse_zergpool(raw)
        except ValueError as exc:
            raise _error(entry, str(exc)) from None
    elif option.name in ("env", "static-map", "mount") and "=" not in raw:
        form = {"env": "NAME=VALUE", "static-map": "/URL=/DIR", "mount": "/PREFIX=APP"}
        raise _error(entry, f"expected {form[option.name]}: {raw}")


def _validate_string(option: Option, entry: Entry, raw: str) -> None:
    if option.name == "chmod-socket" and not _MODE.fullmatch(raw.strip()):
        raise _error(entry, f"invalid socket mode (expected octal like 660): {raw}")
    if option.name == "protocol" and raw.strip() not in ("uwsgi", "http"):
        raise _error(entry, f"unsupported protocol (uzerg speaks uwsgi and http): {raw}")


def _error(entry: Entry, message: str) -> ConfigError:
    return ConfigError(str(entry.origin), entry.shown_key, message)


def format_config(config: Any) -> str:
    """The resolved configuration as uWSGI's ``--show-config`` block (only options set)."""
    lines = [";uWSGI instance configuration", "[uwsgi]"]
    for name in config.set_options:
        option = options.BY_NAME[name]
        if name in ("show-config", "check-config"):
            continue
        value = getattr(config, option.attr)
        if option.kind == "list":
            lines.extend(f"{name} = {item}" for item in value)
        elif option.kind == "flag":
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif value is not None:
            lines.append(f"{name} = {value}")
    lines.append(";end of configuration")
    return "\n".join(lines) + "\n"
