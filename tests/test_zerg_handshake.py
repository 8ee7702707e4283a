"""The zerg handshake over real unix socketpairs and listeners (no policy, no processes)."""

from __future__ import annotations

import _socket
import array
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from uzerg.zerg.handshake import (
    HEADER_SIZE,
    SCM_MAX_FD,
    HandshakeError,
    connect_to_zerg_server,
    fetch_sockets,
    protocol_hint_line,
    receive_sockets,
    send_sockets,
)


def num_fds() -> int:
    return psutil.Process().num_fds()


def tcp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def unix_listener(path: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    return sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    socks = [tcp_listener() for _ in range(3)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def deadline(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def raw_send(conn: socket.socket, data: bytes, fds: list[int]) -> None:
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    conn.sendmsg([data], ancillary)


def header(count: int, magic: bytes = b"uwsgi-zerg") -> bytes:
    return magic + struct.pack("=i", count)


def test_wire_bytes_are_uwsgis(pair, listeners):
    server, client = pair
    assert send_sockets(server, [s.fileno() for s in listeners]) == 1
    server.close()
    data, ancdata, flags, _ = client.recvmsg(64, socket.CMSG_SPACE(8 * 4))
    assert data == b"uwsgi-zerg" + (3).to_bytes(4, sys.byteorder)
    assert len(data) == HEADER_SIZE == 14
    assert len(ancdata) == 1 and ancdata[0][:2] == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    assert len(ancdata[0][2]) == 3 * 4
    assert not flags & socket.MSG_CTRUNC
    for fd in array.array("i", ancdata[0][2]):
        os.close(fd)
    assert client.recv(64) == b""  # no hint unless asked for


def test_round_trip_keeps_order_and_sets_cloexec(pair, listeners):
    server, client = pair
    send_sockets(server, [s.fileno() for s in listeners], ["http", "uwsgi", None])
    server.close()
    got = receive_sockets(client, deadline())
    try:
        assert [s.getsockname() for s in got.sockets] == [s.getsockname() for s in listeners]
        assert got.protocols == ["http", "uwsgi", None]
        assert got.announced == 3 and got.messages == 1
        assert all(not os.get_inheritable(s.fileno()) for s in got.sockets)
        # the C socket type, as a worker accepts from it (a zerg does not load socket)
        assert all(type(s) is _socket.socket for s in got.sockets)
        # The same listening socket: a connection to the original is accepted on the copy.
        with socket.create_connection(listeners[1].getsockname(), timeout=5):
            got.sockets[1].settimeout(5)
            conn_fd, _ = got.sockets[1]._accept()
            os.close(conn_fd)
    finally:
        for sock in got.sockets:
            sock.close()


def test_more_than_scm_max_fd_goes_in_several_messages(pair, tmp_path):
    socks = [unix_listener(str(tmp_path / f"s{i}")) for i in range(300)]
    server, client = pair
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        assert send_sockets(server, [s.fileno() for s in socks], ["uwsgi"] * 300) == 2
        server.close()
        got = receive_sockets(client, deadline())
        try:
            assert got.messages == 2 and got.announced == 300
            assert [s.getsockname() for s in got.sockets] == [s.getsockname() for s in socks]
            assert got.protocols == ["uwsgi"] * 300
        finally:
            for sock in got.sockets:
                sock.close()
    finally:
        for sock in socks:
            sock.close()


def test_each_message_header_carries_the_total(pair, tmp_path):
    socks = [unix_listener(str(tmp_path / f"s{i}")) for i in range(SCM_MAX_FD + 10)]
    server, client = pair
    try:
        send_sockets(server, [s.fileno() for s in socks])
        server.close()
        counts = []
        for _ in range(2):
            data, ancdata, _, _ = client.recvmsg(HEADER_SIZE, socket.CMSG_SPACE(SCM_MAX_FD * 4))
            assert data[:10] == b"uwsgi-zerg"
            fds = array.array("i", ancdata[0][2])
            counts.append((struct.unpack("=i", data[10:])[0], len(fds)))
            for fd in fds:
                os.close(fd)
        assert counts == [(263, SCM_MAX_FD), (263, 10)]
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    "hint",
    [
        b"",
        b"not json\n",
        b'{"uzerg":2,"protocols":["http","http","http"]}\n',
        b'{"uzerg":1,"protocols":["http"]}\n',
        b'{"uzerg":1,"protocols":[1,2,3]}\n',
        b"[" * 100_000 + b"\n",
        b'{"uzerg":1,"protocols":["http","http","http"]}',
    ],
)
def test_absent_or_bad_hint_means_no_hint(pair, listeners, hint):
    server, client = pair
    raw_send(server, header(3), [s.fileno() for s in listeners])
    if hint:
        server.sendall(hint)
    server.close()
    got = receive_sockets(client, deadline())
    try:
        # The last case has no newline but the server closed: a complete JSON document is fine.
        expected = ["http"] * 3 if hint.endswith(b"]}") else None
        assert got.protocols == expected
        assert len(got.sockets) == 3
    finally:
        for sock in got.sockets:
            sock.close()


def test_hint_wait_is_bounded_when_server_keeps_connection_open(pair, listeners):
    server, client = pair
    raw_send(server, header(3), [s.fileno() for s in listeners])
    started = time.monotonic()
    got = receive_sockets(client, deadline(), hint_wait=0.2)
    elapsed = time.monotonic() - started
    for sock in got.sockets:
        sock.close()
    assert got.protocols is None
    assert 0.15 < elapsed < 2.0


def expect_invalid(client: socket.socket, *, within: float = 5.0, **kwargs) -> HandshakeError:
    before = num_fds()
    with pytest.raises(HandshakeError) as info:
        receive_sockets(client, deadline(within), **kwargs)
    assert str(info.value) == "--- invalid data received from zerg-server ---"
    assert num_fds() == before, "received descriptors leaked"
    return info.value


def test_wrong_magic(pair, listeners):
    server, client = pair
    raw_send(server, header(3, b"uwsgi-zorg"), [s.fileno() for s in listeners])
    server.close()
    assert "bad magic" in expect_invalid(client).detail


def test_short_header(pair):
    server, client = pair
    server.sendall(b"uwsgi-ze")
    server.close()
    assert "short header (8 bytes)" in expect_invalid(client).detail


def test_nothing_sent(pair):
    server, client = pair
    server.close()
    assert "without data" in expect_invalid(client).detail


@pytest.mark.parametrize("count", [0, -1, 65537, 2**31 - 1])
def test_count_out_of_range(pair, listeners, count):
    server, client = pair
    raw_send(server, header(count), [s.fileno() for s in listeners])
    server.close()
    assert "out of range" in expect_invalid(client).detail


def test_fewer_descriptors_than_announced(pair, listeners):
    server, client = pair
    raw_send(server, header(4), [s.fileno() for s in listeners])
    server.close()
    assert "after 3 of 4 announced" in expect_invalid(client).detail


def test_more_descriptors_than_announced(pair, listeners):
    server, client = pair
    raw_send(server, header(2), [s.fileno() for s in listeners])
    server.close()
    assert "received 3 descriptors, 2 announced" in expect_invalid(client).detail


def test_header_without_descriptors(pair):
    server, client = pair
    raw_send(server, header(1), [])
    server.close()
    assert "carries no descriptor" in expect_invalid(client).detail


def test_inconsistent_totals_across_messages(pair, listeners):
    server, client = pair
    raw_send(server, header(3), [listeners[0].fileno()])
    raw_send(server, header(2), [listeners[1].fileno(), listeners[2].fileno()])
    server.close()
    assert "the first announced 3" in expect_invalid(client).detail


def test_control_truncation_is_detected(pair, tmp_path):
    socks = [unix_listener(str(tmp_path / f"s{i}")) for i in range(5)]
    server, client = pair
    try:
        send_sockets(server, [s.fileno() for s in socks])
        server.close()
        assert "MSG_CTRUNC" in expect_invalid(client, fds_per_message=2).detail
    finally:
        for sock in socks:
            sock.close()


def test_non_listening_tcp_socket_rejects_everything(pair, listeners):
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    server, client = pair
    try:
        raw_send(server, header(4), [s.fileno() for s in listeners] + [bound.fileno()])
        server.close()
        assert expect_invalid(client).detail == "descriptor 3 is not a listening socket"
    finally:
        bound.close()


def test_udp_socket_rejected(pair, listeners):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server, client = pair
    try:
        raw_send(server, header(2), [listeners[0].fileno(), udp.fileno()])
        server.close()
        assert expect_invalid(client).detail == "descriptor 1 is not a stream socket"
    finally:
        udp.close()


def test_socket_of_another_family_rejected_with_its_name(pair, listeners):
    # the detail names the family as socket.AddressFamily does, though socket is not loaded
    netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    server, client = pair
    try:
        raw_send(server, header(2), [listeners[0].fileno(), netlink.fileno()])
        server.close()
        assert expect_invalid(client).detail == (
            "descriptor 1 is a socket of unsupported family <AddressFamily.AF_NETLINK: 16>")
    finally:
        netlink.close()


def test_pipe_rejected(pair, listeners):
    read_end, write_end = os.pipe()
    server, client = pair
    try:
        raw_send(server, header(2), [read_end, listeners[0].fileno()])
        server.close()
        assert expect_invalid(client).detail == "descriptor 0 is not a socket"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_socketpair_end_rejected(pair, listeners):
    a, b = socket.socketpair()
    server, client = pair
    try:
        raw_send(server, header(1), [a.fileno()])
        server.close()
        assert "not a listening socket" in expect_invalid(client).detail
    finally:
        a.close()
        b.close()


def test_receive_times_out(pair):
    _server, client = pair
    error = expect_invalid(client, within=0.3)
    assert error.detail.startswith("timed out after 0.3s")


def test_connect_to_missing_path(tmp_path):
    with pytest.raises(HandshakeError) as info:
        fetch_sockets(str(tmp_path / "nobody"), timeout=1)
    assert str(info.value) == f"--- unable to connect to zerg server {tmp_path / 'nobody'} ---"
    assert info.value.detail == "No such file or directory"


def test_connect_to_stale_socket_file(tmp_path):
    path = str(tmp_path / "stale")
    unix_listener(path).close()
    with pytest.raises(HandshakeError) as info:
        fetch_sockets(path, timeout=1)
    assert info.value.detail == "Connection refused"


def test_connect_to_non_unix_address_is_refused_clearly():
    with pytest.raises(HandshakeError) as info:
        fetch_sockets("127.0.0.1:3031", timeout=1)
    assert "unix socket path or @name" in info.value.detail


def test_connect_deadline_on_full_backlog(tmp_path):
    path = str(tmp_path / "full")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    try:
        while True:  # fill the backlog until a non-blocking connect would wait
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(path)
            except BlockingIOError:
                break
        started = time.monotonic()
        with pytest.raises(HandshakeError) as info:
            fetch_sockets(path, timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        assert "timed out after 0.3s" in info.value.detail
        assert str(info.value).startswith("--- unable to connect to zerg server")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_abstract_address_has_trailing_nul(listeners):
    name = f"uzerg-test-{os.getpid()}-{time.monotonic_ns()}"
    zerg_server = unix_listener(b"\0" + name.encode() + b"\0")
    try:
        zerg_server.settimeout(5)
        # the client connects with the trailing NUL too: otherwise this connect is refused
        client = connect_to_zerg_server("@" + name, deadline())
        conn, _ = zerg_server.accept()
        send_sockets(conn, [listeners[0].fileno()], ["http"])
        conn.close()
        got = receive_sockets(client, deadline())
        client.close()
        assert got.protocols == ["http"]
        got.sockets[0].close()
    finally:
        zerg_server.close()


def test_protocol_hint_line_shape():
    assert protocol_hint_line(["http", None]) == b'{"uzerg":1,"protocols":["http",null]}\n'


def test_send_needs_sockets(pair):
    with pytest.raises(ValueError):
        send_sockets(pair[0], [])
