"""uzerg.record behaves as dataclasses.dataclass for what uzerg uses of it."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import FrozenInstanceError, field
from typing import Any

import pytest

from uzerg.record import record


def pair(**options: Any) -> tuple[type, type]:
    """The same class made by dataclass and by record."""
    made = []
    for decorator in (dataclasses.dataclass, record):
        class Point:
            x: int
            y: int = 2
            tags: list[str] = field(default_factory=list)
            note: str = field(default="", compare=False)

        made.append(decorator(**options)(Point))
    return made[0], made[1]


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"slots": True},
                                     {"frozen": True, "slots": True}])
def test_same_behaviour_as_dataclass(options: dict[str, bool]) -> None:
    for cls in pair(**options):
        a = cls(1)
        assert repr(a) == f"{cls.__qualname__}(x=1, y=2, tags=[], note='')"
        assert cls(1, 2, [], "n") == a  # note is not compared
        assert cls(1, y=3) != a
        assert a.__eq__(object()) is NotImplemented
        assert cls(1).tags is not cls(1).tags
        assert [f.name for f in dataclasses.fields(a)] == ["x", "y", "tags", "note"]
        assert dataclasses.replace(a, y=5) == cls(1, 5)
        assert dataclasses.asdict(a) == {"x": 1, "y": 2, "tags": [], "note": ""}
        assert a.__match_args__ == ("x", "y", "tags", "note")
        with pytest.raises(TypeError, match="missing 1 required positional argument: 'x'"):
            cls()
        with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
            cls(1, z=1)
        with pytest.raises(TypeError, match="multiple values for argument 'x'"):
            cls(1, x=1)
        with pytest.raises(TypeError, match="positional arguments but 6 were given"):
            cls(1, 2, [], "", 5)
        if options.get("frozen"):
            with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
                a.x = 3
            with pytest.raises(FrozenInstanceError, match="cannot delete field 'x'"):
                del a.x
            assert hash(cls(1, tags=())) == hash(cls(1, tags=(), note="other"))
            b = cls(1, tags=["t"])
            assert copy.deepcopy(b) == b
            assert copy.copy(b) == b
        else:
            a.x = 3
            assert a.x == 3
            assert cls.__hash__ is None


def test_post_init_and_own_methods_kept() -> None:
    @record(frozen=True)
    class Named:
        name: str
        seen: list[str] = field(default_factory=list, compare=False)

        def __post_init__(self) -> None:
            self.seen.append(self.name)

        def __repr__(self) -> str:
            return f"<{self.name}>"

    one = Named("a")
    assert one.seen == ["a"]
    assert repr(one) == "<a>"
    assert hash(one) == hash(("a",))


def test_unknown_keyword_reported_before_missing_field() -> None:
    for decorator in (dataclasses.dataclass, record):
        @decorator
        class Two:
            a: int
            b: int = 0

        with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
            Two(b=1, c=2)
