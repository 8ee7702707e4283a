"""Documentation generated from the option table: ``uzerg --help`` and ``docs/options.md``.

Regenerate the markdown with ``python -m uzerg.config.docs > docs/options.md`` (a test fails when
the
committed file is stale).
"""

from __future__ import annotations

import sys

from uzerg import __version__
from uzerg.config import options

_INTRO = """\
# uzerg options

Generated from `uzerg/config/options.py` by `python -m uzerg.config.docs > docs/options.md`;
do not edit.

Every option works as `--name value`, `--name=value` on the command line, `name = value` in an
`[uwsgi]` INI section and as an environment variable `UWSGI_NAME` or `UZERG_NAME` (upper case,
`-` → `_`: `UWSGI_ZERG_FALLBACK=1` sets `zerg-fallback`). Flags take uWSGI booleans: `false`,
`off`, `no` and `0` (any case) are false, anything else (empty too) is true. List options
accumulate in order; for the others the last value wins. Sources are read in this order:
environment, command line (`--ini FILE` read in place), bare `FILE.ini` arguments.

uWSGI options that uzerg does not implement are sorted per SPEC §9: Python plugin names are
accepted silently, tuning and observability options give a warning, options that would change
what the service does (emperor, daemons, cron, routing, hooks, mules, spooler, TLS, gevent, ...)
are errors. `--strict`, as uWSGI's, fails on keys uWSGI does not know (typos,
placeholders); uzerg's other warnings stay warnings.
"""


def _flags(option: options.Option) -> str:
    names = [f"--{option.name}", *(f"--{a}" for a in option.aliases)]
    if option.short:
        names.insert(0, f"-{option.short}")
    return "|".join(names)


def render_help(program: str = "uzerg") -> str:
    lines = [f"Usage: {program} [options...] [FILE.ini[:SECTION]]", ""]
    for category in options.CATEGORIES:
        lines.append(f"{category}:")
        for option in options.OPTIONS:
            if option.category != category:
                continue
            flags = _flags(option) + (f" {option.metavar}" if option.takes_value else "")
            lines.append(f"    {flags:<44} {option.help}")
        lines.append("")
    return "\n".join(lines)


def _default(option: options.Option) -> str:
    if option.kind == "list":
        return ""
    if option.kind == "flag":
        return "false"
    if option.default is None:
        return ""
    return f"`{option.default}`"


def render_markdown() -> str:
    out = [_INTRO]
    for category in options.CATEGORIES:
        out.append(f"\n## {category[0].upper()}{category[1:]}\n")
        out.append("| option | aliases | short | kind | default | description |")
        out.append("|---|---|---|---|---|---|")
        for option in options.OPTIONS:
            if option.category != category:
                continue
            name = f"`{option.name}`" + (f" `{option.metavar}`" if option.takes_value else "")
            aliases = ", ".join(f"`{a}`" for a in option.aliases)
            short = f"`-{option.short}`" if option.short else ""
            text = option.help.replace("|", "\\|")
            if option.bare:
                text += f" (bare: `{option.bare}`)"
            out.append(f"| {name} | {aliases} | {short} | {option.kind} | {_default(option)} "
                       f"| {text} |")
    out.append(f"\n_uzerg {__version__}_\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
