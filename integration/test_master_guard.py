"""Requests to the master's own services never take the instance down.

Each test sends a real input that used to kill the master (or hold it) and checks that the
master is alive, logged one specific line, and still answers a stats request and HTTP:
- the master fifo: junk, non-UTF-8 bytes, latin-1 "digits" (b"\\xb2" raised ValueError in
  int()), ``l`` once the log file's directory has been moved away (StartupError);
- the stats servers: a Prometheus scrape when a socket's path is not UTF-8
  (UnicodeEncodeError), a request once the working directory has been removed, a client
  that sends a byte at a time (it held the master, workers' respawns included, for as long
  as it liked), junk, huge and half-closed requests;
- ``hook-touch`` with an argument the action does not foresee (``putenv:=x``: OSError);
  and an ``exit:`` hook still ends the instance.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

from support.activator import Activator
from support.clients import connect_to, http_get, read_all, read_stats
from support.processes import Instance, InstanceStarter, wait_until

FIFO_COMMANDS = b"rRwWcqQp+-ls"


def assert_serving(inst: Instance, stats: str) -> None:
    """The master is alive, answers a stats request, and its workers answer HTTP."""
    assert inst.process.poll() is None, inst.log_text()[-3000:]
    assert read_stats(stats)["pid"] == inst.pid
    assert http_get(inst.address(0))[0] == 200


def start(uzerg: InstanceStarter, tmp_path: Path, app_file: Path, *extra: str) -> tuple[
        Instance, str]:
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--stats", stats, *extra])
    return inst, stats


def write_fifo(path: Path, data: bytes) -> None:
    with open(path, "wb") as fifo:
        fifo.write(data)


# -- the master fifo ---------------------------------------------------------------------------

def test_fifo_junk_and_latin1_digits(uzerg: InstanceStarter, tmp_path: Path,
                                     app_file: Path) -> None:
    fifo = tmp_path / "fifo"
    inst, stats = start(uzerg, tmp_path, app_file, "--master-fifo", str(fifo))
    inst.wait_for_log("active master fifo is now")
    # "²³¹" are str.isdigit() in latin-1: int("²") raised ValueError and the master died
    write_fifo(fifo, b"\xb2\xb3\xb9")
    inst.wait_for_log("[uwsgi-fifo] unknown command: '²'")
    inst.wait_for_log("[uwsgi-fifo] unknown command: '¹'")
    junk = bytes(b for b in random.Random(7).randbytes(6000) if b not in FIFO_COMMANDS)
    write_fifo(fifo, junk + b"\xff\x00\n")
    mark = inst.mark()
    write_fifo(fifo, b"s")  # still obeyed after all that
    inst.wait_for_log("workers total requests", since=mark)
    assert "Traceback" not in inst.log_text()
    assert_serving(inst, stats)


def test_fifo_reopen_when_the_log_directory_has_moved(uzerg: InstanceStarter, tmp_path: Path,
                                                      app_file: Path) -> None:
    fifo, logs = tmp_path / "fifo", tmp_path / "logs"
    logs.mkdir()
    stats = str(tmp_path / "stats.sock")
    started = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                           "--stats", stats, "--master-fifo", str(fifo),
                           "--logto", str(logs / "uzerg.log")], wait_workers=None)
    inst = Instance(started.process, logs / "uzerg.log")
    inst.wait_ready(1)
    inst.wait_for_log("active master fifo is now")
    logs.rename(tmp_path / "logs.old")  # a rotation moved the whole directory
    inst = Instance(started.process, tmp_path / "logs.old" / "uzerg.log")
    write_fifo(fifo, b"l")
    line = inst.wait_for_log("unable to open log file")
    assert line == (f"unable to open log file {logs / 'uzerg.log'}: No such file or directory: "
                    "still logging to the file opened before")
    mark = inst.mark()
    write_fifo(fifo, b"s")
    inst.wait_for_log("workers total requests", since=mark)  # in the file it kept
    assert_serving(inst, stats)


# -- the stats servers ---------------------------------------------------------------------------

def test_prometheus_scrape_with_an_undecodable_socket_path(uzerg: InstanceStarter,
                                                           tmp_path: Path,
                                                           app_file: Path) -> None:
    """A unix socket systemd passes at a path that is not UTF-8: the scrape raised
    UnicodeEncodeError in the master."""
    path = os.fsencode(tmp_path) + b"/app-\xff.sock"
    activator = Activator()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    activator.sockets.append(("odd", sock))
    stats = str(tmp_path / "stats.sock")
    try:
        inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--stats", stats, "--stats-prometheus", "127.0.0.1:0"],
                           prefix=activator.prefix(), pass_fds=activator.pass_fds(),
                           env=activator.environ())
        line = inst.wait_for_log("*** Prometheus metrics enabled on")
        metrics = line.split(" on ", 1)[1].split()[0]
        for _ in range(2):
            status, body = http_get(metrics, "/metrics")
            assert status == 200
            text = body.decode("utf-8")  # valid UTF-8
            assert f'name="{os.fsdecode(tmp_path)}/app-\\\\xff.sock",proto="uwsgi"' in text
        assert "Traceback" not in inst.log_text()
        assert_serving(inst, stats)
    finally:
        activator.close()


def test_stats_once_the_working_directory_is_gone(uzerg: InstanceStarter, tmp_path: Path,
                                                  app_file: Path) -> None:
    """A release directory deleted under a running instance: getcwd() fails; the stats
    request got an empty answer (logged as "client went away"). uWSGI shows the start-up one."""
    release = tmp_path / "release"
    release.mkdir()
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--stats", stats], cwd=release)
    assert read_stats(stats)["cwd"] == str(release)
    shutil.rmtree(release)
    assert read_stats(stats)["cwd"] == str(release)
    assert "went away" not in inst.log_text()
    assert_serving(inst, stats)


def test_a_client_sending_a_byte_at_a_time_does_not_hold_the_master(
        uzerg: InstanceStarter, tmp_path: Path, app_file: Path) -> None:
    inst, stats = start(uzerg, tmp_path, app_file, "--stats-prometheus", "127.0.0.1:0")
    line = inst.wait_for_log("*** Prometheus metrics enabled on")
    metrics = line.split(" on ", 1)[1].split()[0]
    sent = [0]
    closed = threading.Event()
    stop = threading.Event()

    def dribble() -> None:
        with connect_to(metrics, 30) as slow:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200:
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    break
                sent[0] += 1
                if stop.wait(0.2):
                    return
            with contextlib.suppress(OSError):
                read_all(slow)
            closed.set()

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        wait_until(lambda: sent[0] >= 3, 10, "the slow client to start")
        # before: the master read on, 2 s per byte, for as long as the client kept sending
        # (~45 s here), and answered nobody else meanwhile
        began = time.monotonic()
        assert read_stats(stats, timeout=15)["pid"] == inst.pid
        assert http_get(metrics, "/metrics", timeout=15)[0] == 200
        assert time.monotonic() - began < 15
        assert closed.wait(15), "the slow client was never cut off"
        inst.wait_for_log("went away: timed out")
        assert_serving(inst, stats)
    finally:
        stop.set()
        thread.join(30)


def test_junk_huge_and_half_closed_stats_requests(uzerg: InstanceStarter, tmp_path: Path,
                                                  app_file: Path) -> None:
    inst, stats = start(uzerg, tmp_path, app_file, "--stats-prometheus", "127.0.0.1:0")
    line = inst.wait_for_log("*** Prometheus metrics enabled on")
    metrics = line.split(" on ", 1)[1].split()[0]
    rng = random.Random(11)
    requests = [
        b"\xff\xfe\x00junk\r\n\r\n", b"GET", b"GET /?format=prometheus&\xff HTTP/1.1\r\n\r\n",
        b" " * 70_000, b"GET / HTTP/1.1\r\n" + b"X: " + b"\x80" * 200_000 + b"\r\n\r\n",
        rng.randbytes(5000), b"",
    ]
    for address in (stats, metrics):
        for data in requests:
            for half_close in (False, True):
                with connect_to(address, 10) as peer:
                    with contextlib.suppress(OSError):
                        peer.sendall(data)
                        if half_close:
                            peer.shutdown(socket.SHUT_WR)
                        read_all(peer)
        with connect_to(address, 10) as peer:  # connects and leaves at once
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert "Traceback" not in inst.log_text()
    assert http_get(metrics, "/metrics")[0] == 200
    assert_serving(inst, stats)


# -- hooks ---------------------------------------------------------------------------------------

def test_hook_touch_with_an_argument_the_action_does_not_foresee(
        uzerg: InstanceStarter, tmp_path: Path, app_file: Path) -> None:
    bad, spaced = tmp_path / "bad", tmp_path / "spaced"
    bad.touch()
    spaced.touch()
    inst, stats = start(uzerg, tmp_path, app_file, "--hook-touch", f"{bad} putenv:=x",
                        "--hook-touch", f"{spaced} print :printed by hook-touch")
    wait_until(lambda: time.time() - bad.stat().st_mtime > 1.1, 5, "a newer mtime possible")
    os.utime(bad)
    os.utime(spaced)
    assert inst.wait_for_log("hook-touch = putenv:=x failed") == (
        "hook-touch = putenv:=x failed (touch): OSError: [Errno 22] Invalid argument")
    inst.wait_for_log("printed by hook-touch")  # "print " is the print action, as parsed
    assert "Traceback" not in inst.log_text()
    assert_serving(inst, stats)


def test_an_exit_hook_in_the_loop_still_ends_the_instance(
        uzerg: InstanceStarter, tmp_path: Path, app_file: Path) -> None:
    trigger = tmp_path / "trigger"
    trigger.touch()
    inst, _stats = start(uzerg, tmp_path, app_file, "--hook-touch", f"{trigger} exit:42")
    wait_until(lambda: time.time() - trigger.stat().st_mtime > 1.1, 5, "a newer mtime possible")
    os.utime(trigger)
    assert inst.wait_exit(20) == 42
    assert "hook exit: 42" in inst.log_text()
