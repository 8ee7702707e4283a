"""Mules (issue 10): ``mule = script.py`` runs in a process of its own, forked by the master
after the app is loaded; the master respawns a dead mule (throttled when it keeps failing),
stops mules on shutdown and reload (SIGKILL after mule-reload-mercy), and lists them in the
stats document."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from support.processes import Instance, InstanceStarter, free_port, wait_until

pytestmark = pytest.mark.timeout(90)

# records "pid name cwd uid app-loaded" at start and "end pid" when it ends (finally: a
# SIGHUP/SIGTERM from the master must let it run)
RECORDER = """\
import os, sys, time
import mulehelper
RECORD = {record!r}
app_loaded = any(name.startswith("uwsgi_file_") for name in sys.modules)
with open(RECORD, "a") as f:
    f.write(f"start {{os.getpid()}} {{__name__}} {{os.getcwd()}} {{os.getuid()}} "
            f"{{int(app_loaded)}} {{mulehelper.WORD}}\\n")
try:
    while True:
        time.sleep(0.2)
finally:
    with open(RECORD, "a") as f:
        f.write(f"end {{os.getpid()}}\\n")
"""

HELPER = """\
import os, time
WORD = "helper"

def run():
    with open({record!r}, "a") as f:
        f.write(f"start {{os.getpid()}} callable\\n")
    while True:
        time.sleep(0.2)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _lines(path: Path, word: str) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.startswith(word)]


def _starts(path: Path, count: int) -> list[list[str]]:
    found = wait_until(lambda: (lambda s: s if len(s) >= count else None)(_lines(path, "start")),
                       20, f"{count} mule start(s) in {path.name}")
    return list(found)  # type: ignore[call-overload]


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(site dir holding app.py and worker.py, record file, pythonpath dir)."""
    site, lib, record = tmp_path / "site", tmp_path / "lib", tmp_path / "record"
    site.mkdir()
    lib.mkdir()
    (site / "app.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n")
    (site / "worker.py").write_text(RECORDER.format(record=str(record)))
    (lib / "mulehelper.py").write_text(HELPER.format(record=str(record)))
    return site, record, lib


def _base(site: Path, lib: Path, port: int) -> list[str]:
    return ["--master", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py",
            "--chdir", str(site), "--pythonpath", str(lib), "-p", "2"]


def _stats(address: str) -> dict[str, object]:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return json.loads(data)  # type: ignore[no-any-return]


def _start(uzerg: InstanceStarter, args: list[str], mules: int) -> Instance:
    inst = uzerg.start(args, wait_workers=None)
    inst.wait_for_log(f"spawned uWSGI mule {mules} ")
    return inst


@pytest.mark.parametrize("lazy", [False, True], ids=["preloaded", "lazy-apps"])
def test_mule_scripts_run_with_the_app_setup_and_stop_with_the_instance(
        uzerg: InstanceStarter, tmp_path: Path, lazy: bool) -> None:
    site, record, lib = _setup(tmp_path)
    port, stats = free_port(), f"127.0.0.1:{free_port()}"
    args = [*_base(site, lib, port), "--mule=worker.py", "--mule=mulehelper:run",
            "--mule=worker.py", "--stats", stats] + (["--lazy-apps"] if lazy else [])
    inst = _start(uzerg, args, 3)
    scripts = _starts(record, 3)
    uzerg.track(inst)
    by_kind = {kind: [s for s in scripts if (s[2] == "callable") == (kind == "callable")]
               for kind in ("script", "callable")}
    assert len(by_kind["script"]) == 2 and len(by_kind["callable"]) == 1
    for line in by_kind["script"]:
        _, pid, name, cwd, uid, app_loaded, word = line
        assert name == "__main__" and cwd == str(site) and int(uid) == os.getuid()
        assert word == "helper"  # --pythonpath applies in the mule
        # forked from the master after the app was loaded (not with lazy-apps)
        assert app_loaded == ("0" if lazy else "1")
        assert psutil.Process(int(pid)).ppid() == inst.pid
        # no listening socket in a mule (uWSGI's close_all_sockets)
        assert not psutil.Process(int(pid)).net_connections(kind="inet")
    pids = sorted(int(s[1]) for s in scripts)
    wait_until(lambda: _stats(stats).get("mules"), 10, "mules in the stats")
    document = _stats(stats)
    mules = document["mules"]
    assert isinstance(mules, list)
    assert [m["id"] for m in mules] == [1, 2, 3]
    assert sorted(m["pid"] for m in mules) == pids
    assert [m["script"] for m in mules] == ["worker.py", "mulehelper:run", "worker.py"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        assert response.read() == b"ok"
    assert inst.stop(signal.SIGTERM) == 0
    assert not any(_alive(pid) for pid in pids)
    ended = {int(e[1]) for e in _lines(record, "end")}
    assert ended == {int(s[1]) for s in by_kind["script"]}  # the scripts' finally ran
    for pid in pids:
        assert f"(pid: {pid}) annihilated" in inst.log_text()
    assert "OOOPS" not in inst.log_text()


def test_a_killed_mule_is_respawned_and_mules_die_with_their_master(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    site, record, lib = _setup(tmp_path)
    stats = f"127.0.0.1:{free_port()}"
    inst = _start(uzerg, [*_base(site, lib, free_port()), "--mule=worker.py", "--stats", stats],
                  1)
    first = int(_starts(record, 1)[0][1])
    os.kill(first, signal.SIGKILL)
    second = int(_starts(record, 2)[1][1])
    assert second != first and _alive(second)
    inst.wait_for_log(f"OOOPS mule 1 (pid: {first}) crippled...trying respawn... "
                      "(killed by signal 9)")
    inst.wait_for_log(f"spawned uWSGI mule 1 (pid: {second})")
    mule = _stats(stats)["mules"][0]  # type: ignore[index]
    assert mule["pid"] == second and mule["respawn_count"] == 1
    uzerg.track(inst)
    os.kill(inst.pid, signal.SIGKILL)  # the master dies: its mule follows (PDEATHSIG)
    wait_until(lambda: not _alive(second), 10, "the mule to die with its master")


def test_reload_replaces_the_mules_and_a_fast_stop_leaves_nothing(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    site, record, lib = _setup(tmp_path)
    inst = _start(uzerg, [*_base(site, lib, free_port()), "--mule=worker.py",
                          "--mule=worker.py"], 2)
    old = {int(s[1]) for s in _starts(record, 2)}
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
    new = {int(s[1]) for s in _starts(record, 4)} - old
    assert len(new) == 2
    assert not any(_alive(pid) for pid in old)
    assert {int(e[1]) for e in _lines(record, "end")} == old  # stopped, not killed
    # the old ones were gone before the new master started (as uWSGI waits for them)
    log = inst.log_text()[mark:]
    assert log.index("annihilated") < log.index("gracefully (RE)spawned")
    assert all(_alive(pid) for pid in new)
    uzerg.track(inst)
    assert inst.stop(signal.SIGINT) == 0
    assert not any(_alive(pid) for pid in new)
    assert "OOOPS" not in inst.log_text()


def test_touch_mules_reload_restarts_them(uzerg: InstanceStarter, tmp_path: Path) -> None:
    site, record, lib = _setup(tmp_path)
    trigger = tmp_path / "mules.touch"
    trigger.write_text("")
    inst = _start(uzerg, [*_base(site, lib, free_port()), "--mule=worker.py",
                          "--touch-mules-reload", str(trigger), "--auto-procname",
                          "--hook-as-mule", "print:a mule is born"], 1)
    first = int(_starts(record, 1)[0][1])
    inst.wait_for_log('running "print:a mule is born" (as-mule)...')
    wait_until(lambda: psutil.Process(first).cmdline()[:1] == ["uzerg mule 1"], 10,
               "the mule's process title")
    os.utime(trigger, (time.time() + 5, time.time() + 5))
    second = int(_starts(record, 2)[1][1])
    inst.wait_for_log(f"*** {trigger} has been touched... mules reload !!! ***")
    assert not _alive(first) and _alive(second)
    assert [int(e[1]) for e in _lines(record, "end")] == [first]
    # as-mule hooks run in each new mule
    inst.wait_for_log('running "print:a mule is born" (as-mule)...', count=2)
    assert "OOOPS" not in inst.log_text()
    uzerg.track(inst)
    assert inst.stop() == 0
    assert not _alive(second)


def test_a_stuck_mule_is_killed_after_its_mercy(uzerg: InstanceStarter, tmp_path: Path) -> None:
    site, record, lib = _setup(tmp_path)
    (site / "stuck.py").write_text(
        "import os, time\n"
        f"open({str(record)!r}, 'a').write(f'start {{os.getpid()}}\\n')\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(0.2)\n"
        "    except BaseException:\n"
        "        pass\n")
    inst = _start(uzerg, [*_base(site, lib, free_port()), "--mule=stuck.py",
                          "--mule-reload-mercy", "2"], 1)
    pid = int(_starts(record, 1)[0][1])
    uzerg.track(inst)
    assert inst.stop(signal.SIGTERM, timeout=30) == 0
    assert f"mule 1 (pid: {pid}) is taking too much time to die...NO MERCY !!!" in \
        inst.log_text()
    assert not _alive(pid)


def test_a_bad_script_is_reported_and_not_respawned_in_a_loop(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    site, record, lib = _setup(tmp_path)
    (site / "boom.py").write_text("raise ValueError('no queue configured')\n")
    port = free_port()
    inst = _start(uzerg, [*_base(site, lib, port), "--mule=missing.py", "--mule=boom.py"], 2)
    started = time.monotonic()
    inst.wait_for_log("mule 1: failed to open python file missing.py: No such file or "
                      "directory: the mule exits")
    inst.wait_for_log("mule 2: boom.py raised ValueError: no queue configured: the mule exits")
    inst.wait_for_log('raise ValueError(\'no queue configured\')')  # the traceback
    # the second quick death in a row: its respawn waits 2 s (then 3 s, 4 s, ...)
    inst.wait_for_log("mule 1 died 2 times in a row within 3 seconds of its spawn: "
                      "throttling its respawn for 2 seconds", timeout=30)
    elapsed = time.monotonic() - started
    spawns = inst.log_text().count("spawned uWSGI mule 1 ")
    assert 2 <= spawns <= elapsed + 2, (spawns, elapsed)  # at most about one a second
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        assert response.read() == b"ok"  # the instance serves meanwhile
    uzerg.track(inst)
    assert inst.stop() == 0
    assert not any(_alive(pid) for pid in uzerg.pids if pid != inst.pid)


def test_a_mule_runs_as_the_workers_user_with_home_and_env(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root")
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="uzerg-mule-"))
    try:
        shared.chmod(0o777)
        site = shared / "venv" / "lib" / "python3.99" / "site-packages"
        site.mkdir(parents=True)
        (site / "venv_marker_mod.py").write_text("VALUE = 'venv'\n")
        for path in [shared / "venv", *(shared / "venv").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (shared / "app.py").write_text(
            "def application(environ, start_response):\n"
            "    start_response('200 OK', [])\n"
            "    return [b'ok']\n")
        (shared / "who.py").write_text(
            "import os, time, venv_marker_mod\n"
            "with open('who.txt', 'w') as f:\n"
            "    f.write(f\"{os.getuid()} {os.getgid()} {os.environ['GREETING']} "
            "{venv_marker_mod.VALUE}\")\n"
            "time.sleep(60)\n")
        for name in ("app.py", "who.py"):
            (shared / name).chmod(0o644)
        inst = _start(uzerg, ["--master", "--http-socket", f"127.0.0.1:{free_port()}",
                              "--wsgi-file", "app.py", "--chdir", str(shared), "--uid",
                              "nobody", "--gid", "nogroup", "--home", str(shared / "venv"),
                              "--env", "GREETING=hi", "--mule=who.py"], 1)
        record = shared / "who.txt"
        wait_until(lambda: record.exists() and record.read_text(), 20, "the mule's record")
        assert record.read_text() == "65534 65534 hi venv"
        uzerg.track(inst)
        assert inst.stop() == 0
    finally:
        shutil.rmtree(shared, ignore_errors=True)
