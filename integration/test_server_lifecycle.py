"""Worker life cycle and control: harakiri, max-requests, reload-on-rss, mercy, touch-reload,
master fifo, management commands, pidfile, daemonize, logto, process names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from support.clients import http_get, read_stats
from support.processes import InstanceStarter, wait_until, write_app


def test_harakiri_kills_a_stuck_worker_and_respawns_it(
    uzerg: InstanceStarter, app_file: Path
) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--harakiri", "1"])
    address = inst.address(0)
    stuck = inst.worker_pids(1)[0]
    try:
        http_get(address, "/hang", timeout=20)
    except OSError:
        pass  # the connection dies with the worker
    line = inst.wait_for_log("*** HARAKIRI ON WORKER 1 (pid: ")
    assert f"(pid: {stuck}, try: 1" in line
    inst.wait_for_log(f"DAMN ! worker 1 (pid: {stuck}) died, killed by signal 9")
    inst.wait_for_log("Respawned uWSGI worker 1 (new pid: ")
    status, body = http_get(address)
    assert status == 200 and int(body.split()[1]) != stuck


def test_max_requests_recycles_the_worker(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--max-requests", "3"])
    address = inst.address(0)
    first = inst.worker_pids(1)[0]
    bodies = [http_get(address)[1] for _ in range(3)]
    assert {int(b.split()[1]) for b in bodies} == {first}
    inst.wait_for_log(f"...The work of process {first} is done. Seeya!")
    inst.wait_for_log(f"worker 1 killed successfully (pid: {first})")
    inst.wait_for_log("Respawned uWSGI worker 1")
    assert "DAMN" not in inst.log_text()
    assert int(http_get(address)[1].split()[1]) != first


def test_reload_on_rss_recycles_the_worker(uzerg: InstanceStarter, app_file: Path) -> None:
    # any Python worker is above 1 MB: it is recycled after its first request
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--reload-on-rss", "1"])
    first = inst.worker_pids(1)[0]
    assert http_get(inst.address(0))[0] == 200
    inst.wait_for_log(f"worker 1 killed successfully (pid: {first})")


def test_mercy_then_sigkill_for_a_worker_that_does_not_finish(
    uzerg: InstanceStarter, app_file: Path
) -> None:
    import threading

    stats = str(app_file.parent / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--worker-reload-mercy", "1", "--stats", stats])
    address = inst.address(0)
    client = threading.Thread(target=lambda: _ignore_errors(lambda: http_get(address, "/hang")),
                              daemon=True)
    client.start()
    wait_until(lambda: read_stats(stats)["workers"][0]["status"] == "busy", 10,
               "the hanging request")
    inst.send(signal.SIGTERM)
    inst.wait_for_log("is taking too much time to die...NO MERCY !!!")
    assert inst.wait_exit() == 0
    client.join(10)


def _ignore_errors(func: object) -> None:
    try:
        func()  # type: ignore[operator]
    except OSError:
        pass


def test_touch_reload(uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--touch-reload", str(trigger)])
    old = inst.worker_pids(1)
    os.utime(trigger, (1, 1))
    inst.wait_for_log(f"*** {trigger} has been touched... grace them all !!! ***")
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process")
    wait_until(lambda: (p := inst.worker_pids()) and p != old, 10, "a new worker")
    assert http_get(inst.address(0))[0] == 200


def test_master_fifo_commands(uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "master.fifo"
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master-fifo", str(fifo)])
    inst.wait_for_log(f"active master fifo is now {fifo}")

    def send(command: str) -> None:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, command.encode())
        finally:
            os.close(fd)

    send("+")
    inst.worker_pids(2)
    send("-")
    inst.worker_pids(1)
    send("p")
    inst.wait_for_log("*** worker 1 suspended ***")
    send("p")
    inst.wait_for_log("*** worker 1 resumed ***")
    send("s")
    inst.wait_for_log("workers total requests: 0")
    mark = inst.mark()
    send("r")
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
    inst.wait_for_log(f"active master fifo is now {fifo}", since=mark)
    send("q")
    assert inst.wait_exit() == 0


def test_master_fifo_switch_obeys_the_new_fifo(uzerg: InstanceStarter, app_file: Path,
                                               tmp_path: Path) -> None:
    first, second = tmp_path / "f0", tmp_path / "f1"
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master-fifo", str(first), "--master-fifo", str(second)])
    inst.wait_for_log(f"active master fifo is now {first}")
    first.write_text("1")  # the master holds it open for reading: this never blocks
    inst.wait_for_log(f"active master fifo is now {second}")
    wait_until(lambda: not first.exists(), 10, "the old fifo removed")
    second.write_text("s")  # the master watches the new fifo (it did not before)
    inst.wait_for_log("workers total requests: 0")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uzerg", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_pidfile_and_management_commands(uzerg: InstanceStarter, app_file: Path,
                                         tmp_path: Path) -> None:
    pidfile = tmp_path / "uzerg.pid"
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--pidfile", str(pidfile)])
    assert int(pidfile.read_text()) == inst.pid
    old = inst.worker_pids(1)
    assert _cli("--reload", str(pidfile)).returncode == 0
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process")
    wait_until(lambda: (p := inst.worker_pids()) and p != old, 10, "a new worker")
    assert _cli("--pause", str(pidfile)).returncode == 0
    inst.wait_for_log("*** worker 1 suspended ***")
    assert _cli("--resume", str(pidfile)).returncode == 0
    inst.wait_for_log("*** worker 1 resumed ***")
    assert _cli("--stop", str(pidfile)).returncode == 0
    assert inst.wait_exit() == 0
    missing = _cli("--stop", str(tmp_path / "missing.pid"))
    assert missing.returncode == 1 and "missing.pid" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_pidfile2_is_written_and_vacuumed(uzerg: InstanceStarter, app_file: Path,
                                         tmp_path: Path) -> None:
    """uWSGI's pidfile2: the master's pid, written after privileges are dropped; vacuum
    removes it at exit."""
    pidfile2 = tmp_path / "uzerg2.pid"
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--pidfile2", str(pidfile2), "--vacuum"])
    assert int(pidfile2.read_text()) == inst.pid
    inst.wait_for_log(f"writing pidfile to {pidfile2}")
    assert _cli("--stop", str(pidfile2)).returncode == 0
    assert inst.wait_exit() == 0
    assert not pidfile2.exists()


def test_logto_and_daemonize(uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    logfile = tmp_path / "out.log"
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--logto", str(logfile)], wait_workers=None)
    wait_until(lambda: "spawned uWSGI worker 1" in _read(logfile), 15, "the log file")
    inst.stop()
    assert "goodbye to uWSGI." in _read(logfile)

    daemon_log = tmp_path / "daemon.log"
    pidfile = tmp_path / "daemon.pid"
    launcher = subprocess.run(
        [sys.executable, "-m", "uzerg", "--http-socket", "127.0.0.1:0", "--wsgi-file",
         str(app_file), "--daemonize", str(daemon_log), "--pidfile", str(pidfile)],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert launcher.returncode == 0  # the launcher returns; the daemon lives on
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 15, "the pidfile")
    daemon_pid = int(pidfile.read_text())
    uzerg.pids.add(daemon_pid)
    try:
        wait_until(lambda: "spawned uWSGI worker 1" in _read(daemon_log), 15, "the daemon log")
        daemon = psutil.Process(daemon_pid)
        assert daemon.ppid() != os.getpid()  # detached: not our child
        assert os.getsid(daemon_pid) != os.getsid(0)  # and in a session of its own
        uzerg.pids.update(c.pid for c in daemon.children())
        assert _port_answers(_read(daemon_log))
    finally:
        os.kill(daemon_pid, signal.SIGTERM)
    wait_until(lambda: "goodbye to uWSGI." in _read(daemon_log), 15, "the daemon to stop")


def _port_answers(log: str) -> bool:
    address = log.split("bound to TCP address ", 1)[1].split()[0]
    return http_get(address)[0] == 200


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def test_auto_procname(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--auto-procname", "--procname-prefix-spaced", "site",
                        "--processes", "2"], wait_workers=2)
    expected = {"site uzerg worker 1", "site uzerg worker 2"}

    def titles() -> set[str]:
        return {psutil.Process(pid).cmdline()[0] for pid in inst.worker_pids(2)}

    # a worker sets its title just after fork: poll instead of reading the first instant
    wait_until(lambda: titles() == expected, 10, f"worker titles {expected} (saw {titles()})")
    assert psutil.Process(inst.pid).cmdline()[0] == "site uzerg master"


def test_uid_gid_drop_after_binding(uzerg: InstanceStarter, tmp_path: Path) -> None:
    if os.getuid() != 0:
        import pytest

        pytest.skip("needs root")
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="uzerg-uid-"))
    try:
        shared.chmod(0o755)
        app = write_app(shared / "app.py")
        app.chmod(0o644)
        sock = shared / "app.sock"
        run = shared / "run"  # the stats socket is bound after the drop, as in uWSGI
        run.mkdir()
        os.chown(run, 65534, 65534)
        inst = uzerg.start(["--socket", str(sock), "--http-socket", "127.0.0.1:0",
                            "--wsgi-file", str(app), "--uid", "nobody", "--gid", "nogroup",
                            "--chown-socket", "nobody:nogroup", "--chdir", str(shared),
                            "--stats", str(run / "stats.sock")],
                           cwd=tmp_path)
        inst.wait_for_log("setgid() to 65534")
        inst.wait_for_log("setuid() to 65534")
        for pid in [inst.pid, *inst.worker_pids(1)]:
            assert psutil.Process(pid).uids().effective == 65534
            assert psutil.Process(pid).gids().effective == 65534
        assert sock.stat().st_uid == 65534 and sock.stat().st_gid == 65534
        assert http_get(inst.address(1))[0] == 200
        # what uzerg loads when first needed was loaded before the drop: nobody may not read
        # the Python installation (here a pyenv under /root, mode 0700)
        assert http_get(inst.address(1), "/crash")[0] == 500
        inst.wait_for_log("RuntimeError: boom")
        workers = read_stats(str(run / "stats.sock"))["workers"]
        assert workers[0]["rss"] > 0
        assert "ModuleNotFoundError" not in inst.log_text()
        assert inst.stop() == 0
    finally:
        import shutil

        shutil.rmtree(shared, ignore_errors=True)


def test_chdir_env_and_home(uzerg: InstanceStarter, tmp_path: Path) -> None:
    site = tmp_path / "venv" / "lib" / "python3.99" / "site-packages"
    site.mkdir(parents=True)
    (site / "venv_marker_mod.py").write_text("VALUE = 'from the venv'\n")
    appdir = tmp_path / "site"
    appdir.mkdir()
    (appdir / "envapp.py").write_text(
        "import os, venv_marker_mod\n"
        "def application(environ, start_response):\n"
        "    body = f\"{os.getcwd()}|{os.environ.get('GREETING')}|{venv_marker_mod.VALUE}\"\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [body.encode()]\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--chdir", str(appdir), "--module",
                        "envapp", "--env", "GREETING=hi there", "--home",
                        str(tmp_path / "venv")])
    assert http_get(inst.address(0))[1].decode() == f"{appdir}|hi there|from the venv"


def test_a_worker_dying_at_start_up_is_respawned_at_most_once_a_second(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    import time

    app = tmp_path / "dies.py"
    app.write_text("import os\nos._exit(3)\n")  # every worker dies while loading (lazy-apps)
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--lazy-apps"], wait_workers=None)
    inst.wait_for_log("died :( trying respawn ...")
    first = time.monotonic()
    inst.wait_for_log("died :( trying respawn ...", count=4)
    assert time.monotonic() - first >= 2.5  # 3 more deaths took at least ~3 respawn intervals
    assert inst.process.poll() is None  # the master lives on
