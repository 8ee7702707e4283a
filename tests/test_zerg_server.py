"""ZergServer: binding, serving, access control, robustness against bad peers, vacuum."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from structlog.testing import capture_logs
from support.processes import unique_abstract, wait_until

from uzerg.addresses import AddressError
from uzerg.zerg.handshake import HEADER_SIZE, HandshakeError, fetch_sockets
from uzerg.zerg.server import ZergServer, dedupe_sockets


def tcp_listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(8)
    sock.setblocking(False)
    return sock


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    socks = [tcp_listener() for _ in range(3)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


@contextmanager
def started(server: ZergServer) -> Iterator[ZergServer]:
    server.start()
    try:
        yield server
    finally:
        server.close(vacuum=True)


@contextmanager
def serving(server: ZergServer) -> Iterator[ZergServer]:
    """Run the server's part of a master event loop in a thread."""
    stop = threading.Event()

    def loop() -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            while not stop.is_set():
                for _ in selector.select(0.02):
                    server.handle_readable()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)


def close_all(socks) -> None:
    for sock in socks:
        sock.close()


def test_serves_sockets_in_order_with_hint(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    server = ZergServer(path, listeners, ["http", "uwsgi", None])
    with capture_logs() as logs, started(server), serving(server):
        got = fetch_sockets(path, timeout=5)
        names = [s.getsockname() for s in got.sockets]
        close_all(got.sockets)
        assert names == [s.getsockname() for s in listeners]
        assert got.protocols == ["http", "uwsgi", None]
        wait_until(lambda: server.attach_count == 1, 5, "server.attach_count == 1")
    assert any(e["event"] == f"*** Zerg server enabled on {path} ***" for e in logs)
    attachment = server.attached[0]
    assert (attachment.pid, attachment.uid) == (os.getpid(), os.geteuid())
    assert server.stats()["attached"] == 1
    assert server.stats()["recent"][0]["pid"] == os.getpid()


def test_no_hint_without_protocols(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    server = ZergServer(path, listeners)
    with started(server), serving(server):
        got = fetch_sockets(path, timeout=5)
        close_all(got.sockets)
        assert got.protocols is None


def test_every_connection_gets_the_full_list(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    server = ZergServer(path, listeners)
    with started(server), serving(server):
        for _ in range(3):  # a uWSGI zerg reconnects when count > 8: serve it again
            got = fetch_sockets(path, timeout=5)
            assert len(got.sockets) == 3
            close_all(got.sockets)
        wait_until(lambda: server.attach_count == 3, 5, "server.attach_count == 3")


def test_duplicates_by_address_are_removed(tmp_path, listeners):
    # the same listening socket as another object, and a second spelling of the same address
    same = socket.socket(fileno=os.dup(listeners[0].fileno()))
    try:
        kept, protocols = dedupe_sockets([listeners[0], listeners[1], same], ["http", None, "x"])
        assert kept == [listeners[0], listeners[1]] and protocols == ["http", None]
        path = str(tmp_path / "zerg.sock")
        server = ZergServer(path, [listeners[1], same, listeners[0], listeners[2]])
        with started(server), serving(server):
            got = fetch_sockets(path, timeout=5)
            ports = [s.getsockname()[1] for s in got.sockets]
            close_all(got.sockets)
            assert ports == [
                listeners[1].getsockname()[1],
                listeners[0].getsockname()[1],
                listeners[2].getsockname()[1],
            ]
    finally:
        same.close()


def test_socket_file_follows_umask_and_chmod(tmp_path, listeners):
    old = os.umask(0o077)
    try:
        path = str(tmp_path / "umask.sock")
        with started(ZergServer(path, listeners)):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        path2 = str(tmp_path / "chmod.sock")
        with started(ZergServer(path2, listeners, chmod=0o660)):
            assert stat.S_IMODE(os.stat(path2).st_mode) == 0o660
    finally:
        os.umask(old)


def test_vacuum_removes_only_our_file(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    server = ZergServer(path, listeners)
    server.start()
    server.close(vacuum=False)
    assert os.path.exists(path)  # no vacuum: the file stays

    server = ZergServer(path, listeners)  # a stale file is replaced
    server.start()
    server.close(vacuum=True)
    assert not os.path.exists(path)

    server = ZergServer(path, listeners)
    server.start()
    os.unlink(path)  # someone else took the path over meanwhile
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)
    try:
        server.close(vacuum=True)
        assert os.path.exists(path), "a zerg server must never unlink a file it did not create"
    finally:
        other.close()


def test_live_socket_file_is_never_taken_over(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    with started(ZergServer(path, listeners)):
        second = ZergServer(path, listeners)
        with pytest.raises(AddressError, match="another process is listening on it"):
            second.start()
        assert os.path.exists(path)


def test_a_regular_file_in_the_way(tmp_path, listeners):
    path = tmp_path / "zerg.sock"
    path.write_text("precious")
    with pytest.raises(AddressError, match="not a socket"):
        ZergServer(str(path), listeners).start()
    assert path.read_text() == "precious"


def test_tcp_address_is_refused(listeners):
    with pytest.raises(AddressError, match="unix socket path or @name"):
        ZergServer("127.0.0.1:0", listeners).start()


def test_no_sockets_is_an_error():
    with pytest.raises(ValueError, match="no socket to hand out"):
        ZergServer("/tmp/never", [])


def test_abstract_server_warns_and_serves(listeners):
    name = unique_abstract("test")
    server = ZergServer(name, listeners)
    with capture_logs() as logs, started(server), serving(server):
        got = fetch_sockets(name, timeout=5)
        close_all(got.sockets)
        assert len(got.sockets) == 3
    assert any("abstract unix sockets have no file permissions" in e["event"] for e in logs)


def test_more_than_253_sockets_is_logged(tmp_path):
    socks = []
    try:
        for i in range(260):
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(tmp_path / f"s{i}"))
            sock.listen(1)
            socks.append(sock)
        path = str(tmp_path / "zerg.sock")
        server = ZergServer(path, socks)
        with capture_logs() as logs, started(server), serving(server):
            got = fetch_sockets(path, timeout=5)
            close_all(got.sockets)
            assert got.messages == 2 and len(got.sockets) == 260
        assert any("a uWSGI zerg only gets the first 253" in e["event"] for e in logs)
    finally:
        close_all(socks)


def test_handle_readable_without_peer_returns_at_once(tmp_path, listeners):
    with started(ZergServer(str(tmp_path / "z.sock"), listeners)) as server:
        t0 = time.monotonic()
        assert server.handle_readable() == 0
        assert time.monotonic() - t0 < 0.5


def test_bad_peers_do_not_disturb_the_server(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    server = ZergServer(path, listeners, backlog=128)
    proc = psutil.Process()
    with started(server):
        fds_before = proc.num_fds()
        junk = socket.socket(socket.AF_UNIX)
        junk.connect(path)
        junk.sendall(b"GET / HTTP/1.0\r\n\r\n" * 100)  # garbage; never reads
        peers = [junk]
        t0 = time.monotonic()
        while len(peers) < 1000:  # a burst of 1,000 peers that never read
            peer = socket.socket(socket.AF_UNIX)
            peer.setblocking(False)
            try:
                peer.connect(path)
            except BlockingIOError:  # backlog full: let the "master" run once
                peer.close()
                server.handle_readable()
                continue
            peers.append(peer)
        while server.handle_readable():
            pass
        elapsed = time.monotonic() - t0
        assert server.attach_count == 1000
        assert elapsed < 30
        assert proc.num_fds() == fds_before + 1000  # only our own client ends; nothing leaked
        close_all(peers)
        assert proc.num_fds() == fds_before
        with serving(server):  # still serves a proper zerg
            got = fetch_sockets(path, timeout=5)
            close_all(got.sockets)
            assert len(got.sockets) == 3


def test_peer_that_vanished_is_dropped(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    with started(ZergServer(path, listeners)) as server:
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(path)
        peer.close()
        with capture_logs():
            assert server.handle_readable() == 1
        # sending to a closed unix peer fails (EPIPE): dropped, not attached, nothing raised
        assert (server.attach_count, server.drop_count) == (0, 1)


def test_out_of_descriptors_is_survived(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    with started(ZergServer(path, listeners)) as server:
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(path)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fillers: list[int] = []
        try:
            highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 4, hard))
            try:
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            with capture_logs() as logs:
                assert server.handle_readable() == 0
                assert server.handle_readable() == 0
            lines = [e["event"] for e in logs if "retrying later" in e["event"]]
            assert len(lines) == 1  # once per episode
            assert server.resume_at > time.monotonic()  # the master does not watch it meanwhile
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert server.handle_readable() == 1  # the peer waited in the backlog
        peer.settimeout(5)
        data, _, _, _ = peer.recvmsg(HEADER_SIZE, socket.CMSG_SPACE(16))
        assert data[:10] == b"uwsgi-zerg"
        peer.close()


def test_client_error_when_server_gone(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    server = ZergServer(path, listeners)
    server.start()
    server.close(vacuum=False)
    with pytest.raises(HandshakeError, match="unable to connect"):
        fetch_sockets(path, timeout=1)


def test_accepts_per_call_are_capped(tmp_path, listeners):
    from uzerg.zerg.server import MAX_ACCEPTS_PER_CALL

    path = str(tmp_path / "zerg.sock")
    with started(ZergServer(path, listeners, backlog=1024)) as server:
        peers = []
        try:
            for _ in range(MAX_ACCEPTS_PER_CALL + 44):
                peer = socket.socket(socket.AF_UNIX)
                peer.setblocking(False)
                peer.connect(path)
                peers.append(peer)
            with capture_logs():
                assert server.handle_readable() == MAX_ACCEPTS_PER_CALL
                assert server.handle_readable() == 44
                assert server.handle_readable() == 0
        finally:
            close_all(peers)


def test_a_closed_socket_in_the_list_is_never_handed_out(tmp_path, listeners):
    path = str(tmp_path / "zerg.sock")
    with started(ZergServer(path, listeners)) as server:
        listeners[1].close()
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(path)
        with capture_logs() as logs:
            assert server.handle_readable() == 1
        peer.settimeout(5)
        assert peer.recv(64) == b""  # nothing sent, connection closed
        peer.close()
        assert server.drop_count == 1 and server.attach_count == 0
        assert any("socket 1 of the list is closed" in e["event"] for e in logs)


def test_allow_lists_take_numbers_and_names():
    from uzerg.zerg.server import resolve_ids

    assert resolve_ids(["0", 65534, " root "], "user") == {0, 65534}
    assert resolve_ids(["root"], "group") == {0}
    with pytest.raises(ValueError, match="unknown user: no-such-user-here"):
        resolve_ids(["no-such-user-here"], "user")
