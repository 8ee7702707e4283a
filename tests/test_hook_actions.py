"""Hook values and the file actions (pure: files in tmp_path, no process started)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from config_helpers import make_config

from uzerg.config.options import HOOK_PHASES
from uzerg.config.service_values import HOOK_ACTIONS, parse_hook
from uzerg.processes.hook_actions import ACTIONS, HookActionError, HookExit
from uzerg.processes.hook_phases import hooks_configured, phase_configured
from uzerg.processes.hooks import PHASES


def test_the_config_knows_exactly_the_actions_the_runner_has() -> None:
    assert set(ACTIONS) == HOOK_ACTIONS


def test_the_runner_loads_for_a_configured_phase_only() -> None:
    # uzerg.processes.hooks loads when hook_phases sees a step: every option of every phase
    # must be seen (a missed one would never run)
    assert {name for name, _when, _exec in HOOK_PHASES} == set(PHASES)
    plain = make_config("--socket", "127.0.0.1:0")
    assert not hooks_configured(plain)
    for name, _when, has_exec in HOOK_PHASES:
        assert not phase_configured(plain, name)
        for kind in ("hook", "exec", "call") if has_exec else ("hook",):
            value = "print:x" if kind == "hook" else "x"
            config = make_config("--socket", "127.0.0.1:0", f"--{kind}-{name}", value)
            assert phase_configured(config, name) and hooks_configured(config), (kind, name)
    assert hooks_configured(make_config("--socket", "127.0.0.1:0", "--hook-touch", "/f print:x"))


@pytest.mark.parametrize("value, message", [
    ("nosuch:x", "hook action not found: nosuch"),
    ("print", "invalid hook syntax"),
    ("rpc:hello", "uzerg has no uWSGI RPC"),
])
def test_bad_hooks_are_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hook(value)


def test_good_hooks_are_kept_as_written() -> None:
    assert parse_hook("!exec:echo a:b") == "!exec:echo a:b"


def test_file_actions(tmp_path: Path) -> None:
    target = tmp_path / "f"
    ACTIONS["write"](f"{target} one two")
    assert target.read_text() == "one two"
    ACTIONS["appendn"](f"{target} three")
    ACTIONS["append"](f"{target} four")
    assert target.read_text() == "one twothree\nfour"
    ACTIONS["writen"](f"{target} x")
    assert target.read_text() == "x\n"
    ACTIONS["chmod"](f"{target} 600")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    ACTIONS["unlink"](str(target))
    assert not target.exists()
    ACTIONS["create"](str(target))
    assert target.read_text() == ""
    ACTIONS["mkdir"](str(tmp_path / "d"))
    ACTIONS["sticky"](str(tmp_path / "d"))
    assert (tmp_path / "d").stat().st_mode & stat.S_ISVTX
    with pytest.raises(HookActionError, match="File exists"):
        ACTIONS["mkdir"](str(tmp_path / "d"))
    with pytest.raises(HookActionError, match="must be: <file> <string>"):
        ACTIONS["write"](str(target))
    with pytest.raises(HookActionError, match="invalid hook chmod mask: 9z"):
        ACTIONS["chmod"](f"{target} 9z")


def test_putenv_sets_and_unsets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UZERG_HOOK_TEST", "old")
    ACTIONS["putenv"]("UZERG_HOOK_TEST=new=value")
    assert os.environ["UZERG_HOOK_TEST"] == "new=value"
    ACTIONS["putenv"]("UZERG_HOOK_TEST")
    assert "UZERG_HOOK_TEST" not in os.environ


def test_writefifo_without_reader_is_not_an_error(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    ACTIONS["writefifo"](f"{fifo} hello")  # ENXIO: nobody reads, uWSGI lets it go
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ACTIONS["writefifo"](f"{fifo} hello")
        assert os.read(reader, 100) == b"hello"
    finally:
        os.close(reader)


@pytest.mark.parametrize("arg, code", [("42", 42), ("3", 0), ("", 0)])
def test_exit_status_as_uwsgi_reads_it(arg: str, code: int) -> None:
    with pytest.raises(HookExit) as caught:
        ACTIONS["exit"](arg)
    assert caught.value.code == code


def test_unix_signal_accepts_only_what_uzerg_already_does() -> None:
    ACTIONS["unix_signal"]("15 gracefully_kill_them_all")
    with pytest.raises(HookActionError, match="cannot bind signal 10"):
        ACTIONS["unix_signal"]("10 gracefully_kill_them_all")


def test_call_a_python_function_and_a_c_symbol() -> None:
    ACTIONS["call"]("os.getcwd")
    ACTIONS["callint"]("abs -3")
    with pytest.raises(HookActionError, match='function "abs" returned 3'):
        ACTIONS["callintret"]("abs -3")
    with pytest.raises(HookActionError, match="unable to call function"):
        ACTIONS["call"]("no.such.module.func")
