"""connection.preset_timeouts: socket-timeout set once on the TCP listeners a worker owns,
inherited by every connection accept() returns (Linux), so none needs a setsockopt()."""

from __future__ import annotations

import socket
from pathlib import Path

from uzerg.serve.connection import preset_timeouts, timeval
from uzerg.sockets import Listener

PACKED = timeval(2.5)


def _tcp() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _accepted(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.socket(listener.family)
    client.connect(listener.getsockname())
    conn, _ = listener.accept()
    return client, conn


def _timeouts(sock: socket.socket) -> tuple[bytes, bytes]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, len(PACKED)),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, len(PACKED)))


def test_own_tcp_listeners_pass_both_timeouts_to_their_connections(tmp_path: Path) -> None:
    tcp = _tcp()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "s.sock"))
    unix.listen()
    try:
        listeners = [Listener(tcp, "http", "bound"), Listener(unix, "http", "bound")]
        # set on the TCP one, but with a unix listener beside it connections are not preset
        assert preset_timeouts(listeners, PACKED) is False
        assert preset_timeouts(listeners[:1], PACKED) is True
        client, conn = _accepted(tcp)
        with client, conn:
            assert _timeouts(conn) == (PACKED, PACKED)
        client, conn = _accepted(unix)  # a unix connection inherits nothing: set per request
        with client, conn:
            assert _timeouts(conn) == (bytes(len(PACKED)), bytes(len(PACKED)))
    finally:
        tcp.close()
        unix.close()


def test_a_listener_received_from_a_zerg_server_is_left_alone() -> None:
    own, received = _tcp(), _tcp()
    try:
        listeners = [Listener(own, "http", "bound"), Listener(received, "http", "received")]
        assert preset_timeouts(listeners, PACKED) is False
        assert _timeouts(received) == (bytes(len(PACKED)), bytes(len(PACKED)))
        assert _timeouts(own) == (PACKED, PACKED)
    finally:
        own.close()
        received.close()
