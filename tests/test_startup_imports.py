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
    # issue 13: a zerg's start-up imports none of these (integration/test_startup_modules.py)
    "typing": "~3 ms with its classes; names for type checkers go in `if TYPE_CHECKING:` "
              "(a local TYPE_CHECKING = False), NamedTuple/Protocol are plain classes at run time",
    "urllib": "urllib.parse imports ipaddress (~3 ms): uzerg.serve.environ has its unquote",
    "ipaddress": "~1.5 ms; uzerg.sockets.is_loopback_address packs the address instead",
    "threading": "imported in the master only when workers run threads (load_thread_support)",
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


def test_type_checking_blocks_are_off_at_run_time() -> None:
    # `TYPE_CHECKING = False` stands for typing.TYPE_CHECKING: a module that forgot it would
    # fail with a NameError at import, one that imported it from typing would load typing
    for path in MODULES:
        tree = ast.parse(path.read_text())
        guarded = any(isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                      and node.test.id == "TYPE_CHECKING" for node in tree.body)
        if guarded:
            assert "\nTYPE_CHECKING = False\n" in path.read_text(), path


@pytest.mark.parametrize("argv", [["--version"], ["--check-config", "--socket", "127.0.0.1:0"],
                                  ["--no-such-option"]])
def test_the_command_turns_the_collector_back_on(argv: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # uzerg.cli.main runs uzerg's start-up with gc off (issue 13); whatever path returns, the
    # collector is as it was (on), and importing uzerg.cli alone changes nothing
    import gc

    from uzerg import cli

    assert gc.isenabled()
    cli.main(argv)
    assert gc.isenabled()
    gc.disable()
    try:
        cli.main(argv)  # a caller that had it off keeps it off
        assert not gc.isenabled()
    finally:
        gc.enable()
    capsys.readouterr()
