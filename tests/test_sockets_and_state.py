"""Unit tests of the process core's pure parts: socket list building, re-exec state,
scoreboard, process titles."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from config_helpers import make_config

from uzerg.processes.process import StartupError, parse_owner, process_title
from uzerg.processes.reexec import ENV_NAME, export_state, take_state
from uzerg.sockets import (
    Listener,
    build_listeners,
    check_listen_backlog,
    close_listener,
    configured_sockets,
    is_loopback_address,
)


def test_configured_sockets_order_and_protocols() -> None:
    cfg = make_config("--socket", "a:1", "--http-socket", "b:2", "--http11-socket", "c:3",
                      "--http", "d:4", "--protocol", "http")
    assert [(e.text, e.protocol) for e in configured_sockets(cfg)] == [
        ("a:1", "http"), ("b:2", "http"), ("c:3", "http11"), ("d:4", "http")]
    assert configured_sockets(make_config("--socket", "a:1"))[0].protocol == "uwsgi"


def test_shared_socket_references_and_tls_entries() -> None:
    cfg = make_config("--shared-socket", ":80", "--undeferred-shared-socket", ":443",
                      "--https", "=1,c.pem,k.pem,HIGH,!ca.pem", "--http-socket", "=0",
                      "--http-to-https", "=0,8443")
    http, https, redirect = configured_sockets(cfg)
    assert (http.text, http.protocol, http.defer_accept, http.tls) == (":80", "http", True, None)
    assert (https.text, https.defer_accept) == (":443", False)
    assert https.tls is not None and https.tls.client_cert_required
    assert (https.tls.cert, https.tls.key, https.tls.ciphers, https.tls.client_ca) == \
        ("c.pem", "k.pem", "HIGH", "ca.pem")
    assert (redirect.protocol, redirect.redirect_port) == ("https-redirect", "8443")
    https2 = configured_sockets(make_config(
        "--https2", "addr=:8443,cert=c.pem,key=k.pem,clientca=ca.pem"))[0].tls
    assert https2 is not None and (https2.cert, https2.client_ca) == ("c.pem", "ca.pem")
    assert not https2.client_cert_required
    with pytest.raises(StartupError, match="=2: no such shared socket"):
        configured_sockets(make_config("--socket", "=2", "--shared-socket", ":1"))


def test_listen_backlog_above_somaxconn(tmp_path: Path) -> None:
    limit = tmp_path / "somaxconn"
    limit.write_text("128\n")
    assert check_listen_backlog(128, str(limit)) is None
    assert check_listen_backlog(129, str(limit)) == (
        "Listen queue size is greater than the system max net.core.somaxconn (128): uzerg "
        "runs with the kernel's cap of 128 (raise net.core.somaxconn for a longer queue)")


def test_parse_owner() -> None:
    assert parse_owner("0:0") == (0, 0)
    assert parse_owner("root") == (0, -1)
    with pytest.raises(StartupError, match="unknown user 'no-such-user-xyz'"):
        parse_owner("no-such-user-xyz")


class FakeReceived:
    def __init__(self, sock: socket.socket, protocol: str | None) -> None:
        self.sock = sock
        self.protocol = protocol


def test_build_listeners_binds_in_order_and_appends_received(tmp_path: Path) -> None:
    received_sock = socket.socket()
    received_sock.bind(("127.0.0.1", 0))
    received_sock.listen(5)
    taken = f"127.0.0.1:{received_sock.getsockname()[1]}"
    unix = str(tmp_path / "s.sock")
    cfg = make_config(socket=(unix, taken), http_socket=("127.0.0.1:0",), chmod_socket=0o600)
    listeners = build_listeners(cfg, [FakeReceived(received_sock, "http")])
    try:
        # the configured address a zerg socket already serves is not bound again
        assert [(item.origin, item.protocol) for item in listeners] == [
            ("bound", "uwsgi"), ("bound", "http"), ("received", "http")]
        assert stat.S_IMODE(os.stat(unix).st_mode) == 0o600
        assert listeners[0].unix_path == unix
        assert listeners[1].server_port == str(listeners[1].sock.getsockname()[1])
        assert not listeners[1].sock.getblocking()
    finally:
        for item in listeners:
            close_listener(item, vacuum=item.origin == "bound")
    assert not os.path.exists(unix)


def test_explicit_protocol_wins_over_the_hint() -> None:
    received_sock = socket.socket()
    received_sock.bind(("127.0.0.1", 0))
    received_sock.listen(5)
    hinted = [FakeReceived(received_sock, "http")]
    assert build_listeners(make_config(protocol="uwsgi"), hinted)[0].protocol == "uwsgi"
    assert build_listeners(make_config(), hinted)[0].protocol == "http"
    unhinted = [FakeReceived(received_sock, None)]
    assert build_listeners(make_config(), unhinted)[0].protocol == "uwsgi"
    received_sock.close()


def test_vacuum_skips_a_replaced_socket_file(tmp_path: Path) -> None:
    unix = str(tmp_path / "s.sock")
    (listener,) = build_listeners(make_config(socket=(unix,)))
    os.unlink(unix)
    Path(unix).write_text("someone else's")
    close_listener(listener, vacuum=True)
    assert Path(unix).read_text() == "someone else's"


def test_reexec_state_round_trip(tmp_path: Path) -> None:
    unix = str(tmp_path / "s.sock")
    listeners = build_listeners(make_config(socket=(unix,), http_socket=("127.0.0.1:0",)))
    pool = socket.socket()
    pool.bind(("127.0.0.1", 0))
    pool.listen(5)
    text = export_state(listeners, [pool], [(1, 1234)], True, "/somewhere")
    assert os.get_inheritable(listeners[0].fd) and os.get_inheritable(pool.fileno())
    # the new program sees the same descriptor numbers: simulate with duplicates
    dup_map = {item.fd: os.dup(item.fd) for item in listeners}
    dup_map[pool.fileno()] = os.dup(pool.fileno())
    for old, new in dup_map.items():
        text = text.replace(f'"fd": {old},', f'"fd": {new},').replace(f"[{old}]", f"[{new}]")
    environ = {ENV_NAME: text}
    state = take_state(environ)
    assert state is not None and ENV_NAME not in environ
    assert state.previous_workers == [(1, 1234)] and state.daemonized
    assert state.origin_cwd == "/somewhere"
    assert [(item.protocol, item.unix_path) for item in state.listeners] == [
        ("uwsgi", unix), ("http", None)]
    assert state.listeners[0].unix_inode == listeners[0].unix_inode
    assert state.listeners[1].sock.getsockname() == listeners[1].sock.getsockname()
    assert list(state.pool_sockets.values())[0].getsockname() == pool.getsockname()
    assert not os.get_inheritable(state.listeners[0].fd)
    # reusing inherited sockets: same address → no new bind; port 0 → same host's socket
    rebuilt = build_listeners(make_config(socket=(unix,), http_socket=("127.0.0.1:0",)),
                              inherited=state.listeners)
    assert [item.fd for item in rebuilt] == [item.fd for item in state.listeners]
    for item in [*listeners, *rebuilt]:
        item.sock.close()
    pool.close()
    assert take_state({}) is None


def test_process_title() -> None:
    plain = make_config(auto_procname=False, procname_prefix=None,
                            procname_prefix_spaced=None)
    assert process_title(plain, "uzerg worker 1") is None
    auto = make_config(auto_procname=True, procname_prefix="x-",
                           procname_prefix_spaced=None)
    assert process_title(auto, "uzerg worker 1") == "x-uzerg worker 1"
    spaced = make_config(auto_procname=True, procname_prefix=None,
                             procname_prefix_spaced="site")
    assert process_title(spaced, "uzerg master") == "site uzerg master"
    prefix_only = make_config(auto_procname=False, procname_prefix="p:",
                                  procname_prefix_spaced=None)
    assert (process_title(prefix_only, "uzerg master") or "").startswith("p:")


def test_listener_records_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    listener = Listener(sock, "http", "bound")
    assert listener.server_port == str(sock.getsockname()[1])
    sock.close()


def test_ipv6_socket_log_line() -> None:
    import io

    from uzerg.logs import configure_logging

    out = io.StringIO()
    configure_logging(stream=out)
    try:
        listeners = build_listeners(make_config(http_socket=("[::1]:0",)))
    except StartupError:
        pytest.skip("no IPv6 loopback")
    finally:
        configure_logging()
    listeners[0].sock.close()
    line = out.getvalue()
    assert "uwsgi socket 0 bound to TCP6 address [::1]:" in line
    assert "(port auto-assigned) fd " in line


@pytest.mark.parametrize("host", ["127.0.0.1", "127.255.1.2", "128.0.0.1", "0.0.0.0", "10.0.0.1",
                                  "::1", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1",
                                  "fe80::1%lo", "::2", "::127.0.0.1", "2001:db8::1"])
def test_the_loopback_check_is_ipaddress_s(host: str) -> None:
    import ipaddress

    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    assert is_loopback_address(family, host) is address.is_loopback
