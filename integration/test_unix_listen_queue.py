"""The stats server's listen_queue for a unix socket: the real accept-queue depth, read through
sock_diag netlink (uWSGI reports 0 there)."""

from __future__ import annotations

import socket
from pathlib import Path

from support.clients import read_stats
from support.processes import InstanceStarter, wait_until, write_app


def test_stats_report_the_queue_of_a_unix_socket(uzerg: InstanceStarter,
                                                 tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py", slow_seconds=20)
    path = str(tmp_path / "app.sock")
    stats = str(tmp_path / "stats.sock")
    uzerg.start(["--http-socket", path, "--wsgi-file", str(app), "--master", "--listen", "50",
                 "--stats", stats])
    busy = socket.socket(socket.AF_UNIX)
    busy.connect(path)
    busy.sendall(b"GET /slow HTTP/1.0\r\n\r\n")  # the one worker is held
    waiting = []
    try:
        wait_until(lambda: read_stats(stats)["workers"][0]["status"] == "busy", 10,
                   "the worker busy")
        for _ in range(7):
            client = socket.socket(socket.AF_UNIX)
            client.connect(path)
            waiting.append(client)
        document = wait_until(lambda: (d := read_stats(stats))["listen_queue"] == 7 and d, 10,
                              "7 connections queued")
        assert isinstance(document, dict)
        assert document["sockets"][0]["queue"] == 7
        assert document["sockets"][0]["max_queue"] == 50
    finally:
        (tmp_path / "release").touch()
        for client in [busy, *waiting]:
            client.close()
