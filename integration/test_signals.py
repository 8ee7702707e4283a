"""Signals to the master (SPEC §6): reload, shutdown, pause, respawn, worker count."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from support.clients import http_get, read_stats
from support.processes import InstanceStarter, wait_until, write_app


class RequestLoop:
    """Requests in a loop from a thread until stopped (bounded); records every outcome."""

    def __init__(self, address: str, limit: int = 20000) -> None:
        self.address = address
        self.limit = limit
        self.bodies: list[bytes] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set() and len(self.bodies) + len(self.errors) < self.limit:
            try:
                status, body = http_get(self.address, timeout=30)
                if status == 200:
                    self.bodies.append(body)
                else:
                    self.errors.append(f"status {status}")
            except OSError as exc:
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self.done.set()
        self.thread.join(60)


def test_hup_reloads_fresh_code_without_losing_a_request(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    app = write_app(tmp_path / "app.py", body="old")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--processes", "2", "--master"], wait_workers=2)
    address = inst.address(0)
    old_pids = inst.worker_pids(2)
    loop = RequestLoop(address)
    try:
        wait_until(lambda: len(loop.bodies) > 20, 20, "requests before the reload")
        write_app(app, body="new")
        inst.send(signal.SIGHUP)
        inst.wait_for_log("gracefully (RE)spawned uWSGI master process")
        wait_until(lambda: any(b.startswith(b"new ") for b in loop.bodies[-5:]), 20,
                   "answers of the new code")
        count = len(loop.bodies)
        wait_until(lambda: len(loop.bodies) > count + 20, 20, "requests after the reload")
    finally:
        loop.stop()
    assert loop.errors == []
    new_pids = inst.worker_pids(2)
    assert not set(new_pids) & set(old_pids)
    log = inst.log_text()
    assert "binary reloading uWSGI..." in log
    assert log.count("buried after") >= 2  # the old workers exited after the new ones came
    uzerg.track(inst)
    assert inst.stop() == 0


def test_term_finishes_the_request_in_hand(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--stats", str(app_file.parent / "stats.sock")])
    address = inst.address(0)
    result: list[tuple[int, bytes]] = []
    client = threading.Thread(target=lambda: result.append(http_get(address, "/slow")))
    client.start()
    wait_until(lambda: read_stats(str(app_file.parent / "stats.sock"))["workers"][0]["status"]
               == "busy", 10, "the worker to be busy")
    inst.send(signal.SIGTERM)
    inst.wait_for_log("Gracefully killing worker 1")
    (app_file.parent / "release").write_text("")
    client.join(20)
    assert result and result[0][0] == 200 and result[0][1].startswith(b"hello ")
    assert inst.wait_exit() == 0


def test_killed_worker_is_respawned(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--processes", "2"], wait_workers=2)
    address = inst.address(0)
    loop = RequestLoop(address)
    try:
        wait_until(lambda: len(loop.bodies) > 10, 20, "requests")
        victim = inst.worker_pids(2)[0]
        os.kill(victim, signal.SIGKILL)
        line = inst.wait_for_log(f"(pid: {victim}) died, killed by signal 9")
        assert line.startswith("DAMN ! worker ") and line.endswith(":( trying respawn ...")
        inst.wait_for_log("Respawned uWSGI worker")
        wait_until(lambda: victim not in inst.worker_pids() and len(inst.worker_pids()) == 2,
                   10, "the new worker")
        count = len(loop.bodies)
        wait_until(lambda: len(loop.bodies) > count + 10, 20, "requests after the respawn")
    finally:
        loop.stop()
    # a connection the dead worker held may be cut; nothing else fails
    assert len(loop.errors) <= 1
    assert http_get(address)[0] == 200


def test_tstp_pauses_and_resumes(uzerg: InstanceStarter, app_file: Path) -> None:
    stats = str(app_file.parent / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--processes", "2", "--stats", stats], wait_workers=2)
    address = inst.address(0)
    inst.send(signal.SIGTSTP)
    inst.wait_for_log("*** PAUSE (press start to resume")
    inst.wait_for_log("suspended ***", count=2)
    document = read_stats(stats)
    assert [w["accepting"] for w in document["workers"]] == [0, 0]
    assert {w["status"] for w in document["workers"]} == {"pause"}
    result: list[tuple[int, bytes]] = []
    client = threading.Thread(target=lambda: result.append(http_get(address)))
    client.start()
    # the request waits in the listen queue, unserved, while the instance is paused
    wait_until(lambda: read_stats(stats)["listen_queue"] == 1, 10, "a queued connection")
    assert not result
    inst.send(signal.SIGTSTP)
    inst.wait_for_log("*** (SIGTSTP received) resuming workers ***")
    client.join(10)
    assert result and result[0][0] == 200
    wait_until(lambda: [w["accepting"] for w in read_stats(stats)["workers"]] == [1, 1], 10,
               "both workers accepting again")


def test_ttin_ttou_change_the_worker_count(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    inst.send(signal.SIGTTIN)
    inst.worker_pids(2)
    inst.send(signal.SIGTTIN)
    three = inst.worker_pids(3)
    inst.send(signal.SIGTTOU)
    two = inst.worker_pids(2)
    assert set(two) < set(three)
    inst.wait_for_log("worker 3 buried after")
    assert http_get(inst.address(0))[0] == 200


def test_usr1_writes_worker_statistics(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    for _ in range(3):
        http_get(inst.address(0))

    # a worker counts a request once its response is sent, so the client can be faster than the
    # count: ask again until the statistics have caught up
    def statistics_show_three() -> bool:
        inst.send(signal.SIGUSR1)
        try:
            inst.wait_for_log("workers total requests: 3", timeout=1)
        except AssertionError:
            return False
        return True

    wait_until(statistics_show_three, 15, "USR1 statistics with 3 requests")
    inst.wait_for_log("worker 1 app 0 [] requests: 3 exceptions: 0")


def test_workers_leave_when_the_master_dies(uzerg: InstanceStarter, app_file: Path) -> None:
    import psutil

    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--processes", "2"], wait_workers=2)
    workers = inst.worker_pids(2)
    loop = RequestLoop(inst.address(0))
    try:
        wait_until(lambda: len(loop.bodies) > 10, 20, "requests")
        os.kill(inst.pid, signal.SIGKILL)

        def gone(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
        # busy or idle, an orphaned worker notices within about a second
        wait_until(lambda: all(gone(pid) for pid in workers), 15, "the orphaned workers")
    finally:
        loop.stop()
    assert "the master disconnected from this worker" in inst.log_text()


def test_signal_during_app_loading_waits_for_the_master(uzerg: InstanceStarter,
                                                        tmp_path: Path) -> None:
    release = tmp_path / "release"
    app = tmp_path / "slowload.py"
    app.write_text(
        "import os, time\n"
        f"deadline = time.monotonic() + 20\n"
        f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'loaded']\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app)],
                       wait_workers=None)
    inst.address(0)  # bound: the app is loading now
    inst.send(signal.SIGHUP)
    inst.send(signal.SIGTERM)
    release.write_text("")
    assert inst.wait_exit() == 0  # the TERM was obeyed, not fatal half-way
    assert "goodbye to uWSGI." in inst.log_text()


def test_reload_with_a_broken_configuration_keeps_running(
    uzerg: InstanceStarter, app_file: Path, tmp_path: Path
) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {app_file}\n")
    inst = uzerg.start(["--ini", "site.ini"])
    workers = inst.worker_pids(1)
    ini.write_text(ini.read_text() + "chmod-socket = rw\n")
    inst.send(signal.SIGHUP)
    line = inst.wait_for_log("reload aborted, the instance keeps running: ")
    assert "site.ini:4: chmod-socket" in line
    assert "binary reloading" not in inst.log_text()
    assert inst.worker_pids(1) == workers
    assert http_get(inst.address(0))[0] == 200


def test_a_worker_stopped_right_after_its_fork_stops(uzerg: InstanceStarter,
                                                     app_file: Path) -> None:
    # TTIN then TTOU in one batch: the new worker gets SIGTERM microseconds after fork(),
    # before it has installed its handlers; it must still stop (not wait for the 60 s mercy)
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    for _ in range(3):
        mark = inst.mark()
        os.kill(inst.pid, signal.SIGTTIN)
        os.kill(inst.pid, signal.SIGTTOU)
        inst.wait_for_log("worker 2 buried after", since=mark, timeout=10)
    inst.worker_pids(1)
    assert "NO MERCY" not in inst.log_text()


def test_term_while_the_reloaded_master_starts_is_obeyed_gracefully(
    uzerg: InstanceStarter, app_file: Path
) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    inst.send(signal.SIGHUP)
    inst.wait_for_log("binary reloading uWSGI...")
    inst.send(signal.SIGTERM)  # the new program is starting: Python, imports, config
    assert inst.wait_exit() == 0  # not killed by the default action of SIGTERM
    assert "goodbye to uWSGI." in inst.log_text()
