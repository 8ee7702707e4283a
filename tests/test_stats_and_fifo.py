"""Unit tests: the stats document and listen queue, the master fifo's command reader."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path
from types import SimpleNamespace

from uzerg.processes.fifo import MasterFifo
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.sockdiag import parse_rqlen_reply
from uzerg.processes.stats import listen_queue, stats_document
from uzerg.sockets import Listener


def test_listen_queue_counts_waiting_connections() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(7)
    clients = [socket.create_connection(server.getsockname()) for _ in range(3)]
    try:
        assert listen_queue(server) == (3, 7)
    finally:
        for client in clients:
            client.close()
        server.close()
    unix = socket.socket(socket.AF_UNIX)
    assert listen_queue(unix) == (0, 0)
    unix.close()


def test_listen_queue_of_a_unix_socket_through_sock_diag(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(9)
    clients = []
    try:
        for count in (0, 4):
            while len(clients) < count:
                client = socket.socket(socket.AF_UNIX)
                client.connect(path)
                clients.append(client)
            assert listen_queue(server) == (count, 9)
        server.accept()[0].close()
        assert listen_queue(server) == (3, 9)
    finally:
        for client in clients:
            client.close()
        server.close()


def test_sock_diag_reply_parser_rejects_short_and_foreign_replies() -> None:
    assert parse_rqlen_reply(b"") is None
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + bytes(20)
    assert parse_rqlen_reply(error) is None
    attrs = struct.pack("=HH", 12, 4) + struct.pack("=II", 5, 50)
    ok = struct.pack("=IHHII", 32 + len(attrs), 20, 0, 1, 0) + bytes(16) + attrs
    assert parse_rqlen_reply(ok) == (5, 50)
    assert parse_rqlen_reply(ok[:-8]) is None


def test_stats_document_shape() -> None:
    board = Scoreboard(4, 2)
    board.reset_for_spawn(1, os.getpid())
    board.core(1, 0).requests = 3
    board.core(1, 1).requests = 1
    board.core(1, 1).request_start = 1.0
    board.core(1, 0).tx = 300
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(10)
    record = SimpleNamespace(worker_id=1, pid=os.getpid(), spawned_at=1000.0, respawn_count=2,
                             harakiri_count=1)
    doc = stats_document(scoreboard=board, workers=[record],
                         listeners=[Listener(sock, "uwsgi", "bound")],
                         zerg=[{"address": "/z", "attached": 1}])
    (worker,) = doc["workers"]
    assert worker["requests"] == 4 and worker["tx"] == 300 and worker["status"] == "busy"
    assert [core["in_request"] for core in worker["cores"]] == [0, 1]
    assert worker["respawn_count"] == 2 and worker["harakiri_count"] == 1
    assert worker["rss"] > 0 and worker["last_spawn"] == 1000
    assert doc["sockets"][0]["proto"] == "uwsgi" and doc["sockets"][0]["max_queue"] == 10
    assert doc["load"] == 1 and doc["zerg"] == [{"address": "/z", "attached": 1}]
    board.header.paused = 1
    assert stats_document(scoreboard=board, workers=[record],
                          listeners=[])["workers"][0]["status"] == "pause"
    sock.close()
    board.close()


def test_master_fifo_reads_commands_and_switches(tmp_path: Path) -> None:
    first, second = str(tmp_path / "a.fifo"), str(tmp_path / "b.fifo")
    commands: list[str] = []
    fifo = MasterFifo([first, second], commands.append)
    fd = os.open(first, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"p+\nq")
    os.close(fd)
    fifo.handle_readable()
    assert commands == ["p", "+", "q"]
    fd = os.open(first, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"1")
    os.close(fd)
    fifo.handle_readable()
    assert fifo.active == 1 and not os.path.exists(first)
    fd = os.open(second, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"r")
    os.close(fd)
    fifo.handle_readable()
    assert commands[-1] == "r"
    fd = os.open(second, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"0p")  # the zerg dance's "2p": switch slot, then obey the rest
    os.close(fd)
    fifo.handle_readable()
    assert fifo.active == 0 and commands[-1] == "p"
    fifo.close()
    assert not os.path.exists(first)
