"""Zero-downtime deploys (issue 12): ``takeover = PIDFILE`` and ``uzerg --rollback``.

A zergpool holds the public socket. Each version runs as a zerg of it with ``--takeover``;
once its workers accept it pauses the version in the pidfile and takes its place. A client
loop runs throughout (HTTP straight to the pool socket, or HTTP to nginx passing the uwsgi
protocol to it); every answer names the version and pid that served it. Nothing may fail, and
the switch-over times are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.clients import get, read_stats
from support.peers import nginx_available, running_nginx
from support.processes import (
    Instance,
    InstanceStarter,
    free_port,
    wait_until,
    write_version_app,
)


class TimedLoop:
    """Two client threads doing requests back to back; each answer with its start time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answers: list[tuple[float, float, str]] = []  # (start, end, body)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                body = get(self.address, "http", "/", timeout=30)
            except (OSError, AssertionError) as exc:
                self.errors.append(f"{time.strftime('%X')}: {exc!r}")
                continue
            self.answers.append((started, time.monotonic(), body))

    def wait_only(self, version: str, answers: int = 20, timeout: float = 30) -> None:
        """Wait until the last ``answers`` answers all came from ``version``."""
        def only() -> bool:
            tail = self.answers[-answers:]
            return len(tail) == answers and all(b.startswith(version + " ") for _, _, b in tail)
        wait_until(lambda: only() or self.errors, timeout, f"only {version} answering")
        assert not self.errors, self.errors[:5]

    def stop(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(40)


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _start_pool(uzerg: InstanceStarter, tmp_path: Path, port: int) -> str:
    pool = str(tmp_path / "pool.sock")
    inst = uzerg.start(["--zergpool", f"{pool}:127.0.0.1:{port}"], wait_workers=None)
    inst.wait_for_log(f"*** Zerg server enabled on {pool} ***")
    return pool


def _deploy(uzerg: InstanceStarter, tmp_path: Path, pool: str, protocol: str, version: str,
            *extra: str) -> tuple[Instance, float]:
    """Start ``version`` with --takeover; returns it and the seconds from launch until the
    pidfile names it (the takeover is done)."""
    app = write_version_app(tmp_path / f"app_{version}.py", version)
    pidfile = tmp_path / "app.pid"
    launched = time.monotonic()
    inst = uzerg.start(["--zerg", pool, "--protocol", protocol, "--wsgi-file", str(app),
                        "--master", "--processes", "2", "--takeover", str(pidfile), *extra],
                       wait_workers=2)
    wait_until(lambda: _pid_in(pidfile) == inst.pid, 30, f"{version} in the pidfile")
    return inst, time.monotonic() - launched


def _switch_report(loop: TimedLoop, old: str, new: str, since: float) -> str:
    """From ``since`` (the launch, or the rollback command): when the new version answered
    first, how long both answered, and the longest wait between two answers."""
    window = sorted(a for a in loop.answers if a[0] >= since)
    new_starts = [s for s, _, b in window if b.startswith(new + " ")]
    old_starts = [s for s, _, b in window if b.startswith(old + " ")]
    first_new = min(new_starts) - since if new_starts else float("nan")
    overlap = max(old_starts) - min(new_starts) if old_starts and new_starts else 0.0
    ends = sorted(e for _, e, _ in window)
    gap = max((b - a for a, b in zip(ends, ends[1:], strict=False)), default=0.0)
    after = "launch" if old < new else "rollback"
    return (f"{old}->{new}: first {new} answer {first_new * 1000:.0f} ms after {after}, "
            f"both answered for {max(overlap, 0) * 1000:.0f} ms, longest wait between "
            f"answers {gap * 1000:.0f} ms")


@contextlib.contextmanager
def _front(tmp_path: Path, route: str, port: int) -> Iterator[str]:
    if route == "http":
        yield f"127.0.0.1:{port}"
        return
    with running_nginx(tmp_path, f"127.0.0.1:{port}") as nginx:
        yield f"127.0.0.1:{nginx.port}"


@pytest.mark.parametrize("route", ["http", "nginx-uwsgi"])
def test_deploy_v1_v2_v3_then_rollback_under_load(uzerg: InstanceStarter, tmp_path: Path,
                                                   route: str) -> None:
    if route == "nginx-uwsgi" and not nginx_available():
        pytest.skip("nginx is not installed")
    protocol = "http" if route == "http" else "uwsgi"
    port = free_port()
    pool = _start_pool(uzerg, tmp_path, port)
    pidfile = tmp_path / "app.pid"
    previous = tmp_path / "app.pid.previous"
    v1, _ = _deploy(uzerg, tmp_path, pool, protocol, "v1")
    assert not previous.exists()  # nothing was running: nothing to roll back to
    report = []
    with _front(tmp_path, route, port) as address:
        loop = TimedLoop(address)
        try:
            loop.wait_only("v1")
            launched = time.monotonic()
            v2, took = _deploy(uzerg, tmp_path, pool, protocol, "v2")
            v1.wait_for_log("suspended ***", count=2)
            assert _pid_in(previous) == v1.pid
            loop.wait_only("v2")
            report.append(f"v2 in the pidfile {took:.2f} s after launch; "
                          + _switch_report(loop, "v1", "v2", launched))

            launched = time.monotonic()
            v3, took = _deploy(uzerg, tmp_path, pool, protocol, "v3")
            assert _pid_in(previous) == v2.pid
            loop.wait_only("v3")
            assert v1.wait_exit(30) == 0  # the generation before the paused one is stopped
            report.append(f"v3 in the pidfile {took:.2f} s after launch; "
                          + _switch_report(loop, "v2", "v3", launched))

            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "uzerg", "--rollback", str(pidfile)],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            assert f"pid {v2.pid} resumed" in result.stdout
            done = time.monotonic()
            assert _pid_in(pidfile) == v2.pid
            assert not previous.exists()
            loop.wait_only("v2")
            assert v3.wait_exit(30) == 0
            report.append(f"rollback command {(done - started) * 1000:.0f} ms; "
                          + _switch_report(loop, "v3", "v2", started))
        finally:
            loop.stop()
    versions = {body.split(" ")[0] for _, _, body in loop.answers}
    print(f"\n[{route}] {len(loop.answers)} answers, {len(loop.errors)} failed\n  "
          + "\n  ".join(report))
    assert loop.errors == []
    assert versions == {"v1", "v2", "v3"}
    # a second rollback has nothing to go back to: one clear line, nothing touched
    again = subprocess.run([sys.executable, "-m", "uzerg", "--rollback", str(pidfile)],
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 1
    assert again.stderr.startswith("uzerg: --rollback: no previous instance recorded")
    assert "Traceback" not in again.stderr
    assert get(f"127.0.0.1:{port}", protocol).startswith("v2 ")


def test_failed_new_version_never_touches_the_old_one(uzerg: InstanceStarter,
                                                     tmp_path: Path) -> None:
    port = free_port()
    pool = _start_pool(uzerg, tmp_path, port)
    pidfile = tmp_path / "app.pid"
    v1, _ = _deploy(uzerg, tmp_path, pool, "http", "v1")
    for extra in (["--lazy-apps"], []):  # the app fails in the worker, or in the master
        broken = uzerg.start(
            ["--zerg", pool, "--protocol", "http", "--wsgi-file", str(tmp_path / "missing.py"),
             "--need-app", "--processes", "2", "--takeover", str(pidfile), *extra],
            wait_workers=None)
        assert broken.wait_exit(30) == 22
        assert "takeover" not in broken.log_text()
    assert _pid_in(pidfile) == v1.pid
    assert not (tmp_path / "app.pid.previous").exists()
    assert "PAUSE" not in v1.log_text()
    assert get(f"127.0.0.1:{port}").startswith("v1 ")


def test_a_stale_pidfile_naming_another_program_is_not_signalled(uzerg: InstanceStarter,
                                                                tmp_path: Path) -> None:
    port = free_port()
    pool = _start_pool(uzerg, tmp_path, port)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "app.pid").write_text(f"{other.pid}\n")  # a reused pid after a crash
        v1, _ = _deploy(uzerg, tmp_path, pool, "http", "v1")
        assert "is neither uzerg nor uWSGI (sleep): treated as gone" in v1.log_text()
        assert psutil.Process(other.pid).status() != psutil.STATUS_STOPPED
        assert not (tmp_path / "app.pid.previous").exists()
    finally:
        other.kill()
        other.wait()


def test_takeover_of_an_instance_with_its_own_socket_warns(uzerg: InstanceStarter,
                                                          tmp_path: Path) -> None:
    """Not a zerg: its socket is its own, so pausing the old instance is no hand-over."""
    app = write_version_app(tmp_path / "app.py", "v1")
    pidfile = tmp_path / "app.pid"
    inst = uzerg.start(["--wsgi-file", str(app), "--http-socket", "127.0.0.1:0",
                        "--takeover", str(pidfile)])
    inst.wait_for_log("takeover: 127.0.0.1:")
    assert "run the versions as zergs of a zergpool" in inst.log_text()
    wait_until(lambda: _pid_in(pidfile) == inst.pid, 10, "the pidfile")


def test_takeover_stop_stops_the_old_version(uzerg: InstanceStarter, tmp_path: Path) -> None:
    port = free_port()
    pool = _start_pool(uzerg, tmp_path, port)
    pidfile = tmp_path / "app.pid"
    v1, _ = _deploy(uzerg, tmp_path, pool, "http", "v1")
    v2, _ = _deploy(uzerg, tmp_path, pool, "http", "v2", "--takeover-stop")
    assert v1.wait_exit(30) == 0
    assert not (tmp_path / "app.pid.previous").exists()
    assert get(f"127.0.0.1:{port}").startswith("v2 ")
    result = subprocess.run([sys.executable, "-m", "uzerg", "--rollback", str(pidfile)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "no previous instance" in result.stderr
    assert v2.process.poll() is None
    # a reload of the new version (same pid, re-executed) does not take over again
    since = v2.mark()
    v2.send(1)  # SIGHUP
    v2.wait_for_log("gracefully (RE)spawned uWSGI master process", since=since)
    wait_until(lambda: len(v2.worker_pids()) == 2, 30, "v2's new workers")
    assert _pid_in(pidfile) == v2.pid


def _write_fifo(path: Path, text: str) -> None:
    """As the recipe's `echo text > path`, whose open waits for the master to read the fifo:
    a master that has just made it (a fifo switch) opens it a moment later (ENXIO until then)."""
    def opened() -> int | None:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return None
            raise
    fd = wait_until(opened, 20, f"a reader on {path.name}")
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_the_master_fifo_dance_of_docs_deploy_md(uzerg: InstanceStarter, tmp_path: Path) -> None:
    """docs/deploy.md's uWSGI-style recipe, step by step: three FIFO slots per release, the
    script's writes, v1 -> v2 -> v3 and the rollback to v2, with 0 failed requests."""
    port = free_port()
    pool = _start_pool(uzerg, tmp_path, port)
    run = tmp_path / "run"
    run.mkdir()
    fifo = {name: run / f"{name}.fifo" for name in ("new", "running", "sleeping")}

    def release(version: str) -> Instance:
        home = tmp_path / "releases" / version
        home.mkdir(parents=True)
        app = write_version_app(home / "app.py", version)
        (home / "app.ini").write_text(
            "[uwsgi]\n"
            f"zerg = {pool}\n"
            f"master-fifo = {fifo['new']}\n"
            f"master-fifo = {fifo['running']}\n"
            f"master-fifo = {fifo['sleeping']}\n"
            f"stats = {run}/stats-%c.sock\n"
            f"wsgi-file = {app}\n"
            "protocol = http\n"
            "processes = 1\n"
        )
        inst = uzerg.start(["--ini", str(home / "app.ini")], wait_workers=1)
        stats = run / f"stats-{version}.sock"

        def accepting() -> bool:
            try:  # the socket file exists a moment before the master listens on it
                workers = read_stats(str(stats))["workers"]
            except OSError:
                return False
            return all(w["accepting"] == 1 for w in workers)

        wait_until(accepting, 20, "accepting")
        return inst

    def deploy(version: str) -> Instance:
        inst = release(version)
        if fifo["sleeping"].exists():
            _write_fifo(fifo["sleeping"], "q")
            wait_until(lambda: not fifo["sleeping"].exists(), 20, "the sleeping one gone")
        if fifo["running"].exists():
            _write_fifo(fifo["running"], "2p")
            # the old master opens sleeping.fifo when it reads "2": wait for it, as the script
            # would before its next step
            wait_until(fifo["sleeping"].exists, 20, "the old release on sleeping.fifo")
        _write_fifo(fifo["new"], "1")
        # serving says nothing about the fifo: wait until it has moved to running.fifo, which
        # the next step writes to
        inst.wait_for_log(f"active master fifo is now {fifo['running']}")
        return inst

    loop = TimedLoop(f"127.0.0.1:{port}")
    try:
        v1 = deploy("v1")
        loop.wait_only("v1")
        deploy("v2")
        loop.wait_only("v2")
        v3 = deploy("v3")
        loop.wait_only("v3")
        assert v1.wait_exit(30) == 0
        # the rollback of the script's comment
        wait_until(fifo["sleeping"].exists, 20, "v2 on sleeping.fifo")
        _write_fifo(fifo["sleeping"], "0p")
        _write_fifo(fifo["running"], "q")
        assert v3.wait_exit(30) == 0
        wait_until(lambda: not fifo["running"].exists(), 20, "running.fifo removed")
        _write_fifo(fifo["new"], "1")
        loop.wait_only("v2")
        wait_until(fifo["running"].exists, 20, "v2 on running.fifo")
    finally:
        loop.stop()
    assert loop.errors == []
    assert {body.split(" ")[0] for _, _, body in loop.answers} == {"v1", "v2", "v3"}


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("uwsgi") is None, reason="the uwsgi binary is not installed")
def test_takeover_from_a_real_uwsgi_zerg_and_rollback(uzerg: InstanceStarter, start_uwsgi: Any,
                                                      tmp_path: Path) -> None:
    """The version in service may be a real uWSGI zerg: it pauses on SIGTSTP as uzerg does."""
    port = free_port()
    pool = _start_pool(uzerg, tmp_path, port)
    pidfile = tmp_path / "app.pid"
    app = write_version_app(tmp_path / "app_uwsgi.py", "uwsgi")
    old = start_uwsgi(["--zerg", pool, "--protocol", "http", "--wsgi-file", str(app),
                       "--processes", "2", "--pidfile", str(pidfile)],
                      socket_address=f"127.0.0.1:{port}")
    old.wait_for_log("spawned uWSGI worker 2")
    loop = TimedLoop(f"127.0.0.1:{port}")
    try:
        loop.wait_only("uwsgi")
        _deploy(uzerg, tmp_path, pool, "http", "v2")
        old.wait_for_log("*** PAUSE")
        loop.wait_only("v2")
        result = subprocess.run([sys.executable, "-m", "uzerg", "--rollback", str(pidfile)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        loop.wait_only("uwsgi")
    finally:
        loop.stop()
    assert loop.errors == []
    assert _pid_in(pidfile) == old.pid
