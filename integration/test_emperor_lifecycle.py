"""The Emperor: vassals started from new files, reloaded gracefully on touch, stopped on
removal, respawned when they die (throttled while never loyal, killed without heartbeats),
all stopped with the Emperor; a bad vassal file or [zerg] stanza is one line naming the file
while the Emperor and the other vassals go on."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import psutil
from support.clients import http_get
from support.emperor import (
    emperor_stats,
    start_emperor,
    touch,
    vassals_named,
    wait_vassal_pid,
)
from support.processes import InstanceStarter, free_port, wait_until, write_app


def vassal_text(app: Path, port: int, *extra: str) -> str:
    lines = ["[uwsgi]", f"http-socket = 127.0.0.1:{port}", f"wsgi-file = {app}", "master = true",
             "processes = 1", *extra]
    return "\n".join(lines) + "\n"


def answers(port: int) -> str:
    status, body = http_get(f"127.0.0.1:{port}")
    assert status == 200
    return body.decode()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_vassal_lifecycle_new_touch_remove_respawn_and_stop(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py", body="one")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    port = free_port()
    emperor, stats = start_emperor(uzerg, vassals)
    # a new file starts a vassal
    (vassals / "one.ini").write_text(vassal_text(app, port))
    pid = wait_vassal_pid(stats, "one.ini")
    wait_until(lambda: not refused(port), 20, "the vassal serving")
    first_worker = answers(port).split()[1]
    document = emperor_stats(stats)
    assert document["emperor"] == [str(vassals)]
    assert {"version", "pid", "throttle_level", "vassals", "blacklist"} <= set(document)
    assert {"id", "pid", "loyal", "ready", "zerg", "respawns", "last_mod"} <= set(
        document["vassals"][0])
    wait_until(lambda: vassals_named(stats, "one.ini")[0]["loyal"], 10, "loyal")
    # touch: graceful reload, same master, new worker, no refused connection
    touch(vassals / "one.ini")
    emperor.wait_for_log("reload the uwsgi instance one.ini")
    wait_until(lambda: answers(port).split()[1] != first_worker, 20, "a fresh worker")
    assert vassals_named(stats, "one.ini")[0]["pid"] == pid
    assert vassals_named(stats, "one.ini")[0]["respawns"] == 1
    # SIGHUP reloads every vassal
    emperor.send(signal.SIGHUP)
    emperor.wait_for_log(f"reload the uwsgi instance one.ini (pid: {pid}): SIGHUP")
    wait_until(lambda: vassals_named(stats, "one.ini")[0]["respawns"] == 2, 10, "reloaded")
    # a vassal that dies is respawned (it was loyal: at once)
    os.kill(pid, signal.SIGKILL)
    emperor.wait_for_log("it was loyal: respawned at once")
    pid = wait_vassal_pid(stats, "one.ini", other_than=pid)
    wait_until(lambda: not refused(port), 20, "the respawned vassal serving")
    # removing the file stops it
    (vassals / "one.ini").unlink()
    emperor.wait_for_log("removed uwsgi instance one.ini")
    wait_until(lambda: not psutil.pid_exists(pid), 10, "the vassal gone")
    assert refused(port)
    # stopping the Emperor stops its vassals
    (vassals / "two.ini").write_text(vassal_text(app, port))
    pid = wait_vassal_pid(stats, "two.ini")
    uzerg.track(emperor)
    assert emperor.stop(signal.SIGTERM) == 0
    assert "RAGNAROK EVOKED" in emperor.log_text()
    assert not psutil.pid_exists(pid)
    assert refused(port)


def test_bad_vassal_file_is_one_line_and_the_others_keep_running(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    good, bad = free_port(), free_port()
    (vassals / "good.ini").write_text(vassal_text(app, good))
    (vassals / "bad.ini").write_text(vassal_text(app, bad, "protocol = gopher"))
    pidfile = tmp_path / "emperor.pid"
    emperor, stats = start_emperor(uzerg, vassals, "--emperor-pidfile", str(pidfile))
    assert pidfile.read_text().strip() == str(emperor.pid)
    line = emperor.wait_for_log("vassal bad.ini not started")
    assert ("bad.ini:6: protocol: unsupported protocol (uzerg speaks uwsgi and http): gopher"
            in line)
    wait_vassal_pid(stats, "good.ini")
    wait_until(lambda: not refused(good), 20, "the good vassal serving")
    # fixed: started at the next scan; the Emperor never stopped
    (vassals / "bad.ini").write_text(vassal_text(app, bad))
    touch(vassals / "bad.ini")
    wait_vassal_pid(stats, "bad.ini")
    wait_until(lambda: not refused(bad), 20, "the fixed vassal serving")
    assert answers(good)
    assert emperor.process.poll() is None


def test_failing_vassal_is_throttled_and_a_silent_one_killed(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    try:
        emperor, stats = start_emperor(uzerg, vassals, "--emperor-throttle", "300",
                                       "--emperor-required-heartbeat", "2")
        # cannot bind: dies before it is loyal, again and again, later and later
        (vassals / "fail.ini").write_text(vassal_text(app, taken))
        emperor.wait_for_log("throttled 300 ms", 20)
        emperor.wait_for_log("throttled 600 ms", 20)
        blacklist = emperor_stats(stats)["blacklist"]
        assert blacklist and blacklist[0]["id"] == "fail.ini"
        (vassals / "fail.ini").unlink()
        # heartbeat: a vassal that stops sending them is killed and respawned
        port = free_port()
        (vassals / "beat.ini").write_text(vassal_text(app, port, "heartbeat = 1"))
        pid = wait_vassal_pid(stats, "beat.ini")
        wait_until(lambda: vassals_named(stats, "beat.ini")[0]["last_heartbeat"], 10,
                   "a heartbeat")
        os.kill(pid, signal.SIGSTOP)
        emperor.wait_for_log("vassal beat.ini sent no heartbeat in last 2 seconds", 20)
        wait_vassal_pid(stats, "beat.ini", other_than=pid)
        uzerg.track(emperor)
    finally:
        busy.close()


def test_vassal_set_and_vassals_include(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    port = free_port()
    extra = tmp_path / "extra.ini"
    extra.write_text(f"[uwsgi]\nstats = {tmp_path}/%n.stats\n")
    (vassals / "site.ini").write_text(vassal_text(app, port, "logto = %d%n.log")
                                      .replace("processes = 1\n", ""))
    emperor, stats = start_emperor(uzerg, vassals, "--vassal-set", "processes=3",
                                   "--vassals-include", str(extra))
    pid = wait_vassal_pid(stats, "site.ini")
    wait_until(lambda: len(psutil.Process(pid).children()) == 3, 20, "3 workers (vassal-set)")
    # %n in the included file is the included file's name, as in uWSGI
    wait_until(lambda: (tmp_path / "extra.stats").exists(), 20, "the included stats socket")
    # and %d%n in the vassal file are the vassal file's directory and name
    wait_until(lambda: (vassals / "site.log").exists(), 20, "the vassal's own log file")
    uzerg.track(emperor)


def test_tyrant_runs_each_vassal_as_the_owner_of_its_file(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    """The vassal program is a wrapper script that records its ids (the test's Python lives
    under /root, which another user cannot run)."""
    if os.getuid() != 0:
        import pytest

        pytest.skip("emperor-tyrant needs root")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    vassals.chmod(0o777)  # reached by the vassal through its cwd only
    wrapper = vassals / "record-ids"
    wrapper.write_text('#!/bin/sh\necho "$(id -u) $(id -g) $(id -G) $2" > ids-$$\n'
                       "exec sleep 60\n")
    wrapper.chmod(0o755)
    vassal = vassals / "nobody.ini"
    vassal.write_text("[uwsgi]\n")
    os.chown(vassal, 65534, 65534)
    (vassals / "root.ini").write_text("[uwsgi]\n")
    emperor, stats = start_emperor(uzerg, vassals, "--emperor-tyrant", "--emperor-wrapper",
                                   "./record-ids")
    emperor.wait_for_log("[emperor-tyrant] invalid permissions for vassal root.ini")
    records = wait_until(lambda: list(vassals.glob("ids-*")), 20, "the vassal's ids")
    assert records[0].read_text().split() == ["65534", "65534", "65534", "nobody.ini"]
    assert emperor_stats(stats)["emperor_tyrant"] == 1
    assert [v["uid"] for v in emperor_stats(stats)["vassals"]] == [65534]
    uzerg.track(emperor)
