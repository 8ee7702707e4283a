"""``Option``: one record of the option table (``uzerg.config.options``): its name, kind, help,
category, aliases, limits and the parser that turns a written value into the typed ``Config``
value."""

from __future__ import annotations

from uzerg.config.values import parse_bool, parse_int, parse_text
from uzerg.record import record

__all__ = ["LazyParser", "Option"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from collections.abc import Callable
    from typing import Any, Literal

    Kind = Literal["flag", "int", "string", "list"]
    LazyModule = Literal["service_values", "serving_values", "log_values"]


@record  # neither frozen nor slotted: see __init__
class Option:
    name: str
    kind: Kind
    help: str
    category: str
    default: object = None
    aliases: tuple[str, ...] = ()
    short: str | None = None
    # the value an option that takes one gets when written bare (`-C`, `chmod-socket =`)
    bare: str | None = None
    metavar: str = "VALUE"
    # accepted for compatibility, no effect in uzerg (the help says why)
    accepted_only: bool = False
    minimum: int | None = None
    maximum: int | None = None
    # a tuning option with no effect in uzerg: the one-line warning given when it is turned on,
    # saying what uzerg does instead (issue 10: such options keep a warning)
    warns: str | None = None
    # one written value (a list option: one item) → its typed value; ValueError if invalid.
    # None: the kind's parser (parse_bool, parse_int, the text as written)
    parse: Callable[[str], Any] | None = None

    def __init__(self, name: str, kind: Kind, help: str, category: str,  # noqa: A002
                 default: object = None, aliases: tuple[str, ...] = (),
                 short: str | None = None, bare: str | None = None, metavar: str = "VALUE",
                 accepted_only: bool = False, minimum: int | None = None,
                 maximum: int | None = None, warns: str | None = None,
                 parse: Callable[[str], Any] | None = None) -> None:
        # written out (record keeps it), plain attribute sets: every start builds ~240 options,
        # and record's shared __init__ takes ~4x longer; a frozen record's sets (through its
        # __setattr__, object.__setattr__ or the instance's dict) ~1.1M instructions more, a
        # slotted one's ~2.5M (issue 13: why Option is neither frozen nor slotted; nothing
        # changes an option). tests/test_options.py checks it against the fields
        self.name = name
        self.kind = kind
        self.help = help
        self.category = category
        self.default = default
        self.aliases = aliases
        self.short = short
        self.bare = bare
        self.metavar = metavar
        self.accepted_only = accepted_only
        self.minimum = minimum
        self.maximum = maximum
        self.warns = warns
        self.parse = parse

    @property
    def parser(self) -> Callable[[str], Any]:
        if self.parse is not None:
            return self.parse
        return {"flag": parse_bool, "int": parse_int}.get(self.kind, parse_text)

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def takes_value(self) -> bool:
        return self.kind != "flag"

    @property
    def initial(self) -> object:
        """The value of an option that was not set."""
        if self.kind == "list":
            return ()
        if self.kind == "flag":
            return bool(self.default)
        return self.default


class LazyParser:
    """A parser of ``uzerg.config.service_values`` (hooks, daemons, cron, https, mules),
    ``serving_values`` (headers, static files) or ``log_values`` (loggers, log routes and
    encoders, log-date), imported when an option that needs it is first set: a plain start
    sets none, and the three modules cost ~3M instructions (issue 13)."""

    __slots__ = ("module", "name")

    def __init__(self, module: LazyModule, name: str) -> None:
        self.module = module
        self.name = name

    def __call__(self, value: str) -> Any:
        if self.module == "service_values":
            from uzerg.config import service_values as module
        elif self.module == "serving_values":
            from uzerg.config import serving_values as module
        else:
            from uzerg.config import log_values as module
        parser: Callable[[str], Any] = getattr(module, self.name)
        return parser(value)

    def __repr__(self) -> str:
        return f"<parser uzerg.config.{self.module}.{self.name}>"
