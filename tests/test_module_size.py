"""Small modules with one job each (DESIGN.md): no module of the package over 500 lines."""

from __future__ import annotations

from pathlib import Path

import uzerg

LIMIT = 500


def test_no_module_is_over_the_limit() -> None:
    package = Path(uzerg.__file__).parent
    sizes = {str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
             for path in package.rglob("*.py")}
    assert len(sizes) > 50
    assert {name: lines for name, lines in sizes.items() if lines > LIMIT} == {}
