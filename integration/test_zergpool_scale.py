"""Pools at scale: one pool of 300 unix sockets (more than one descriptor message), 20 pools of
10 TCP sockets attached by one zerg, and 30 zergs attached to one pool at once. Every socket and
every zerg serves; attach times are measured and printed (shown even without ``-s``).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.clients import uwsgi_request
from support.processes import Instance, InstanceStarter, wait_until

from uzerg.zerg import attach_to_zerg_servers

BOUND = re.compile(r"zergpool (\S+) bound to (?:TCP|UNIX) socket (\S+) \(fd: \d+\)")
# /slow marks itself in flight (a file named after the worker's pid) and waits for "release"
APP = '''
import os, time

HERE = os.path.dirname(os.path.abspath(__file__))

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open(os.path.join(HERE, "inflight-%d" % os.getpid()), "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(HERE, "release")) and time.monotonic() < deadline:
            time.sleep(0.01)
    body = ("pid %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[zergpool attach] {text}")


def write_scale_app(tmp_path: Path) -> Path:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    path = app_dir / "app.py"
    path.write_text(APP)
    return path


def handshake_ms(pool_addresses: list[str], expected: int) -> float:
    """Time of one uzerg-client attach to the pools from this process (sockets closed)."""
    started = time.perf_counter()
    received = attach_to_zerg_servers(pool_addresses, 10.0)
    elapsed = (time.perf_counter() - started) * 1000
    try:
        assert len(received) == expected
    finally:
        for item in received:
            item.sock.close()
    return elapsed


def start_timed_zerg(uzerg: InstanceStarter, args: list[str]) -> tuple[Instance, float]:
    """A zerg and the wall time from its launch to ``zerg sockets attached`` in its log."""
    started = time.monotonic()
    zerg = uzerg.start(args, wait_workers=None)
    zerg.wait_for_log("zerg sockets attached", timeout=60)
    elapsed = (time.monotonic() - started) * 1000
    zerg.wait_ready(2, timeout=60)
    uzerg.track(zerg)
    return zerg, elapsed


def serve_all(addresses: list[str]) -> set[int]:
    """One request to every address (8 at a time); the answering pids."""
    def one(address: str) -> int:
        response = uwsgi_request(address, "/")
        assert response.startswith(b"HTTP/1.1 200"), (address, response[:200])
        return int(response.split()[-1])
    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(one, addresses))


def test_one_pool_of_300_unix_sockets(
    uzerg: InstanceStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_scale_app(tmp_path)
    (tmp_path / "s").mkdir()
    sockets = [str(tmp_path / "s" / f"{i}") for i in range(300)]
    pool_address = str(tmp_path / "p.pool")
    pool = uzerg.start(["--master", "--zergpool", f"{pool_address}:{','.join(sockets)}"],
                       wait_workers=None)
    pool.wait_for_log("300 sockets are sent in several messages")
    assert len(BOUND.findall(pool.log_text())) == 300
    handshake = handshake_ms([pool_address], 300)
    zerg, attach = start_timed_zerg(uzerg, ["--master", "--zerg", pool_address,
                                            "--wsgi-file", str(app), "--processes", "2"])
    log = zerg.log_text()
    for index in (0, 252, 253, 299):  # both sides of the first message's 253 descriptors
        assert f"uwsgi zerg socket {index} attached to UNIX address {sockets[index]} " in log
    assert "uwsgi zerg socket 300 " not in log
    assert serve_all(sockets) <= set(zerg.worker_pids())
    report(capsys, f"1 pool x 300 unix sockets: handshake {handshake:.1f} ms, "
                   f"zerg launch -> attached {attach:.0f} ms")


def test_twenty_pools_of_ten_tcp_sockets_attached_by_one_zerg(
    uzerg: InstanceStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_scale_app(tmp_path)
    pools = [str(tmp_path / f"p{i}.pool") for i in range(20)]
    ini = "[uwsgi]\nmaster = true\n" + "".join(
        f"zergpool = {address}:{','.join(['127.0.0.1:0'] * 10)}\n" for address in pools)
    (tmp_path / "pools.ini").write_text(ini)
    pool = uzerg.start(["--ini", "pools.ini"], wait_workers=None)
    pool.wait_for_log(f"*** Zerg server enabled on {pools[-1]} ***")
    bound = BOUND.findall(pool.log_text())
    assert len({sock for _, sock in bound}) == 200
    handshake = handshake_ms(pools, 200)
    args = ["--master", "--wsgi-file", str(app), "--processes", "2"]
    for address in pools:
        args += ["--zerg", address]
    zerg, attach = start_timed_zerg(uzerg, args)
    log = zerg.log_text()
    for index, (_, sock) in enumerate(bound):  # pool order, then each pool's own order
        assert f"uwsgi zerg socket {index} attached to INET address {sock} " in log
    assert serve_all([sock for _, sock in bound]) <= set(zerg.worker_pids())
    report(capsys, f"20 pools x 10 TCP sockets (--zerg x20): handshake {handshake:.1f} ms, "
                   f"zerg launch -> attached {attach:.0f} ms")


def test_thirty_zergs_attached_to_one_pool_at_once(
    uzerg: InstanceStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = write_scale_app(tmp_path)
    pool_address = str(tmp_path / "p.pool")
    pool = uzerg.start(["--master", "--zergpool", f"{pool_address}:127.0.0.1:0"],
                       wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    tcp = BOUND.findall(pool.log_text())[0][1]

    started = time.monotonic()
    zergs = [uzerg.start(["--master", "--zerg", pool_address, "--wsgi-file", str(app),
                          "--processes", "1"], wait_workers=None) for _ in range(30)]
    for zerg in zergs:
        zerg.wait_for_log("zerg sockets attached", timeout=90)
    attach = time.monotonic() - started
    pool.wait_for_log("sockets handed to zerg pid", count=30)
    handed = {int(pid) for pid in re.findall(r"handed to zerg pid (\d+) ", pool.log_text())}
    assert handed == {zerg.pid for zerg in zergs}
    workers: set[int] = set()
    for zerg in zergs:
        zerg.wait_ready(1, timeout=90)
        uzerg.track(zerg)
        workers.update(zerg.worker_pids())
    assert len(workers) == 30

    # 30 requests that all stay in flight together: each of the 30 workers must hold one.
    app_dir = app.parent
    with ThreadPoolExecutor(30) as clients:
        answers = [clients.submit(uwsgi_request, tcp, "/slow", timeout=60) for _ in range(30)]
        try:
            wait_until(lambda: len(list(app_dir.glob("inflight-*"))) == 30, 60,
                       "30 requests in flight at once")
        finally:
            (app_dir / "release").touch()
        responses = [answer.result() for answer in answers]
    assert all(r.startswith(b"HTTP/1.1 200") for r in responses)
    assert {int(r.split()[-1]) for r in responses} == workers
    report(capsys, f"30 zergs started at once on 1 pool: all attached {attach * 1000:.0f} ms "
                   "after the first launch")
