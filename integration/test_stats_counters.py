"""The counters that count what happened (uWSGI's meaning): a core's ``static_requests`` (files
sent by --static-map), ``read_errors`` (failed reads of request bodies, in the stats document and
as the request log's ``%(rerr)``); and the start-up lines when no app could be loaded."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from support.clients import http_get, read_stats
from support.processes import InstanceStarter, wait_until

READING_APP = '''
def application(environ, start_response):
    try:
        body = environ["wsgi.input"].read()
    except OSError:
        body = b"read failed"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def _core(stats: str) -> dict[str, int]:
    (worker,) = read_stats(stats)["workers"]
    return worker["cores"][0]


def test_static_requests_and_read_errors_count_what_happened(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    app = tmp_path / "reading.py"
    app.write_text(READING_APP)
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("static text")
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--static-map", f"/s={files}", "--stats", stats,
                        "--logformat", "uri=%(uri) status=%(status) rerr=%(rerr)"])
    address = inst.address(0)
    # the stats socket is bound by the master's service, not before the workers: poll for it
    wait_until(lambda: os.path.exists(stats), 10, "the stats socket")
    assert (_core(stats)["static_requests"], _core(stats)["read_errors"]) == (0, 0)

    assert http_get(address, "/s/a.txt") == (200, b"static text")
    assert http_get(address, "/app") == (200, b"")  # the app, no body: neither counter
    wait_until(lambda: _core(stats)["requests"] == 2, 10, "two requests counted")
    assert (_core(stats)["static_requests"], _core(stats)["read_errors"]) == (1, 0)

    # a client that sends 5 bytes of a 100-byte body, then closes its side
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(b"POST /truncated HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhello")
        client.shutdown(socket.SHUT_WR)
        client.recv(4096)  # the app's answer (it caught the OSError), or nothing
    wait_until(lambda: _core(stats)["requests"] == 3, 10, "the truncated request counted")
    assert (_core(stats)["static_requests"], _core(stats)["read_errors"]) == (1, 1)
    inst.wait_for_log("uri=/truncated status=200 rerr=1")
    assert "uri=/s/a.txt status=200 rerr=0" in inst.log_text()
    assert "uri=/app status=200 rerr=0" in inst.log_text()


def test_no_app_loaded_says_so_and_no_app_ready_line(uzerg: InstanceStarter,
                                                     tmp_path: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0",
                        "--wsgi-file", str(tmp_path / "missing.py")])
    inst.wait_for_log("*** no app loaded. going in full dynamic mode ***")
    assert "WSGI app 0" not in inst.log_text()
    assert http_get(inst.address(0))[0] == 500  # uWSGI's answer in full dynamic mode


def test_a_loaded_app_still_says_ready(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    assert "WSGI app 0 (mountpoint='') ready" in inst.log_text()
    assert "no app loaded" not in inst.log_text()


def test_a_cores_requests_tx_and_running_time_as_the_worker_counts_them(
    uzerg: InstanceStarter, app_file: Path, tmp_path: Path
) -> None:
    """The worker keeps its core's counters as ints and stores them per request (issue 13):
    the stats see each request, the bytes sent, the µs spent (the app sleeps 0.2 s), idle
    again after, and a respawned worker goes on from the slot's counts."""
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--processes", "1", "--stats", stats, "--max-requests", "3"])
    address = inst.address()
    for _ in range(2):
        assert http_get(address, "/slow?seconds=0.2")[0] == 200
    core = wait_until(lambda: (c := _core(stats)) and c["requests"] == 2 and c, 10,
                      "two requests counted")
    assert isinstance(core, dict) and core["in_request"] == 0
    (worker,) = read_stats(stats)["workers"]
    assert worker["requests"] == 2 and worker["delta_requests"] == 2 and worker["tx"] > 0
    assert 400_000 <= worker["running_time"] < 60_000_000  # µs: two sleeps of 0.2 s
    assert worker["avg_rt"] == worker["running_time"] // 2
    tx, running_time, pid = worker["tx"], worker["running_time"], worker["pid"]
    assert http_get(address)[0] == 200  # the third: max-requests recycles the worker
    respawned = wait_until(lambda: (w := read_stats(stats)["workers"][0])["pid"] != pid
                           and w["accepting"] and w, 20, "a respawned worker")
    assert isinstance(respawned, dict)
    assert respawned["requests"] == 3 and respawned["tx"] > tx
    assert respawned["running_time"] >= running_time and respawned["delta_requests"] == 0
    assert http_get(address)[0] == 200
    after = wait_until(lambda: (w := read_stats(stats)["workers"][0])["requests"] == 4 and w,
                       10, "the respawned worker counting on")
    assert isinstance(after, dict) and after["delta_requests"] == 1
