"""``record``: ``dataclasses.dataclass`` without its code generation, for start-up speed.

``dataclass`` writes ``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and the frozen
``__setattr__``/``__delattr__`` of every class as source text and compiles it when the module
is imported: about half of uzerg's import time (``Config`` alone has ~200 fields), all of it
before a zerg can attach and serve. ``record`` lets ``dataclass`` collect the fields (so
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work as before) but
generates nothing: the methods are shared functions driven by the field list. They behave as
``dataclass``'s (same errors, ``FrozenInstanceError``, ``NotImplemented`` for another class,
``__post_init__``, ``field(default_factory=..., compare=False)``); an instance costs a little
more to build, so a class built per request stays a ``dataclass``.

Supported: ``frozen`` and ``slots``; ``init``/``repr``/``eq`` always on, no ``order``.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, field
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["field", "record"]

T = TypeVar("T")


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = False, slots: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = False,
           slots: bool = False) -> type[T] | Callable[[type[T]], type[T]]:
    """``@dataclass``, ``@dataclass(frozen=True)``, ``@dataclass(slots=True)``... without
    generated code (see the module docstring)."""

    def wrap(cls: type[T]) -> type[T]:
        return _build(cls, frozen, slots)

    return wrap if cls is None else wrap(cls)


def _build(cls: type[T], frozen: bool, slots: bool) -> type[T]:
    body = dict(cls.__dict__)
    class_hash = body.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in body))
    if cls.__doc__ is None:  # else dataclass writes one with inspect.signature: slow
        cls.__doc__ = f"{cls.__name__}({', '.join(cls.__dict__.get('__annotations__', ()))})"
    new = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=slots)
    fields = dataclasses.fields(new)  # type: ignore[arg-type]
    _set(new, body, "__init__", _init(new, fields))
    _set(new, body, "__repr__", _repr(fields))
    _set(new, body, "__eq__", _eq(fields))
    if frozen:
        _set(new, body, "__setattr__", _frozen_setattr(new, fields))
        _set(new, body, "__delattr__", _frozen_delattr(new, fields))
        if slots:
            _set(new, body, "__getstate__", _getstate)
            _set(new, body, "__setstate__", _setstate)
    if not explicit_hash:
        # dataclass: eq and frozen → hash of the compared fields; eq alone → unhashable
        hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
        new.__hash__ = _hash(hashed) if frozen else None  # type: ignore[assignment]
    return new


def _set(cls: type, body: dict[str, Any], name: str, function: Any) -> None:
    if name in body:  # the class wrote its own, as dataclass leaves it
        return
    if hasattr(function, "__qualname__"):
        function.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, function)


_FACTORY: Any = object()  # in the defaults: a field built by its default_factory


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    specs = [f for f in fields if f.init]
    names = tuple(f.name for f in specs)
    defaults = {f.name: f.default if f.default is not MISSING else _FACTORY
                for f in specs if f.default is not MISSING or f.default_factory is not MISSING}
    factories = tuple((f.name, f.default_factory) for f in specs
                      if f.default is MISSING and f.default_factory is not MISSING)
    post_init = hasattr(cls, "__post_init__")
    qualname = cls.__qualname__
    setter = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if args:
            kwargs = _positional(qualname, names, args, kwargs)
        values = {**defaults, **kwargs}
        if len(values) != len(names):  # an unknown keyword, or a field without a value
            _raise_bad_arguments(qualname, names, defaults, kwargs)
        for name, factory in factories:
            if values[name] is _FACTORY:
                values[name] = factory()
        try:
            for name in names:
                setter(self, name, values[name])
        except KeyError:  # as many values as fields, but one unknown and one missing
            _raise_bad_arguments(qualname, names, defaults, kwargs)
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


def _repr(fields: tuple[dataclasses.Field[Any], ...]) -> Callable[[Any], str]:
    names = tuple(f.name for f in fields if f.repr)

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


def _eq(fields: tuple[dataclasses.Field[Any], ...]) -> Callable[[Any, Any], Any]:
    values = _values([f.name for f in fields if f.compare])

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


def _frozen_setattr(cls: type, fields: tuple[dataclasses.Field[Any], ...]) \
        -> Callable[[Any, str, Any], None]:
    names = frozenset(f.name for f in fields)

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(cls: type, fields: tuple[dataclasses.Field[Any], ...]) \
        -> Callable[[Any, str], None]:
    names = frozenset(f.name for f in fields)

    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __delattr__


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=False):
        object.__setattr__(self, f.name, value)
