"""uzerg's resolved options against the real ``uwsgi --show-config`` for the whole corpus.

uWSGI prints the resolved ``[uwsgi]`` block and then starts; ``--clock`` with a clock that
does not exist makes it exit right after printing, before it binds, forks or runs a hook.
Log redirection is pointed back at the pipe (``--daemonize``/``--logto /dev/stdout``, scalars:
the last value wins). Files whose loggers would open files outside the sandbox are not run.
Every difference is listed in ``KNOWN_DIFFERENCES`` with the reason.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from uzerg.config import options
from uzerg.config.load import ConfigError, load_config

pytestmark = pytest.mark.interop
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "uwsgi-ini"
FILES = sorted(CORPUS.glob("*.ini")) if CORPUS.is_dir() else []
UWSGI = shutil.which("uwsgi")
ENV = {"HOME": "/home/deploy", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
NO_CLOCK = "uzerg-no-such-clock"
HEADER = ";uWSGI instance configuration\n[uwsgi]\n"
FOOTER = ";end of configuration\n"
NOT_RUN = re.compile(r"^\s*(logger|req-logger|logger-req)\s*=", re.M)

# file → {option: why uzerg and uwsgi disagree}; the test fails on any other difference and on
# an entry here that no longer differs (so the list stays true)
KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {
    # `processes = $(UWSGI_PROCESSES)` with the variable unset: uWSGI reads 0 and runs a master
    # with no workers ("Operational MODE: no-workers", serving nothing); uzerg runs 1 and warns
    "016.ini": {"processes": "uWSGI 0 (no-workers), uzerg 1 with a warning"},
    "021.ini": {"processes": "uWSGI 0 (no-workers), uzerg 1 with a warning"},
}

# files uWSGI itself refuses (prints no configuration): file → why. uzerg refuses them too.
UWSGI_REFUSES: dict[str, str] = {
    "029.ini": "includes uwsgi-base.ini, which is not in the corpus",
    "074.ini": "env = @($(UWSGI_GIT_ROOT)/...): the variable is unset, the file missing",
    "088.ini": "strict mode with plugins uWSGI cannot load (tuntap, corerouter, http)",
    "089.ini": "includes /etc/uwsgi/local.ini, which does not exist here",
}

# A hand-made file with the tricky rules (magic variables, references, logic, includes, CRLF,
# trailing comments): uzerg must resolve it exactly as uwsgi does.
TRICKY = (
    "top = ignored\r\n[uwsgi]\r\n"
    "base = %d\nname = %n\nsocket = %(base)%(name).sock ; kept\n"
    "processes = %(n + 2)\nn = 2\nn = 7\nthreads = 3 # comment\n"
    "pidfile = $(HOME)/%s.pid\nchdir = $(UZERG_UNSET_VAR)\n"
    "log-format = %(addr) %(uri) %%d\nlogto = @(%dvalue.txt)\n"
    "if-env = HOME\nhome = %(_)/venv\nendif =\n"
    "if-not-env = HOME\nmaster = true\nend =\n"
    "ifexists = %d\nvacuum = true\nendif =\n"
    "for = a b\nenv = X_%(_)=%(_)\nendfor =\n"
    "ini = :extra\nmax-requests = 10\n\tlisten\t=\t64\t\n"
    "[extra]\nmax-requests = 5\nharakiri = 30\nstatic-map = /s=%x"
)



def run_uwsgi(path: Path, cwd: Path) -> list[tuple[str, str]] | None:
    """uWSGI's ``key = value`` lines for ``path``; None when it printed no configuration."""
    text = path.read_text(errors="replace")
    extra: list[str] = []
    if re.search(r"^\s*daemonize\s*=", text, re.M):
        extra += ["--daemonize", "/dev/stdout"]
    if re.search(r"^\s*logto\s*=", text, re.M):
        extra += ["--logto", "/dev/stdout"]
    args = [str(UWSGI), "--ini", str(path), *extra, "--show-config", "--clock", NO_CLOCK]
    proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = out.decode(errors="replace")
    start = output.find(HEADER.split("\n")[0])
    if start < 0:
        return None
    # with log-date/logto every log line carries a date prefix, alone on the line before the
    # header; dates have a fixed width, so cut that many characters where " - " ends them
    before = output[output.rfind("\n", 0, start - 1) + 1 : start - 1]
    width = len(before) if before.endswith(" - ") else 0
    lines = [ln[width:] if width and ln[width - 3 : width] == " - " else ln
             for ln in output[start:].split("\n")][2:]
    if FOOTER.strip() not in lines:
        return None
    entries: list[tuple[str, str]] = []
    for line in lines[: lines.index(FOOTER.strip())]:
        key, sep, value = line.partition(" = ")
        if sep:
            entries.append((key, value))
        elif entries:  # a value with a line break (@(file))
            entries[-1] = (entries[-1][0], entries[-1][1] + "\n" + line)
    added = len(extra) // 2 + 2  # our overrides, show-config, clock
    return entries[:-added]


def uwsgi_view(entries: list[tuple[str, str]]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for key, value in entries:
        option = options.lookup(key)
        if option is None or option.name in options.DIRECTIVES or option.name == "show-config":
            continue
        if option.kind == "list":
            view.setdefault(option.name, []).append(value)
        elif option.kind == "flag":
            view[option.name] = options.parse_bool(value)
        elif option.kind == "int":
            match = re.match(r"\s*([+-]?\d+)", value)
            view[option.name] = int(match.group(1)) if match else 0  # C atoi
        elif option.bare is not None and value in ("", "true"):
            view[option.name] = option.bare
        elif value.strip():
            view[option.name] = value
        else:
            view.pop(option.name, None)  # empty: uzerg keeps the default
    return {k: tuple(v) if isinstance(v, list) else v for k, v in view.items()}


def uzerg_view(path: Path) -> dict[str, Any] | str:
    try:
        config = load_config(["--ini", str(path)], ENV, write=lambda _text: None)
    except ConfigError as exc:
        return str(exc)
    view = {}
    for name in config.set_options:
        value = config.shown[name]  # as written: the typed values are compared elsewhere
        if name == "show-config":
            continue
        view[name] = value
    return view


@pytest.fixture(scope="module")
def uwsgi_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if UWSGI is None:
        pytest.skip("uwsgi is not installed")
    cwd = tmp_path_factory.mktemp("uwsgi-cwd")
    runnable = [p for p in FILES if not NOT_RUN.search(p.read_text(errors="replace"))]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = dict(zip([p.name for p in runnable],
                           pool.map(lambda p: run_uwsgi(p, cwd), runnable), strict=True))
    return {"cwd": cwd, "results": results}


@pytest.mark.skipif(not FILES, reason="corpus not found")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_same_resolution_as_uwsgi(path: Path, uwsgi_results: dict[str, Any],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    results = uwsgi_results["results"]
    if path.name not in results:
        pytest.skip("its loggers would open files outside the sandbox")
    monkeypatch.chdir(uwsgi_results["cwd"])  # %v and relative paths as uwsgi saw them
    theirs = results[path.name]
    ours = uzerg_view(path)
    if theirs is None:
        assert path.name in UWSGI_REFUSES, f"uwsgi printed no configuration for {path.name}"
        return
    if isinstance(ours, str):
        pytest.skip(f"uzerg refuses it: {ours}")  # counted by tests/test_corpus.py
    expected = uwsgi_view(theirs)
    differing = {k for k in set(ours) | set(expected) if ours.get(k) != expected.get(k)}
    known = KNOWN_DIFFERENCES.get(path.name, {})
    unexplained = {k: (ours.get(k), expected.get(k)) for k in differing - set(known)}
    assert not unexplained, f"uzerg vs uwsgi: {unexplained}"
    assert set(known) <= differing, f"stale KNOWN_DIFFERENCES: {set(known) - differing}"


@pytest.mark.skipif(UWSGI is None, reason="uwsgi is not installed")
def test_tricky_rules_resolve_as_uwsgi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tricky.ini"
    path.write_bytes(TRICKY.encode())
    (tmp_path / "value.txt").write_text("/tmp/uzerg-log\n\n")
    theirs = run_uwsgi(path, tmp_path)
    assert theirs is not None
    monkeypatch.chdir(tmp_path)
    ours = uzerg_view(path)
    assert not isinstance(ours, str), ours
    assert ours == uwsgi_view(theirs)
    assert ours["socket"] == (f"{tmp_path}/tricky.sock ; kept",) and ours["processes"] == 4
