"""Merge the sources, expand references, validate → a frozen ``Config``.

Order (as uwsgi 2.0.31 resolves it): ``UWSGI_*``/``UZERG_*`` environment variables, then the
command line in order (``--ini FILE`` is read in place), then bare ``FILE.ini`` arguments.
List options accumulate; for the others the last value wins. Unknown keys are sorted per
SPEC §9 (``uzerg.config.uwsgi_options``): silent, warning or error. ``strict`` fails, as uWSGI
2.0.31's does, only on keys uWSGI does not know (and on placeholders): uWSGI's strict accepts every
option it knows, reads lenient numbers silently and goes on past a plugin it cannot load.
"""

from __future__ import annotations

import sys

from uzerg.config import options
from uzerg.config.argv import parse_argv
from uzerg.config.collect import Collector, Entry
from uzerg.config.ini import COMMAND_LINE, ENVIRONMENT, ConfigError
from uzerg.config.model import Config
from uzerg.config.values import NotANumber

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: not imported at run time (issue 13)
    from collections.abc import Callable, Mapping
    from typing import Any

    from uzerg.config.ini import Origin
    from uzerg.config.options import Option

__all__ = ["Config", "ConfigError", "format_config", "load_config"]

# compiled by re (and cached) when first needed, not at every start-up (issue 13)
_FLAG_FALSE_WITH_COMMENT = r"(?i)(false|off|no|0)\s+[;#].*"
_SKIP_ENV_PREFIXES = ("UWSGI_VASSAL_", "UWSGI_EMPEROR_")


def load_config(argv: list[str], environ: Mapping[str, str], *,
                write: Callable[[str], None] | None = None) -> Config:
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
          write: Callable[[str], None]) -> Config:
    collector = Collector(environ, warnings.append)
    for name in environ:  # a value read only for an option's variable: os.environ decodes it
        key = _env_key(name)
        if key is not None:
            collector.add(key, environ[name], ENVIRONMENT, name)
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
    referenced: set[str] = set()
    if any(_has_reference(e) for e in collector.entries):
        # $(...), @(...), %(...): loaded only when a value has one, not at every start (issue 13)
        from uzerg.config.expand import expand_entries

        referenced = expand_entries(collector.entries, environ, warnings.append)
    return _resolve(collector.entries, referenced, warnings, write)


def _has_reference(entry: Entry) -> bool:
    """Whether expand_entries may change the entry (a value without one is left as it is)."""
    value = entry.value
    if not value or entry.immediate:
        return False
    return "$(" in value or "@(" in value or "%(" in value


def _env_key(name: str) -> str | None:
    if not name.startswith(("UWSGI_", "UZERG_")) or name.startswith(_SKIP_ENV_PREFIXES):
        return None
    key = name[6:].lower().replace("_", "-")
    if options.lookup(key) is None:
        from uzerg.config import uwsgi_options  # unknown keys only: not at start-up (issue 13)

        if key not in uwsgi_options.KNOWN:
            return None  # build and internal variables (UWSGI_PROFILE, UWSGI_RELOADS, ...)
    return key


class _Resolver:
    def __init__(self, warnings: list[str], write: Callable[[str], None]) -> None:
        self.values: dict[str, Any] = {}  # typed, what Config holds
        self.shown: dict[str, Any] = {}  # as written, what --check-config prints
        self.origins: dict[str, Origin] = {}
        self.order: list[str] = []
        self.warnings = warnings
        self.write = write
        self.strict = False

    def warn(self, entry: Entry, message: str) -> None:
        """A warning line; under strict, one about a key uWSGI does not know is an error."""
        where = str(entry.origin)
        if self.strict and not _known_key(entry.key):
            raise ConfigError(where, entry.shown_key, f"{message} (strict mode)")
        self.warnings.append(": ".join(p for p in (where, entry.shown_key, message) if p))

    def apply(self, option: Option, entry: Entry) -> None:
        converted = _convert(option, entry, self)
        if converted is None:
            return
        shown, value = converted
        name = option.name
        if option.warns and value:
            # an option uzerg accepts, with its effect provided otherwise: a note that strict
            # mode does not escalate (uWSGI's strict accepts every option it knows)
            self.warnings.append(f"{entry.origin}: {entry.shown_key}: {option.warns}")
        if option.kind == "list":
            value = (*self.values.get(name, ()), value)
            shown = (*self.shown.get(name, ()), shown)
        self.values[name] = value
        self.shown[name] = shown
        self.origins[name] = entry.origin
        if name not in self.order:
            self.order.append(name)
        if name == "strict" and value:
            self.strict = True


def _resolve(entries: list[Entry], referenced: set[str], warnings: list[str],
             write: Callable[[str], None]) -> Config:
    resolver = _Resolver(warnings, write)
    # uWSGI's strict applies from where it is set; the command line and environment set it first
    resolver.strict = any(
        e.key == "strict" and e.origin in (COMMAND_LINE, ENVIRONMENT)
        and options.parse_bool(e.value) for e in entries
    )
    custom: dict[str, str] = {}  # declare-option: name → template
    pending = list(reversed(entries))
    while pending:
        entry = pending.pop()
        if entry.immediate:
            continue
        if entry.key in custom and options.lookup(entry.key) is None:
            pending.extend(reversed(_custom_entries(entry, custom[entry.key], len(pending))))
            continue
        option = options.lookup(entry.key)
        if option is not None:
            if option.name == "print":
                write(entry.value or "")
            elif option.name not in options.DIRECTIVES:
                resolver.apply(option, entry)
                if option.name in ("declare-option", "declare-option2") and entry.value:
                    name, _, template = entry.value.partition("=")
                    custom[name.strip()] = template
            continue
        _unknown_key(entry, referenced, resolver)
    _check_emperor(resolver)
    return Config(
        **{options.BY_NAME[name].attr: value for name, value in resolver.values.items()},
        warnings=tuple(warnings),
        origins=dict(resolver.origins),
        set_options=tuple(resolver.order),
        shown=dict(resolver.shown),
    )


_CUSTOM_ARG = r"\$(\d+)"
_MAX_CUSTOM_ENTRIES = 10000  # a custom option that names itself must not loop forever


def _custom_entries(entry: Entry, template: str, queued: int) -> list[Entry]:
    """uWSGI's declare-option: ``OPT=VAL[;OPT=VAL...]`` with ``$1``, ``$2``... replaced by the
    custom option's space-separated arguments (a missing one is empty)."""
    if queued > _MAX_CUSTOM_ENTRIES:
        raise _error(entry, "custom option expands without end (declared in terms of itself?)")
    import re  # declare-option only: not loaded at every start (issue 13)

    args = (entry.value or "").split()

    def arg(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return args[index - 1] if 0 < index <= len(args) else ""

    made = []
    for item in template.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        made.append(Entry(key.strip(), re.sub(_CUSTOM_ARG, arg, value) if sep else None,
                          entry.origin, f"{entry.shown_key} ({key.strip()})"))
    return made


_INSTANCE_ONLY = ("socket", "http-socket", "http11-socket", "http", "zerg", "zergpool")


def _check_emperor(resolver: _Resolver) -> None:
    """An Emperor runs vassals, not workers: uWSGI forks it beside an instance that has
    sockets; uzerg runs it alone (the sockets belong in a vassal file)."""
    if resolver.values.get("emperor-broodlord-standby") and not resolver.values.get(
            "emperor-broodlord"):
        raise ConfigError(str(resolver.origins["emperor-broodlord-standby"]),
                          "emperor-broodlord-standby", "needs emperor-broodlord (the most zergs "
                          "to run, standbys included)")
    if "emperor" not in resolver.values:
        return
    for name in _INSTANCE_ONLY:
        if name in resolver.values:
            raise ConfigError(str(resolver.origins["emperor"]), "emperor",
                              "uzerg does not provide this uWSGI feature: an Emperor "
                              f"beside an instance (`{name}`); uzerg runs the Emperor alone, "
                              "put the instance in a vassal file")
    for name in resolver.order:  # the Emperor process runs no hooks, daemons or cron
        if options.BY_NAME[name].category == options.K:
            raise ConfigError(str(resolver.origins[name]), name,
                              "uzerg does not provide this uWSGI feature in an Emperor's "
                              "config (the Emperor runs no hooks, daemons or cron; put it in "
                              "a vassal file)")


def _unknown_key(entry: Entry, referenced: set[str], resolver: _Resolver) -> None:
    from uzerg.config import uwsgi_options  # unknown keys only: not at start-up (issue 13)

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
            instead = uwsgi_options.INSTEAD.get(key)
            resolver.warn(entry, "uWSGI option not implemented by uzerg, ignored"
                          + (f": {instead}" if instead else ""))
        return
    if entry.placeholder:
        return
    if key in referenced:
        if resolver.strict:
            raise ConfigError(where, entry.shown_key, "unknown option (strict mode: declare "
                              "placeholders with set-placeholder)")
        return
    short = options.BY_SHORT.get(key)
    hint = short.name if short else uwsgi_options.closest(
        key, sorted(set(options.BY_NAME) | uwsgi_options.KNOWN))
    resolver.warn(entry, f"unknown option, ignored (did you mean `{hint}`?)" if hint
                  else "unknown option, ignored")


def _known_key(key: str) -> bool:
    """Whether uWSGI knows the key: uWSGI's strict fails on the others only."""
    if options.lookup(key) is not None:
        return True
    from uzerg.config import uwsgi_options  # unknown keys only: not at start-up (issue 13)

    return uwsgi_options.is_uwsgi_option(key)


def _flag_false_with_comment(raw: str) -> bool:
    import re  # a flag's value with a comment only: not loaded at every start (issue 13)

    return re.fullmatch(_FLAG_FALSE_WITH_COMMENT, raw.strip()) is not None


def _convert(option: Option, entry: Entry, resolver: _Resolver) -> tuple[Any, Any] | None:
    """(value as shown by --check-config, typed value), or None for a value to skip."""
    raw = entry.value
    if option.kind == "flag":
        if raw is not None and (";" in raw or "#" in raw) \
                and _flag_false_with_comment(raw):
            resolver.warn(entry, f"value {raw!r} counts as true (uWSGI has no inline comments)")
        flag = options.parse_bool(raw)
        return flag, flag
    if raw is None or (raw.strip() in ("", "true") and option.bare is not None):
        if option.bare is not None:
            raw = option.bare
        elif raw is None:
            raise _error(entry, "needs a value")
    if option.kind == "int":
        number = _to_int(option, entry, raw, resolver)
        return number, number
    if option.kind == "list":
        if not raw.strip() and option.bare is None:  # one with a bare value parses it
            resolver.warn(entry, "empty value ignored")
            return None
        return raw, _parse(option, entry, raw, resolver)
    if not raw.strip():
        return option.default, option.default  # `pidfile =` means "not set", not an empty path
    return raw, _parse(option, entry, raw, resolver)


def _parse(option: Option, entry: Entry, raw: str, resolver: _Resolver) -> Any:
    """The typed value; a number as uWSGI reads it (NotANumber) is applied with a warning."""
    try:
        return option.parser(raw)
    except NotANumber as lenient:
        number = lenient.value
        low = option.minimum is not None and number < option.minimum
        resolver.warn(entry, f"{lenient}" + (
            f", below the minimum {option.minimum}: uzerg uses {option.minimum}" if low
            else ", so does uzerg"))
        return option.minimum if low else number
    except ValueError as exc:
        raise _error(entry, str(exc)) from None


def _to_int(option: Option, entry: Entry, raw: str, resolver: _Resolver) -> int:
    number = _parse(option, entry, raw, resolver)
    if option.minimum is not None and number < option.minimum:
        raise _error(entry, f"must be at least {option.minimum}: {raw}")
    if option.maximum is not None and number > option.maximum:
        resolver.warn(entry, f"{number} is above the maximum {option.maximum}, "
                      f"using {option.maximum}")
        number = option.maximum
    return int(number)


def _error(entry: Entry, message: str) -> ConfigError:
    return ConfigError(str(entry.origin), entry.shown_key, message)


def format_config(config: Config) -> str:
    """The resolved configuration as uWSGI's ``--show-config`` block (only options set)."""
    lines = [";uWSGI instance configuration", "[uwsgi]"]
    for name in config.set_options:
        option = options.BY_NAME[name]
        if name in ("show-config", "check-config"):
            continue
        value = config.shown[name]
        if option.kind == "list":
            lines.extend(f"{name} = {item}" for item in value)
        elif option.kind == "flag":
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif value is not None:
            lines.append(f"{name} = {value}")
    lines.append(";end of configuration")
    return "\n".join(lines) + "\n"
