"""What a server imports before it can answer is start-up time (a zerg's above all, issue 13):
the modules that cost the most are imported where they are used, never at module level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "uzerg"
# module -> why it stays out of module level
LAZY = {
    "structlog": "imports asyncio (~30 ms); uzerg.logs loads it for --log-json only",
    "psutil": "~10 ms; stats and takeover only",
    "setproctitle": "pulls in logging; process titles only (process.load_title_support)",
    "mimetypes": "static-map only (static.load_file_support)",
    "email": "static-map only (static.load_file_support)",
    "difflib": "a mistyped option only",
    "asyncio": "nothing in uzerg needs it",
}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_costly_modules_are_imported_where_used(path: Path) -> None:
    heavy = top_level_imports(path) & set(LAZY)
    assert not heavy, {name: LAZY[name] for name in heavy}


def test_the_package_is_scanned() -> None:
    assert len(MODULES) > 30
    assert "structlog" not in top_level_imports(PACKAGE / "logs.py")
