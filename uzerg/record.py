"""``record``: what uzerg uses of ``dataclasses.dataclass``, built without generating code.

``dataclass`` writes ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and the frozen
``__setattr__``/``__delattr__`` of every class as source text and compiles it when the module
is imported, and importing ``dataclasses`` loads ``inspect`` (with ``ast``, ``dis`` and
``tokenize``): together more than half of uzerg's import time, all of it before a zerg can
attach and serve (issue 13; ``Config`` alone has ~200 fields). A ``record`` class gets shared
functions driven by its field list instead, with ``dataclass``'s behaviour: the same
``__init__`` errors, ``FrozenInstanceError``, ``NotImplemented`` from ``__eq__`` for another
class, the hash rules, ``__post_init__``, ``__match_args__``, ``field(default_factory=...,
compare=False)``, and a method the class writes itself is kept. ``fields`` and ``replace``
stand for ``dataclasses.fields`` and ``dataclasses.replace``.

Building an instance costs a little more than with a compiled ``__init__``: a class built per
request writes its own ``__init__`` (``UwsgiPacket``, ``StaticFile``).

``slots`` makes the class a second time, ~55k instructions more per class than without: the
configuration's records (made at start-up, never per request) go without (issue 13).

Supported: ``frozen`` and ``slots``; no ``order``, ``ClassVar``/``InitVar`` or inheritance
between records (uzerg has none).
"""

from __future__ import annotations

import reprlib
from itertools import compress, filterfalse, repeat
from operator import attrgetter

__all__ = ["MISSING", "Field", "FrozenInstanceError", "field", "fields", "record", "replace"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")
else:
    # typing is not imported at run time (a zerg's start-up time, issue 13): these two
    # decorators only speak to type checkers
    def overload(function: Any) -> Any:
        return function

    def dataclass_transform(**_specifiers: Any) -> Any:
        return overload


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_FACTORY: Any = object()  # in the defaults: a field built by its default_factory


class FrozenInstanceError(AttributeError):
    """Assigning to or deleting a field of a frozen record."""


class Field:
    __slots__ = ("compare", "default", "default_factory", "hash", "init", "name", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 init: bool = True, repr: bool = True,  # noqa: A002 - dataclasses' names
                 compare: bool = True, hash: bool | None = None) -> None:  # noqa: A002
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare
        self.hash = hash

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, init={self.init}, "
                f"repr={self.repr}, compare={self.compare}, hash={self.hash})")


def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True,
          repr: bool = True, compare: bool = True,  # noqa: A002 - dataclasses' names
          hash: bool | None = None) -> Any:  # noqa: A002
    """As ``dataclasses.field``."""
    return Field(default, default_factory, init, repr, compare, hash)


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """A record's fields in order, as ``dataclasses.fields``."""
    try:
        return class_or_instance.__record_fields__  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError("must be called with a record type or instance") from None


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes``, as ``dataclasses.replace``."""
    for f in fields(obj):
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot be "
                                 "specified with replace()")
            continue
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)  # type: ignore[no-any-return]


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(  # noqa: F811 - an overload (ruff does not see the run-time stand-in as one)
    *, frozen: bool = False, slots: bool = False,
) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = False,  # noqa: F811 - see above
           slots: bool = False) -> type[T] | Callable[[type[T]], type[T]]:
    """``@dataclass``, ``@dataclass(frozen=True)``, ``@dataclass(slots=True)``... without
    generated code (see the module docstring)."""

    def wrap(cls: type[T]) -> type[T]:
        return _build(cls, frozen, slots)

    return wrap if cls is None else wrap(cls)


def _build(cls: type[T], frozen: bool, slots: bool) -> type[T]:
    # The Field objects of the fields declared without field() are made only when fields()
    # asks for them, and a wide class is checked by C loops (join, set, dict copy) rather than
    # field by field: Config has ~240 fields, built at every start (issue 13).
    body = cls.__dict__
    annotations = body.get("__annotations__", {})
    names = tuple(annotations)
    # (measured: up to dozens of fields, the plain loop costs less than the C loops' set-up)
    found = _usual_fields(body, annotations, names) if len(names) > _FEW else None
    defaults, specials = found if found is not None else _checked_fields(cls, body, annotations)
    if specials and not all(f.init for f in specials.values()):
        init_names = tuple(n for n in names if n not in specials or specials[n].init)
    else:
        init_names = names
    if specials and not all(f.repr for f in specials.values()):
        repr_names = tuple(n for n in names if n not in specials or specials[n].repr)
    else:
        repr_names = names
    if specials and not all(f.compare for f in specials.values()):
        uncompared = {n for n, f in specials.items() if not f.compare}
        compared = list(filterfalse(uncompared.__contains__, names))
    else:
        compared = list(names)
    qualname = cls.__qualname__
    methods: dict[str, Any] = {"__record_fields__": _Fields(names, defaults, specials)}

    def add(name: str, function: Any) -> None:
        if name not in body:  # else the class wrote its own, as dataclass leaves it
            function.__qualname__ = f"{qualname}.{name}"
            methods[name] = function

    add("__init__", _init(cls, init_names, defaults, specials, not slots and len(names) > _FEW))
    add("__repr__", _repr(repr_names))
    add("__eq__", _eq(compared))
    if frozen:
        add("__setattr__", _frozen_setattr(cls, names))
        add("__delattr__", _frozen_delattr(cls, names))
        if slots:
            add("__getstate__", _getstate)
            add("__setstate__", _setstate)
    class_hash = body.get("__hash__", MISSING)
    if class_hash is MISSING or (class_hash is None and "__eq__" in body):
        # dataclass: eq and frozen → hash of the compared fields; eq alone → unhashable
        methods["__hash__"] = None
        if frozen:
            hashed = compared
            if any(f.hash is not None for f in specials.values()):
                hashed = [n for n in names if n not in specials or (
                    specials[n].compare if specials[n].hash is None else specials[n].hash)]
            methods["__hash__"] = _hash(hashed)
            methods["__hash__"].__qualname__ = f"{qualname}.__hash__"
    if "__match_args__" not in body:
        methods["__match_args__"] = init_names
    if cls.__doc__ is None:
        methods["__doc__"] = f"{cls.__name__}({', '.join(names)})"
    if slots:
        # a class's slots are fixed at its creation: the class is made again, in one call
        new_body = dict(body)
        for name in (*names, "__dict__", "__weakref__"):
            new_body.pop(name, None)
        new_body.update(methods)
        new_body["__slots__"] = names
        new_body["__qualname__"] = qualname
        return type(cls)(cls.__name__, cls.__bases__, new_body)  # type: ignore[no-any-return]
    for name, f in specials.items():  # as dataclass: the class attribute is the plain default
        if f.default is MISSING:
            delattr(cls, name)
        else:
            setattr(cls, name, f.default)
    for name, value in methods.items():
        setattr(cls, name, value)
    return cls


_FEW = 100


def _usual_fields(body: Any, annotations: dict[str, Any], names: tuple[str, ...]) \
        -> tuple[dict[str, Any], dict[str, Field]] | None:
    """(defaults, specials) of a class that needs none of _checked_fields' errors, by C loops
    (join, set and dict copy); None for one that may (then _checked_fields finds which, in
    field order)."""
    try:
        text = "\0" + "\0".join(annotations.values())
    except TypeError:  # an annotation that is not text
        return None
    if "\0ClassVar" in text or "\0InitVar" in text:
        return None
    present = body.keys() & annotations.keys()
    required = len(names) - len(present)
    tail = names[required:]
    if not present.issuperset(tail):  # a field without a default comes after one with
        return None
    defaults = body.copy()  # the class's dict; its names that are not fields deleted
    for name in defaults.keys() - present:
        del defaults[name]
    got = tuple(defaults.values())
    try:
        hash(got)
    except Exception:  # noqa: BLE001 - a mutable default, maybe: _checked_fields says
        return None
    specials: dict[str, Field] = {}
    for name in compress(defaults, map(isinstance, got, repeat(Field))):
        f = body[name]
        if not f.init or (f.default is MISSING and f.default_factory is MISSING) or (
                f.default is not MISSING and type(f.default).__hash__ is None):
            return None
        specials[name] = f
    for name, f in specials.items():
        f.name = name
        defaults[name] = f.default if f.default is not MISSING else _FACTORY
    return defaults, specials


def _checked_fields(cls: type, body: Any, annotations: dict[str, Any]) \
        -> tuple[dict[str, Any], dict[str, Field]]:
    """(defaults, specials), field by field, raising dataclass's errors."""
    defaults: dict[str, Any] = {}  # init fields with a default (_FACTORY: a default_factory)
    specials: dict[str, Field] = {}  # the fields declared with field()
    seen_default = False
    for name, annotation in annotations.items():
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "InitVar")):
            raise TypeError(f"{cls.__qualname__}.{name}: record has no ClassVar/InitVar")
        value = body.get(name, MISSING)
        if isinstance(value, Field):
            value.name = name
            specials[name] = value
            init = value.init
            has_default = value.default is not MISSING or value.default_factory is not MISSING
            if init and has_default:
                defaults[name] = value.default if value.default is not MISSING else _FACTORY
            value = value.default
        else:
            init = True
            has_default = value is not MISSING
            if has_default:
                defaults[name] = value
        if value is not MISSING and type(value).__hash__ is None:
            raise ValueError(f"mutable default {type(value)} for field {name} is not "
                             "allowed: use default_factory")
        if init and not has_default and seen_default:
            raise TypeError(f"non-default argument {name!r} follows default argument")
        seen_default = seen_default or (init and has_default)
    return defaults, specials


class _Fields:
    """A record's ``__record_fields__``: its Field objects, made when first asked for."""

    __slots__ = ("built", "defaults", "names", "specials")

    def __init__(self, names: tuple[str, ...], defaults: dict[str, Any],
                 specials: dict[str, Field]) -> None:
        self.names = names
        self.defaults = defaults
        self.specials = specials
        self.built: tuple[Field, ...] | None = None

    def __get__(self, obj: Any, owner: Any = None) -> tuple[Field, ...]:
        if self.built is None:
            made = []
            for name in self.names:
                f = self.specials.get(name)
                if f is None:  # a field declared with a plain default (always an init field)
                    f = Field(default=self.defaults.get(name, MISSING))
                    f.name = name
                made.append(f)
            self.built = tuple(made)
        return self.built


def _init(cls: type, names: tuple[str, ...], defaults: dict[str, Any],
          specials: dict[str, Field], wide: bool) -> Callable[..., None]:
    factories = tuple((n, f.default_factory) for n, f in specials.items()
                      if f.init and f.default is MISSING and f.default_factory is not MISSING)
    # init=False fields with a default or factory are set too, as dataclass does
    unset = tuple((n, f.default, f.default_factory) for n, f in specials.items()
                  if not f.init and (f.default is not MISSING or f.default_factory is not MISSING))
    post_init = hasattr(cls, "__post_init__")
    qualname = cls.__qualname__
    setter = object.__setattr__
    # a wide class without slots gets its instance's dict filled in one step: Config's ~240
    # attribute sets cost ~0.5M instructions at every start (issue 13)
    known = frozenset(names) if wide else None

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if args:
            kwargs = _positional(qualname, names, args, kwargs)
        values = {**defaults, **kwargs}
        if len(values) != len(names):  # an unknown keyword, or a field without a value
            _raise_bad_arguments(qualname, names, defaults, kwargs)
        for name, factory in factories:
            if values[name] is _FACTORY:
                values[name] = factory()
        if known is not None:
            if values.keys() != known:  # as many values as fields, one unknown, one missing
                _raise_bad_arguments(qualname, names, defaults, kwargs)
            self.__dict__.update(values)
        else:
            try:
                for name in names:
                    setter(self, name, values[name])
            except KeyError:  # as many values as fields, but one unknown and one missing
                _raise_bad_arguments(qualname, names, defaults, kwargs)
        for name, default, factory in unset:
            setter(self, name, default if default is not MISSING else factory())
        if post_init:
            self.__post_init__()

    return __init__


def _positional(qualname: str, names: tuple[str, ...], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> dict[str, Any]:
    if len(args) > len(names):
        raise TypeError(f"{qualname}.__init__() takes {len(names) + 1} positional "
                        f"arguments but {len(args) + 1} were given")
    for name in names[:len(args)]:
        if name in kwargs:
            raise TypeError(f"{qualname}.__init__() got multiple values for argument '{name}'")
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _raise_bad_arguments(qualname: str, names: tuple[str, ...], defaults: dict[str, Any],
                         kwargs: dict[str, Any]) -> None:
    for name in kwargs:
        if name not in names:
            raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument "
                            f"'{name}'")
    missing = next(name for name in names if name not in kwargs and name not in defaults)
    raise TypeError(f"{qualname}.__init__() missing 1 required positional argument: "
                    f"'{missing}'")


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:  # noqa: N807
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({values})"

    return __repr__


def _values(names: list[str]) -> Callable[[Any], Any]:
    """The tuple of these attributes (attrgetter returns a bare value for one name)."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        only = attrgetter(names[0])
        return lambda obj: (only(obj),)
    return attrgetter(*names)


def _eq(names: list[str]) -> Callable[[Any, Any], Any]:
    values = _values(names)

    def __eq__(self: Any, other: Any) -> Any:  # noqa: N807
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(names: list[str]) -> Callable[[Any], int]:
    values = _values(names)

    def __hash__(self: Any) -> int:  # noqa: N807
        return hash(values(self))

    return __hash__


# names: a tuple, searched only for an instance of a subclass (uzerg has none)
def _frozen_setattr(cls: type, names: tuple[str, ...]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(cls: type, names: tuple[str, ...]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __delattr__


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(fields(self), state, strict=False):
        object.__setattr__(self, f.name, value)
