"""attach_to_zerg_servers: several servers, order, logs, fallback, O_NONBLOCK, no fd leak."""

from __future__ import annotations

import array
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from structlog.testing import capture_logs

from uzerg.zerg import HandshakeError, ZergServer, attach_to_zerg_servers


def tcp_listener(blocking: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(blocking)
    return sock


@contextmanager
def zerg_server(address: str, socks, protocols=None, served=None) -> Iterator[ZergServer]:
    """Serve zergs from a thread; ``served[0]`` (when given) counts the peers whose
    connection the server has finished with and closed."""
    server = ZergServer(address, socks, protocols)
    server.start()
    stop, ready = threading.Event(), threading.Event()

    def loop() -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            ready.set()
            while not stop.is_set():
                for _ in selector.select(0.02):
                    accepted = server.handle_readable()
                    if served is not None:
                        served[0] += accepted

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    ready.wait(5)  # its selector's descriptor exists before a test counts descriptors
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        server.close(vacuum=True)


@contextmanager
def fake_server(path: str, payload) -> Iterator[None]:
    """A one-shot server that answers every peer with ``payload(conn)`` (for bad handshakes)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                payload(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    socks = [tcp_listener() for _ in range(4)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def close_received(received) -> None:
    for item in received:
        item.sock.close()


def test_attach_to_several_servers_in_order(tmp_path, listeners):
    a, b = str(tmp_path / "a.sock"), f"@uzerg-client-{os.getpid()}-{time.monotonic_ns()}"
    with (
        zerg_server(a, listeners[:2], ["http", "uwsgi"]),
        zerg_server(b, listeners[2:]),
        capture_logs() as logs,
    ):
        received = attach_to_zerg_servers([a, b], timeout=5)
    try:
        ports = [item.sock.getsockname()[1] for item in received]
        assert ports == [s.getsockname()[1] for s in listeners]
        assert [item.protocol for item in received] == ["http", "uwsgi", None, None]
        assert [item.server for item in received] == [a, a, b, b]
        lines = [e["event"] for e in logs if e.get("event_kind") == "zerg_socket_attached"]
        assert lines == [
            f"uwsgi zerg socket {i} attached to INET address 127.0.0.1:{port} "
            f"fd {received[i].sock.fileno()}"
            for i, port in enumerate(ports)
        ]
        assert logs[-1]["event"] == "zerg sockets attached"
        for item in received:
            assert not os.get_blocking(item.sock.fileno())
            assert item.sock.gettimeout() == 0.0
            assert not os.get_inheritable(item.sock.fileno())
    finally:
        close_received(received)


def test_missing_non_blocking_flag_is_set(tmp_path):
    blocking = tcp_listener(blocking=True)
    path = str(tmp_path / "z.sock")
    try:
        assert os.get_blocking(blocking.fileno())
        with zerg_server(path, [blocking]), capture_logs() as logs:
            received = attach_to_zerg_servers([path], timeout=5)
        close_received(received)
        # the flag lives in the shared open file description: the server's copy sees it too
        assert not os.get_blocking(blocking.fileno())
        assert any("setting O_NONBLOCK" in e["event"] for e in logs)
    finally:
        blocking.close()


def test_unknown_protocol_hint_is_ignored(tmp_path, listeners):
    path = str(tmp_path / "z.sock")
    with zerg_server(path, listeners[:1], ["gopher"]), capture_logs() as logs:
        received = attach_to_zerg_servers([path], timeout=5)
    close_received(received)
    assert received[0].protocol is None
    assert any("unknown protocol 'gopher'" in e["event"] for e in logs)


def test_failure_closes_what_was_received(tmp_path, listeners):
    good = str(tmp_path / "good.sock")
    missing = str(tmp_path / "missing.sock")
    with zerg_server(good, listeners):
        before = psutil.Process().num_fds()
        with pytest.raises(HandshakeError) as info:
            attach_to_zerg_servers([good, missing], timeout=2)
        assert psutil.Process().num_fds() == before
    assert str(info.value) == f"--- unable to connect to zerg server {missing} ---"


def test_fallback_skips_unreachable_and_bad_servers(tmp_path, listeners):
    good = str(tmp_path / "good.sock")
    missing = str(tmp_path / "missing.sock")
    liar = str(tmp_path / "liar.sock")

    def lie(conn: socket.socket) -> None:
        fds = array.array("i", [listeners[0].fileno()])
        conn.sendmsg(
            [b"uwsgi-zerg" + struct.pack("=i", 2)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
        )

    with zerg_server(good, listeners[1:3]), fake_server(liar, lie), capture_logs() as logs:
        before = psutil.Process().num_fds()
        received = attach_to_zerg_servers([missing, liar, good], timeout=2, fallback=True)
        try:
            assert [i.server for i in received] == [good, good]
            assert psutil.Process().num_fds() == before + 2
        finally:
            close_received(received)
    skipped = [e for e in logs if e.get("event_kind") == "zerg_attach_failed"]
    assert [e["addr"] for e in skipped] == [missing, liar]
    assert skipped[0]["event"].startswith(f"--- unable to connect to zerg server {missing} ---")
    assert skipped[1]["event"].startswith("--- invalid data received from zerg-server ---")


def test_fallback_with_nothing_reachable_returns_nothing(tmp_path):
    with capture_logs() as logs:
        assert attach_to_zerg_servers([str(tmp_path / "x")], timeout=1, fallback=True) == []
    assert not any(e["event"] == "zerg sockets attached" for e in logs)


def test_server_that_never_sends_times_out(tmp_path):
    path = str(tmp_path / "mute.sock")
    held: list[socket.socket] = []
    with fake_server(path, lambda conn: held.append(conn.dup())):
        started = time.monotonic()
        with pytest.raises(HandshakeError) as info:
            attach_to_zerg_servers([path], timeout=0.5)
        assert 0.4 < time.monotonic() - started < 3
    for conn in held:
        conn.close()
    assert str(info.value) == "--- invalid data received from zerg-server ---"
    assert info.value.detail.startswith("timed out after 0.5s")


def test_thousand_attaches_leak_no_descriptor(tmp_path, listeners):
    path = str(tmp_path / "z.sock")
    process = psutil.Process()
    served = [0]

    def wait_served(count: int) -> None:
        # The server runs in a thread of this process and may still hold the last peer's
        # connection (a client stops reading at the hint's newline): count descriptors
        # only once it has closed every connection, on both sides of the loop.
        deadline = time.monotonic() + 20
        while served[0] < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert served[0] == count

    with zerg_server(path, listeners, ["http"] * 4, served) as server:
        received = attach_to_zerg_servers([path], timeout=5)  # warm up lazy allocations
        close_received(received)
        wait_served(1)
        before = process.num_fds()
        with capture_logs():
            for _ in range(1000):  # generous bounds: the suite runs on loaded 2-core machines
                close_received(attach_to_zerg_servers([path], timeout=30))
        wait_served(1001)
        assert process.num_fds() == before
        assert server.attach_count == 1001
