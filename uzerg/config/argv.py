"""uWSGI command lines → ``(key, value, label)`` in order, plus the bare file arguments.

getopt_long as uWSGI uses it: ``--name value``, ``--name=value``, flags without a value (or
``--flag=false``), short flags alone or combined (``-M -p 8``, ``-Mp8``), values that may be
left out only in the attached form (``-C``, ``--chmod-socket=660``), ``--`` ends the options.
Non-option arguments (``site.ini``, ``site.ini:prod``, ``app.py``) come back separately:
uWSGI loads them after every option, and so do we. Abbreviated long names are not accepted.
"""

from __future__ import annotations

from uzerg.config import options
from uzerg.config.ini import ConfigError
from uzerg.record import record


@record(frozen=True)
class CommandLineArg:
    key: str
    value: str | None
    label: str


def _arg_kind(name: str) -> str | None:
    """none / required / optional, or None for an option nobody knows."""
    option = options.lookup(name)
    if option is not None:
        if not option.takes_value:
            return "none"
        return "optional" if option.bare is not None else "required"
    from uzerg.config import uwsgi_options  # unknown keys only: not at start-up (issue 13)

    return uwsgi_options.UWSGI_ARGS.get(name) or (
        "required" if name in uwsgi_options.EXTRA_OPTIONS else None
    )


def _unknown(label: str, name: str) -> ConfigError:
    from uzerg.config import uwsgi_options  # unknown keys only: not at start-up (issue 13)

    known = [*options.BY_NAME, *uwsgi_options.KNOWN]
    hint = uwsgi_options.closest(name, known)
    suffix = f" (did you mean --{hint}?)" if hint else ""
    return ConfigError("command line", label, f"unrecognized option{suffix}")


def parse_argv(argv: list[str]) -> tuple[list[CommandLineArg], list[str]]:
    parsed: list[CommandLineArg] = []
    positional: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            positional.extend(argv[index:])
            break
        if arg.startswith("--"):
            name, equal, value = arg[2:].partition("=")
            label = f"--{name}"
            kind = _arg_kind(name)
            if kind is None:
                raise _unknown(label, name)
            if equal:
                parsed.append(CommandLineArg(name, value, label))
            elif kind == "required":
                if index >= len(argv):
                    raise ConfigError("command line", label, "needs a value")
                parsed.append(CommandLineArg(name, argv[index], label))
                index += 1
            else:
                parsed.append(CommandLineArg(name, None, label))
        elif arg.startswith("-") and len(arg) > 1:
            index = _short_cluster(arg, argv, index, parsed)
        else:
            positional.append(arg)
    return parsed, positional


def _short_cluster(arg: str, argv: list[str], index: int, parsed: list[CommandLineArg]) -> int:
    position = 1
    while position < len(arg):
        letter = arg[position]
        position += 1
        label = f"-{letter}"
        option = options.BY_SHORT.get(letter)
        if option is not None:
            name: str | None = option.name
        else:
            from uzerg.config import uwsgi_options  # unknown keys only: not at start-up (issue 13)

            name = uwsgi_options.UWSGI_SHORTS.get(letter)
        if name is None:
            raise ConfigError("command line", label, "unrecognized option")
        kind = _arg_kind(name)
        rest = arg[position:]
        if kind == "none":
            parsed.append(CommandLineArg(name, None, label))
            continue
        if rest:
            parsed.append(CommandLineArg(name, rest, label))
        elif kind == "optional":
            parsed.append(CommandLineArg(name, None, label))
        elif index < len(argv):
            parsed.append(CommandLineArg(name, argv[index], label))
            index += 1
        else:
            raise ConfigError("command line", label, "needs a value")
        break
    return index
