"""uzerg.record behaves as dataclasses.dataclass for what uzerg uses of it."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from uzerg import record as rec

DATACLASSES = SimpleNamespace(decorator=dataclasses.dataclass, field=dataclasses.field,
                              fields=dataclasses.fields, replace=dataclasses.replace,
                              frozen_error=dataclasses.FrozenInstanceError)
RECORD = SimpleNamespace(decorator=rec.record, field=rec.field, fields=rec.fields,
                         replace=rec.replace, frozen_error=rec.FrozenInstanceError)
KINDS = [DATACLASSES, RECORD]


def point(kind: SimpleNamespace, **options: Any) -> type:
    class Point:
        x: int
        y: int = 2
        tags: list[str] = kind.field(default_factory=list)
        note: str = kind.field(default="", compare=False)

    return kind.decorator(**options)(Point)  # type: ignore[no-any-return]


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"slots": True},
                                     {"frozen": True, "slots": True}])
@pytest.mark.parametrize("kind", KINDS, ids=["dataclass", "record"])
def test_same_behaviour_as_dataclass(kind: SimpleNamespace, options: dict[str, bool]) -> None:
    cls = point(kind, **options)
    a = cls(1)
    assert repr(a) == f"{cls.__qualname__}(x=1, y=2, tags=[], note='')"
    assert cls(1, 2, [], "n") == a  # note is not compared
    assert cls(1, y=3) != a
    assert a.__eq__(object()) is NotImplemented
    assert cls(1).tags is not cls(1).tags
    assert [f.name for f in kind.fields(a)] == ["x", "y", "tags", "note"]
    assert [f.name for f in kind.fields(cls)] == ["x", "y", "tags", "note"]
    assert kind.replace(a, y=5) == cls(1, 5)
    assert a.__match_args__ == ("x", "y", "tags", "note")
    assert hasattr(a, "__dict__") is not options.get("slots", False)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'x'"):
        cls()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        cls(1, z=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        cls(y=1, z=1)  # one unknown, one missing: the unknown one is reported
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        cls(1, x=1)
    with pytest.raises(TypeError, match="positional arguments but 6 were given"):
        cls(1, 2, [], "", 5)
    if options.get("frozen"):
        with pytest.raises(kind.frozen_error, match="cannot assign to field 'x'"):
            a.x = 3
        with pytest.raises(kind.frozen_error, match="cannot delete field 'x'"):
            del a.x
        assert isinstance(kind.frozen_error(), AttributeError)
        assert hash(cls(1, tags=())) == hash(cls(1, tags=(), note="other"))
        b = cls(1, tags=["t"])
        assert copy.deepcopy(b) == b
    else:
        a.x = 3
        assert a.x == 3
        assert cls.__hash__ is None
    if not options.get("slots"):
        assert cls.y == 2 and cls.note == ""  # the class attribute is the plain default
        assert not hasattr(cls, "tags")


@pytest.mark.parametrize("kind", KINDS, ids=["dataclass", "record"])
def test_post_init_and_own_methods_kept(kind: SimpleNamespace) -> None:
    @kind.decorator(frozen=True)
    class Named:
        name: str
        seen: list[str] = kind.field(default_factory=list, compare=False)

        def __post_init__(self) -> None:
            self.seen.append(self.name)

        def __repr__(self) -> str:
            return f"<{self.name}>"

    one = Named("a")
    assert one.seen == ["a"]
    assert repr(one) == "<a>"
    assert hash(one) == hash(("a",))


@pytest.mark.parametrize("kind", KINDS, ids=["dataclass", "record"])
def test_declaration_errors(kind: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="mutable default"):
        @kind.decorator
        class Mutable:
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @kind.decorator
        class Order:
            a: int = 0
            b: int


def test_replace_and_fields_refuse_what_is_not_a_record() -> None:
    with pytest.raises(TypeError):
        rec.fields(object())
    with pytest.raises(TypeError):
        rec.replace(object())


def wide(kind: SimpleNamespace, changes: dict[str, Any] | None = None, **options: Any) -> type:
    # more fields than record's plain loop takes (Config's size: its C loops), two without a
    # default first; `changes`: field name → (annotation, value), value None: no default
    annotations: dict[str, Any] = {f"f{i}": "int" for i in range(120)}
    body: dict[str, Any] = {f"f{i}": i for i in range(2, 120)}
    body["f7"] = kind.field(default_factory=list, compare=False)
    body["f8"] = kind.field(default=(), repr=False)
    for name, (annotation, value) in (changes or {}).items():
        annotations[name] = annotation
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return kind.decorator(**options)(  # type: ignore[no-any-return]
        type("Wide", (), {"__annotations__": annotations, **body}))


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"frozen": True, "slots": True}])
@pytest.mark.parametrize("kind", KINDS, ids=["dataclass", "record"])
def test_a_wide_class_as_dataclass(kind: SimpleNamespace, options: dict[str, bool]) -> None:
    cls = wide(kind, **options)
    a = cls(0, 1)
    assert repr(a).startswith("Wide(f0=0, f1=1, f2=2, f3=3, f4=4, f5=5, f6=6, f7=[], f9=9, ")
    assert cls(0, 1, f7=["x"]) == a != cls(0, 1, f9=0)
    assert [f.name for f in kind.fields(cls)] == [f"f{i}" for i in range(120)]
    missing = dataclasses.MISSING if kind is DATACLASSES else rec.MISSING
    assert [f.default for f in kind.fields(cls)][:4] == [missing, missing, 2, 3]
    assert kind.replace(a, f119=0).f119 == 0
    assert a.__match_args__ == tuple(f"f{i}" for i in range(120))
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'f0'"):
        cls(f1=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'zz'"):
        cls(f1=1, zz=0)  # one unknown, one missing: as many values as fields
    if options.get("slots"):
        assert not hasattr(a, "__dict__")
    else:
        assert vars(a) == {f"f{i}": getattr(a, f"f{i}") for i in range(120)}
    if options.get("frozen"):
        assert hash(a) == hash(cls(0, 1, f7=["other"]))
        with pytest.raises(kind.frozen_error):
            a.f3 = 1


@pytest.mark.parametrize("kind", KINDS, ids=["dataclass", "record"])
def test_a_wide_class_declaration_errors(kind: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="mutable default <class 'list'> for field f50"):
        wide(kind, {"f50": ("int", [])})
    with pytest.raises(TypeError, match="non-default argument 'f60' follows default argument"):
        wide(kind, {"f60": ("int", None)})
    late = wide(kind, {"f60": ("int", kind.field(init=False))})  # no order: not in __init__
    assert "f60" not in late.__match_args__


def test_a_wide_record_refuses_classvar() -> None:
    with pytest.raises(TypeError, match=r"Wide.f70: record has no ClassVar/InitVar"):
        wide(RECORD, {"f70": ("ClassVar[int]", 1)})
