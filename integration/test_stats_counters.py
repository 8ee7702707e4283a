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
