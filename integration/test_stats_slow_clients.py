"""Slow stats clients never hold the master's loop (uzerg.processes.stats_clients).

The stats server used to serve each client in turn with blocking calls of up to 2 s: 64
clients that send a byte every 0.3 s (or never read a large answer) held the master for
minutes: no respawn, no stats, no signals. Now each client is its own watch with its own
2 s deadline; meanwhile the master answers the other stats servers, the workers answer HTTP,
and a killed worker is respawned at once. At most 64 clients are held per server: beyond, the
newest is closed unanswered (logged once per episode).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import connect_to, dribbling, http_get, read_stats
from support.processes import Instance, InstanceStarter, wait_until

pytestmark = pytest.mark.timeout(90)

PROMPT = 1.5  # seconds: an answer while slow clients are held (the master is not blocked)


def start(uzerg: InstanceStarter, tmp_path: Path, app_file: Path,
          *extra: str) -> tuple[Instance, str]:
    """An instance with --stats-http (unix path, returned) and --stats-prometheus (TCP)."""
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--workers", "2", "--stats", stats, "--stats-http",
                        "--stats-prometheus", "127.0.0.1:0", *extra], wait_workers=2)
    return inst, stats


def metrics_address(inst: Instance) -> str:
    line = inst.wait_for_log("*** Prometheus metrics enabled on")
    return line.split(" on ", 1)[1].split()[0]


def timed(what: str, call: object) -> float:
    began = time.monotonic()
    assert callable(call)
    call()
    took = time.monotonic() - began
    assert took < PROMPT, f"{what} took {took:.2f} s"
    return took


def assert_master_responsive(inst: Instance, metrics: str) -> None:
    """While slow clients are held: another stats server, the app and a worker's respawn,
    each promptly."""
    timed("a Prometheus scrape", lambda: http_get(metrics, "/metrics", timeout=30)[0] == 200)
    timed("a request to the app", lambda: http_get(inst.address(0), timeout=30)[0] == 200)
    victim = inst.worker_pids(2)[0]
    os.kill(victim, signal.SIGKILL)
    began = time.monotonic()
    wait_until(lambda: (len(pids := inst.worker_pids()) == 2 and victim not in pids), 30,
               "the killed worker respawned")
    took = time.monotonic() - began
    # RESPAWN_INTERVAL (1 s) after the worker's spawn at most: it was spawned before
    assert took < PROMPT, f"the respawn took {took:.2f} s"


@contextlib.contextmanager
def dribbling_clients(address: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` clients that each send one byte of a request every 0.3 s, never its end."""
    clients = [connect_to(address, 30) for _ in range(count)]
    with dribbling(clients, b"G", every=0.3):
        yield clients


def stats_pid(address: str) -> int:
    """The master's pid, from a stats-http request."""
    status, body = http_get(address, timeout=10)
    assert status == 200
    return int(json.loads(body)["pid"])


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed it (EOF or reset), no answer sent."""
    sock.settimeout(30)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_eighty_dribbling_clients_do_not_hold_the_master(
        uzerg: InstanceStarter, tmp_path: Path, app_file: Path) -> None:
    inst, stats = start(uzerg, tmp_path, app_file)
    metrics = metrics_address(inst)
    mark = inst.mark()
    with dribbling_clients(stats, 80) as clients:
        # before: the master read each one for 2 s in turn (64 per wake-up: over 2 minutes)
        assert_master_responsive(inst, metrics)
        # 64 held, the 16 newest closed unanswered, logged once
        inst.wait_for_log("64 clients in hand, closing new ones", since=mark)
        # each held one dropped at its own deadline (2 s), logged as before
        inst.wait_for_log("went away: timed out", since=mark, count=64, timeout=30)
        assert all(closed_by_server(sock) for sock in clients)
    log = inst.log_text()[mark:]
    assert log.count("clients in hand") == 1
    assert log.count("went away: timed out") == 64
    assert "Traceback" not in log
    assert stats_pid(stats) == inst.pid  # and the server serves again


def test_clients_that_never_read_a_large_answer_do_not_hold_the_master(
        uzerg: InstanceStarter, tmp_path: Path, app_file: Path) -> None:
    # 2 workers x 1024 threads: each core is in the document (~480 KiB of JSON, more than a
    # unix socket's buffer takes: ~210 KiB)
    inst, stats = start(uzerg, tmp_path, app_file, "--threads", "1024")
    metrics = metrics_address(inst)
    with connect_to(stats, 30) as probe:
        probe.sendall(b"GET / HTTP/1.0\r\n\r\n")
        size = len(b"".join(iter(lambda: probe.recv(1 << 20), b"")))
    assert size > 400_000, size
    mark = inst.mark()
    readers = []
    try:
        for _ in range(10):
            sock = connect_to(stats, 30)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # and never reads
            readers.append(sock)
        # before: the master wrote to each one for 2 s in turn (20 s here)
        assert_master_responsive(inst, metrics)
        inst.wait_for_log("went away: timed out", since=mark, count=10, timeout=30)
    finally:
        for sock in readers:
            sock.close()
    log = inst.log_text()[mark:]
    assert log.count("went away: timed out") == 10
    assert "Traceback" not in log
    assert stats_pid(stats) == inst.pid


def test_a_plain_stats_socket_writes_the_document_and_closes(
        uzerg: InstanceStarter, tmp_path: Path, app_file: Path) -> None:
    """uWSGI's --stats without --stats-http: the JSON at once, no request read."""
    stats = str(tmp_path / "plain.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--stats", stats])
    for _ in range(3):
        with connect_to(stats, 10) as sock:  # sends nothing
            data = b"".join(iter(lambda s=sock: s.recv(1 << 20), b""))
        assert data.startswith(b"{") and b'"workers"' in data
    assert read_stats(stats)["pid"] == inst.pid


def test_the_emperor_serves_stats_clients_without_being_held(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    """The Emperor's stats server is the same: dribbling clients do not hold its loop; and
    once its working directory is removed, it shows the one it started in (as the master)."""
    release, vassals = tmp_path / "release", tmp_path / "vassals"
    release.mkdir()
    vassals.mkdir()
    stats = str(tmp_path / "emperor.stats")
    emperor = uzerg.start(["--emperor", str(vassals), "--emperor-stats", stats, "--stats-http"],
                          wait_workers=None, cwd=release)
    uzerg.track(emperor)
    emperor.wait_for_log("starting uWSGI Emperor")
    mark = emperor.mark()
    with dribbling_clients(stats, 10) as clients:
        # before: 2 s each in turn (20 s here)
        took = timed("the Emperor's stats", lambda: stats_pid(stats) == emperor.pid)
        assert took < PROMPT
        emperor.wait_for_log("went away: timed out", since=mark, count=10, timeout=30)
        assert all(closed_by_server(sock) for sock in clients)
    shutil.rmtree(release)
    status, body = http_get(stats, timeout=10)
    assert status == 200 and json.loads(body)["cwd"] == str(release)
    assert "Traceback" not in emperor.log_text()
    assert emperor.stop() == 0
