"""Handshake hygiene of a running uzerg zerg server and its zergs (SPEC §2, §3, §4.2): no
descriptor leak over 1,000 attachments, bad peers never stall the master, more than 253
sockets, the protocol hint, and the peer-credential allow-lists."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from structlog.testing import capture_logs
from support.clients import ClientLoop, get
from support.processes import (
    Instance,
    InstanceStarter,
    python_for_nobody,
    unique_abstract,
    wait_until,
    write_version_app,
)

from uzerg.addresses import bind_listener, parse_address
from uzerg.zerg import ZergServer, fetch_sockets
from uzerg.zerg.handshake import HEADER_SIZE


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_version_app(tmp_path / "app.py", "v1")


def master_fds(inst: Instance) -> int:
    return psutil.Process(inst.pid).num_fds()


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def start_server(uzerg: InstanceStarter, app: Path, zerg_server: str, *sockets: str,
                 workers: int = 1, extra: tuple[str, ...] = ()) -> Instance:
    inst = uzerg.start(["--wsgi-file", str(app), "--processes", str(workers),
                        "--zerg-server", zerg_server, *sockets, *extra], wait_workers=workers)
    inst.wait_for_log(f"*** Zerg server enabled on {zerg_server} ***")
    return inst


def pause(inst: Instance, workers: int = 1) -> None:
    since = inst.mark()
    inst.send(signal.SIGTSTP)
    inst.wait_for_log("suspended ***", since=since, count=workers)


def test_a_thousand_attaches_leak_no_descriptor(uzerg: InstanceStarter, app: Path,
                                                tmp_path: Path) -> None:
    server = str(tmp_path / "zs")
    inst = start_server(uzerg, app, server, "--socket", str(tmp_path / "a.sock"),
                        "--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0")
    fetch_sockets(server, 5).sockets[0].close()  # warm-up: lazy imports, log file
    for sock in fetch_sockets(server, 5).sockets[1:]:
        sock.close()
    master_before, client_before = master_fds(inst), own_fds()
    started = time.perf_counter()
    for _ in range(1000):
        received = fetch_sockets(server, 5)
        assert len(received.sockets) == 3
        assert received.protocols == ["uwsgi", "uwsgi", "http"]
        for sock in received.sockets:
            sock.close()
    per_attach_ms = time.perf_counter() - started  # seconds for 1000 = ms for one
    print(f"\n1000 attaches: {per_attach_ms:.3f} ms each; master fds {master_before}, "
          f"client fds {client_before}")
    assert own_fds() == client_before
    # (the baseline may include the warm-up's connection, which the master closes just after
    # sending: never more than before, then; a leak would add 1,000)
    wait_until(lambda: master_fds(inst) <= master_before, 10,
               f"the master back at {master_before} fds (now {master_fds(inst)})")
    inst.wait_for_log("sockets handed to zerg pid", count=1002)
    assert get(inst.address(2)).startswith("v1 ")


def _burst(server: str, count: int, held: list[socket.socket]) -> None:
    """``count`` connections as fast as possible, none of them ever read."""
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # blocking, bounded: a unix connect waits while the server's backlog is full
        # (settimeout() would make it non-blocking, and fail with EAGAIN at once)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", 20, 0))
        held.append(sock)
        sock.connect(server)


def test_bad_peers_never_stall_the_master(uzerg: InstanceStarter, app: Path,
                                          tmp_path: Path) -> None:
    server = str(tmp_path / "zs")
    inst = start_server(uzerg, app, server, "--http-socket", "127.0.0.1:0")
    address = inst.address(0)
    baseline = master_fds(inst)
    held: list[socket.socket] = []
    try:
        for _ in range(20):  # garbage senders: a zerg server reads nothing, sends its list
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(sock)
            sock.connect(server)
            try:
                sock.sendall(os.urandom(4096))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server already sent its list and closed: that is fine too
        for _ in range(20):  # peers that connect and leave at once
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(server)
        loop = ClientLoop(address, concurrency=2, seconds=60)
        burst = threading.Thread(target=_burst, args=(server, 1000, held), daemon=True)
        burst.start()
        try:
            since = inst.mark()
            inst.send(signal.SIGUSR1)
            inst.wait_for_log("workers total requests:", since=since)
            inst.send(signal.SIGTTIN)
            inst.worker_pids(2)
            loop.wait_for_more(20)
            burst.join(60)
            assert not burst.is_alive()
            since = inst.mark()
            inst.send(signal.SIGUSR1)
            inst.wait_for_log("workers total requests:", since=since)
            loop.wait_for_more(20)
        finally:
            loop.stop()
        assert loop.errors == []

        def peers_done() -> bool:  # a peer gone before it was served is dropped, and logged
            text = inst.log_text()
            return text.count("sockets handed to zerg pid") + text.count("dropped a peer") >= 1040
        wait_until(peers_done, 30, "every peer handed its list or dropped")
        assert inst.log_text().count("sockets handed to zerg pid") >= 1020
        # every unread peer got its full list: 14 bytes and one descriptor
        data, ancillary, _flags, _ = held[-1].recvmsg(64, socket.CMSG_SPACE(16))
        assert data[:10] == b"uwsgi-zerg" and len(ancillary) == 1
        for _level, _kind, chunk in ancillary:
            os.close(int.from_bytes(chunk[:4], "little"))
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: master_fds(inst) <= baseline, 10, "the master back at its fd count")
    zerg = uzerg.start(["--zerg", server, "--wsgi-file", str(app)])
    zerg.wait_for_log("zerg sockets attached")


def test_more_than_253_sockets_are_all_handed_and_served(uzerg: InstanceStarter, app: Path,
                                                         tmp_path: Path) -> None:
    sockets_dir = tmp_path / "s"
    sockets_dir.mkdir()
    paths = [str(sockets_dir / f"{index}.sock") for index in range(300)]
    args = [arg for path in paths for arg in ("--socket", path)]
    server = str(tmp_path / "zs")
    inst = start_server(uzerg, app, server, *args)
    inst.wait_for_log("300 sockets are sent in several messages; a uWSGI zerg only gets the "
                      "first 253")
    zerg = uzerg.start(["--zerg", server, "--wsgi-file", str(app)])
    zerg.wait_for_log("zerg sockets attached")
    log = zerg.log_text()
    for index in (0, 252, 253, 299):
        assert f"uwsgi zerg socket {index} attached to UNIX address {paths[index]} fd " in log
    assert "uwsgi zerg socket 300 " not in log
    pause(inst)
    (worker,) = zerg.worker_pids(1)
    for path in paths:
        assert get(path, "uwsgi") == f"v1 {worker}", path


@pytest.mark.parametrize("protocol", [None, "uwsgi"])
def test_zerg_of_an_http_socket_speaks_http_unless_told(
    uzerg: InstanceStarter, app: Path, tmp_path: Path, protocol: str | None
) -> None:
    server = str(tmp_path / "zs")
    inst = start_server(uzerg, app, server, "--http-socket", "127.0.0.1:0")
    address = inst.address(0)
    extra = ["--protocol", protocol] if protocol else []
    zerg = uzerg.start(["--zerg", server, "--wsgi-file", str(app), *extra])
    zerg.wait_for_log("zerg sockets attached")
    pause(inst)
    (worker,) = zerg.worker_pids(1)
    # no --protocol: the server's hint says http; an explicit --protocol wins
    assert get(address, protocol or "http") == f"v1 {worker}"


# -- peer credentials ------------------------------------------------------------------------

NOBODY_CLIENT = r"""
import array, os, select, socket, sys
name = sys.argv[1]
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.settimeout(10)
client.connect(b"\0" + name.encode() + b"\0")
fds = array.array("i")
data, ancillary, _flags, _ = client.recvmsg(64, socket.CMSG_SPACE(16 * fds.itemsize))
for level, kind, chunk in ancillary:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(chunk[: len(chunk) - len(chunk) % fds.itemsize])
print(len(data), len(fds), flush=True)
if fds:  # serve one request on the received socket (never touching its flags)
    listener = socket.socket(fileno=fds[0])
    while True:
        if not select.select([listener], [], [], 20)[0]:
            sys.exit(3)
        try:
            conn, _ = listener.accept()
            break
        except BlockingIOError:
            continue
    conn.setblocking(True)
    conn.recv(4096)
    body = b"nobody %d" % os.getpid()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    conn.close()
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a peer as nobody")


@pytest.fixture
def nobody_peers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for child in started:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait(10)


def attach_as_nobody(name: str, started: list[subprocess.Popen[str]],
                     drive: Callable[[], object] | None = None,
                     ) -> tuple[subprocess.Popen[str], str]:
    """Start the stdlib client as uid/gid 65534; its pid and its first output line. ``drive``
    is called while waiting (the loop of a zerg server run in this process)."""
    with tempfile.TemporaryDirectory() as scratch:  # readable by nobody, unlike tmp_path
        os.chmod(scratch, 0o755)
        script = Path(scratch) / "client.py"
        script.write_text(NOBODY_CLIENT)
        script.chmod(0o644)
        child = subprocess.Popen([python_for_nobody(), str(script), name[1:]], user=65534,
                                 group=65534, extra_groups=[], stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True, cwd="/")
        started.append(child)
        assert child.stdout is not None
        deadline = time.monotonic() + 20
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            while not selector.select(0.02):
                if drive is not None:
                    drive()
                if time.monotonic() > deadline:
                    raise AssertionError("the nobody client printed nothing within 20 s")
        return child, child.stdout.readline().strip()


@needs_root
def test_a_peer_of_another_uid_is_refused_and_logged(
    uzerg: InstanceStarter, app: Path, tmp_path: Path,
    nobody_peers: list[subprocess.Popen[str]],
) -> None:
    name = unique_abstract("test")
    inst = start_server(uzerg, app, name, "--http-socket", "127.0.0.1:0")
    inst.wait_for_log(f"zerg server {name}: abstract unix sockets have no file permissions")
    child, line = attach_as_nobody(name, nobody_peers)
    assert line == "0 0"  # nothing at all: no header, no descriptor
    assert child.wait(10) == 0
    inst.wait_for_log(f"zerg server {name}: refused zerg pid {child.pid} uid 65534 gid 65534")
    assert "sockets handed to zerg pid" not in inst.log_text()


@needs_root
@pytest.mark.parametrize("allow", ["--zerg-allow-uid", "--zerg-allow-gid"])
def test_allow_lists_admit_a_peer_of_another_uid(
    uzerg: InstanceStarter, app: Path, tmp_path: Path,
    nobody_peers: list[subprocess.Popen[str]], allow: str,
) -> None:
    name = unique_abstract("test")
    inst = start_server(uzerg, app, name, "--http-socket", "127.0.0.1:0",
                        extra=(allow, "65534"))
    address = inst.address(0)
    pause(inst)  # the next request can only be served by the nobody peer
    child, line = attach_as_nobody(name, nobody_peers)
    assert line == "14 1"
    inst.wait_for_log(f"1 sockets handed to zerg pid {child.pid} uid 65534")
    assert get(address) == f"nobody {child.pid}"
    assert child.wait(10) == 0


def test_zerg_server_file_follows_the_umask(uzerg: InstanceStarter, app: Path,
                                            tmp_path: Path) -> None:
    server = tmp_path / "zs"
    old = os.umask(0o002)
    try:
        start_server(uzerg, app, str(server), "--socket", str(tmp_path / "a.sock"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(server).st_mode) == 0o775
    assert stat.S_ISSOCK(os.stat(server).st_mode)


# -- the same credential checks on a ZergServer object driven by this process ------------

@pytest.fixture
def tcp_listeners() -> Iterator[list[socket.socket]]:
    socks = [bind_listener(parse_address("127.0.0.1:0"), 8) for _ in range(3)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


@needs_root
def test_server_object_refuses_and_records_a_peer_of_another_uid(
    tcp_listeners: list[socket.socket], nobody_peers: list[subprocess.Popen[str]],
) -> None:
    name = unique_abstract("obj")  # abstract: no file permissions stand in the way of the peer
    server = ZergServer(name, tcp_listeners)
    server.start()
    try:
        with capture_logs() as logs:
            child, line = attach_as_nobody(name, nobody_peers, server.handle_readable)
    finally:
        server.close(vacuum=True)
    assert server.refuse_count == 1
    assert line == "0 0"  # refused: nothing sent at all
    assert server.attach_count == 0
    refused = server.refused[0]
    assert (refused.pid, refused.uid) == (child.pid, 65534)
    assert any(
        f"refused zerg pid {child.pid} uid 65534" in e["event"] and e["log_level"] == "warning"
        for e in logs
    )


@needs_root
@pytest.mark.parametrize("allow", [{"allow_uids": [65534]}, {"allow_gids": [65534]}])
def test_server_object_allow_lists_admit_another_uid(
    tcp_listeners: list[socket.socket], nobody_peers: list[subprocess.Popen[str]],
    allow: dict[str, list[int]],
) -> None:
    name = unique_abstract("obj")
    server = ZergServer(name, tcp_listeners, **allow)  # type: ignore[arg-type]
    server.start()
    try:
        child, line = attach_as_nobody(name, nobody_peers, server.handle_readable)
    finally:
        server.close(vacuum=True)
    assert line == f"{HEADER_SIZE} 3"
    assert server.attached[0].pid == child.pid


@needs_root
@pytest.mark.parametrize("allow", [(), ("--zerg-allow-uid", "65534"),
                                   ("--zerg-allow-gid", "65534")],
                         ids=["default", "allow-uid", "allow-gid"])
def test_a_pool_checks_the_peer_uid_like_a_zerg_server(
    uzerg: InstanceStarter, nobody_peers: list[subprocess.Popen[str]], allow: tuple[str, ...],
) -> None:
    """A pool (as a zerg server) serves its own uid and root by default; the allow-lists
    widen it. The peer runs as uid/gid 65534."""
    name = unique_abstract("pool")
    pool = uzerg.start(["--master", *allow, "--zergpool", f"{name}:127.0.0.1:0"],
                       wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    bound = pool.wait_for_log(f"zergpool {name} bound to TCP socket")
    address = re.search(r"bound to TCP socket (\S+)", bound)
    assert address is not None
    child, line = attach_as_nobody(name, nobody_peers)
    if not allow:
        assert line == "0 0"  # nothing at all: no header, no descriptor
        assert child.wait(10) == 0
        pool.wait_for_log(f"zergpool {name}: refused zerg pid {child.pid} uid 65534 gid 65534")
        return
    assert line == "14 1"
    pool.wait_for_log(f"zergpool {name}: 1 sockets handed to zerg pid {child.pid} uid 65534")
    assert get(address.group(1)) == f"nobody {child.pid}"
    assert child.wait(10) == 0
