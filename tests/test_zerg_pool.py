"""Zergpool entries: parsing, binding once, serving each entry's own sockets, restart."""

from __future__ import annotations

import os
import selectors
import socket
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs
from support.processes import free_port

from uzerg.addresses import AddressError
from uzerg.config.values import ZergPoolEntry, parse_zergpool
from uzerg.zerg import ZergServer, build_zergpools, fetch_sockets


def build_pools(values: Sequence[str], **options: Any) -> list[ZergServer]:
    """build_zergpools on ``zergpool`` values parsed as the config layer parses them."""
    return build_zergpools([parse_zergpool(value) for value in values], **options)


@contextmanager
def serving(servers: Sequence[ZergServer]) -> Iterator[None]:
    stop, ready = threading.Event(), threading.Event()

    def loop() -> None:
        with selectors.DefaultSelector() as selector:
            for server in servers:
                selector.register(server, selectors.EVENT_READ, server)
            ready.set()
            while not stop.is_set():
                for key, _ in selector.select(0.02):
                    key.data.handle_readable()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def close_pools(servers: Sequence[ZergServer]) -> None:
    for server in servers:
        server.close(vacuum=True)


# -- parsing -------------------------------------------------------------------------------------


def test_parse_basic():
    assert parse_zergpool("/tmp/zp:127.0.0.1:3031,/tmp/b.sock") == ZergPoolEntry(
        "/tmp/zp", ("127.0.0.1:3031", "/tmp/b.sock")
    )


def test_parse_skips_empty_items_and_trims_whitespace():
    assert parse_zergpool("@pool: :3031 ,, /tmp/b.sock ,").sockets == (":3031", "/tmp/b.sock")


def test_parse_ipv6_items():
    assert parse_zergpool("/tmp/zp:[::1]:3031,[::]:3032").sockets == ("[::1]:3031", "[::]:3032")


@pytest.mark.parametrize("value", ["/tmp/zp", "", ":127.0.0.1:3031"])
def test_parse_syntax_errors(value):
    with pytest.raises(ValueError) as info:
        parse_zergpool(value)
    assert str(info.value) == f"invalid zergpool syntax: {value}"


def test_parse_requires_a_socket():
    with pytest.raises(ValueError, match="no socket listed"):
        parse_zergpool("/tmp/zp: , ")


def test_parse_bad_item_address():
    with pytest.raises(ValueError, match="invalid IPv6"):
        parse_zergpool("/tmp/zp:[::1:3031")


# -- building ------------------------------------------------------------------------------------


def test_each_entry_hands_its_own_sockets_and_shared_ones_bind_once(tmp_path):
    p1, p2 = free_port(), free_port()
    b_sock = str(tmp_path / "b.sock")
    pool_a, pool_b = str(tmp_path / "a.pool"), str(tmp_path / "b.pool")
    entries = [f"{pool_a}:127.0.0.1:{p1},{b_sock}", f"{pool_b}:{b_sock},localhost:{p1},:{p2}"]
    with capture_logs() as logs:
        servers = build_pools(entries, backlog=16)
    try:
        bound = [e["event"] for e in logs if e.get("event_kind") == "zergpool_bound"]
        fds = [e["fd"] for e in logs if e.get("event_kind") == "zergpool_bound"]
        assert bound == [
            f"zergpool {pool_a} bound to TCP socket 127.0.0.1:{p1} (fd: {fds[0]})",
            f"zergpool {pool_a} bound to UNIX socket {b_sock} (fd: {fds[1]})",
            f"zergpool {pool_b} bound to TCP socket 0.0.0.0:{p2} (fd: {fds[2]})",
        ]
        # localhost:P1 in the second entry is the very socket bound for 127.0.0.1:P1
        assert servers[1].sockets[1] is servers[0].sockets[0]
        assert servers[1].sockets[0] is servers[0].sockets[1]
        with serving(servers):
            got_a = fetch_sockets(pool_a, timeout=5)
            got_b = fetch_sockets(pool_b, timeout=5)
        names_a = [s.getsockname() for s in got_a.sockets]
        names_b = [s.getsockname() for s in got_b.sockets]
        for sock in got_a.sockets + got_b.sockets:
            sock.close()
        assert names_a == [("127.0.0.1", p1), b_sock]
        assert names_b == [b_sock, ("127.0.0.1", p1), ("0.0.0.0", p2)]
        assert got_a.protocols is None  # a pool knows no protocol: zergs use their --protocol
        assert all(not s.getblocking() for s in servers[1].sockets)
    finally:
        close_pools(servers)
    assert all(s.fileno() == -1 for server in servers for s in server.sockets)


def test_chmod_applies_to_pool_and_unix_sockets(tmp_path):
    pool, b_sock = str(tmp_path / "p.pool"), str(tmp_path / "b.sock")
    servers = build_pools([f"{pool}:{b_sock}"], chmod=0o666)
    try:
        assert stat.S_IMODE(os.stat(pool).st_mode) == 0o666
        assert stat.S_IMODE(os.stat(b_sock).st_mode) == 0o666
    finally:
        close_pools(servers)


def test_allow_lists_reach_the_pool_servers(tmp_path):
    servers = build_pools([f"{tmp_path / 'p'}:127.0.0.1:0"], allow_uids=[1000], allow_gids=[33])
    try:
        assert servers[0].allow_uids == {1000} and servers[0].allow_gids == {33}
        assert servers[0].label == "zergpool"
    finally:
        close_pools(servers)


def test_bind_failure_names_entry_and_address_and_closes_everything(tmp_path):
    before = psutil.Process().num_fds()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    good = str(tmp_path / "good.sock")
    pool1, pool2 = str(tmp_path / "one.pool"), str(tmp_path / "two.pool")
    try:
        with pytest.raises(AddressError) as info:
            build_pools([f"{pool1}:{good}", f"{pool2}:127.0.0.1:{port}"])
    finally:
        squatter.close()
    message = str(info.value)
    assert message.startswith(f"zergpool {pool2}:127.0.0.1:{port}: cannot bind 127.0.0.1:{port}")
    assert "Address already in use" in message
    assert "without SO_REUSEPORT" in message
    assert psutil.Process().num_fds() == before
    assert not os.path.exists(good) and not os.path.exists(pool1)  # ours, removed again


def test_pool_address_used_twice(tmp_path):
    with pytest.raises(AddressError, match="used twice"):
        build_pools([f"{tmp_path / 'p'}:127.0.0.1:0", f"{tmp_path / 'p'}:127.0.0.1:0"])


def test_restart_while_zergs_hold_the_tcp_socket(tmp_path):
    port = free_port()
    pool = str(tmp_path / "p.pool")
    entry = f"{pool}:127.0.0.1:{port}"
    first = build_pools([entry])
    with serving(first):
        zerg = fetch_sockets(pool, timeout=5).sockets[0]  # a zerg holds the listener
    close_pools(first)
    try:
        with capture_logs() as logs:
            second = build_pools([entry])  # must not fail with "address in use"
        try:
            assert any(e.get("event_kind") == "zergpool_reuseport_join" for e in logs)
            # every new connection is accepted by the zerg's copy or by the new pool socket
            fresh = second[0].sockets[0]
            zerg.setblocking(False)
            accepted = 0
            selector = selectors.DefaultSelector()
            selector.register(zerg, selectors.EVENT_READ)
            selector.register(fresh, selectors.EVENT_READ)
            clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
            while accepted < 20:
                events = selector.select(5)
                assert events, "a connection was lost"
                for key, _ in events:
                    try:  # (the zerg's copy is the C socket type: no accept())
                        conn_fd, _ = key.fileobj._accept()
                    except BlockingIOError:
                        continue
                    os.close(conn_fd)
                    accepted += 1
            selector.close()
            for client in clients:
                client.close()
        finally:
            close_pools(second)
    finally:
        zerg.close()


def test_restart_without_reuse_port_gives_a_clear_error(tmp_path):
    port = free_port()
    pool = str(tmp_path / "p.pool")
    entry = f"{pool}:127.0.0.1:{port}"
    first = build_pools([entry], reuse_port=False)
    with serving(first):
        zerg = fetch_sockets(pool, timeout=5).sockets[0]
    close_pools(first)
    try:
        with pytest.raises(AddressError, match="stop them first"):
            build_pools([entry], reuse_port=False)
    finally:
        zerg.close()


def test_unresolvable_pool_socket_names_the_entry(tmp_path):
    entry = f"{tmp_path / 'p'}:no-such-host.invalid:3031"
    with pytest.raises(AddressError) as info:
        build_pools([entry])
    assert str(info.value).startswith(f"zergpool {entry}: cannot resolve")
    assert not os.path.exists(tmp_path / "p")
