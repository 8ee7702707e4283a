"""Hostile clients against a real instance (issue 11): slow-loris heads over HTTP and the uwsgi
protocol, a 10 MB header block, a client that never reads its response."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from support.clients import connect_to, dribbling, http_get, read_stats, uwsgi_request
from support.processes import InstanceStarter, wait_until

from uzerg.protocols.uwsgi import encode_uwsgi_packet

LORIS = 300


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@contextmanager
def slow_loris(address: str, first: bytes, drip: bytes) -> Iterator[list[socket.socket]]:
    """LORIS connections that each send `first`, then `drip` once a second, until the block
    ends. Yields once every connection has dripped twice (its head is still incomplete)."""
    socks = [socket.create_connection(_host_port(address), timeout=5) for _ in range(LORIS)]
    for sock in socks:
        sock.sendall(first)
    with dribbling(socks, drip, every=1.0) as rounds:
        wait_until(lambda: rounds[0] >= 2, 10, "two drips on every slow connection")
        yield socks


def _still_open(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.settimeout(0)  # with a timeout, Python would wait for data
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


_UWSGI_PACKET = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/",
                                     "X_PADDING": "p" * 200})
# per protocol: the socket option, what each slow client sends first and then once a second
# (a head that never ends; for uwsgi the header and part of the vars, then a byte at a time),
# and what it gets at the deadline (the uwsgi protocol has no error response: a close)
LORIS_CASES = {
    "http": ("--http-socket", b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n",
             b"HTTP/1.1 408 Request Timeout\r\n"),
    "uwsgi": ("--socket", _UWSGI_PACKET[:40], b"p", b""),
}


def _normal_request(protocol: str, address: str) -> bool:
    if protocol == "http":
        status, body = http_get(address, timeout=5)
        return status == 200 and body.startswith(b"hello")
    reply = uwsgi_request(address, "/", timeout=5)
    return reply.startswith(b"HTTP/1.1 200 OK") and b"hello" in reply


@pytest.mark.parametrize("protocol", sorted(LORIS_CASES))
def test_slow_loris_does_not_stop_a_normal_client(uzerg: InstanceStarter, app_file: Path,
                                                  protocol: str) -> None:
    option, first, drip, last_word = LORIS_CASES[protocol]
    instance = uzerg.start([option, "127.0.0.1:0", "--wsgi-file", str(app_file), "--master",
                            "--processes", "2", "--listen", "1024", "--socket-timeout", "3"],
                           wait_workers=2)
    address = instance.address(0)
    with slow_loris(address, first, drip) as socks:
        for _ in range(3):
            started = time.monotonic()
            assert _normal_request(protocol, address)
            assert time.monotonic() - started < 2.0
        assert sum(_still_open(sock) for sock in socks) > LORIS * 0.9  # held, not refused
        # the whole head has a deadline (socket-timeout here)
        socks[0].settimeout(10)
        reply = socks[0].recv(100)
        assert reply.startswith(last_word) and (last_word or reply == b"")
    # the worker logs the timeout after it has sent the 408 and closed: the line may come a
    # moment after the client has read it
    instance.wait_for_log("request head incomplete after 3 s", timeout=10)


def test_pending_heads_beyond_the_cap_close_the_oldest(uzerg: InstanceStarter,
                                                       app_file: Path) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--processes", "1", "--max-pending-heads", "5",
                            "--socket-timeout", "30"])
    address = instance.address(0)
    socks = []
    try:
        for _ in range(8):
            sock = socket.create_connection(_host_port(address), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\n")
            socks.append(sock)  # one worker accepts in connect order: the first is the oldest
        for sock in socks[:3]:
            assert sock.recv(100).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        for sock in socks[3:]:
            assert _still_open(sock)
            sock.sendall(b"Host: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in socks:
            sock.close()
    assert "too many pending heads: request head incomplete" in instance.log_text()


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_10_mb_header_block_gets_431_with_memory_bounded(uzerg: InstanceStarter,
                                                           app_file: Path) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--processes", "1"])
    address = instance.address(0)
    [worker] = instance.worker_pids(1)
    assert http_get(address)[0] == 200
    before = _peak_rss(worker)
    sock = socket.create_connection(_host_port(address), timeout=10)
    sent = [0]

    def flood() -> None:
        piece = b"X-Big: " + b"a" * 65536 + b"\r\n"
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            while sent[0] < 10 * 1024 * 1024:
                sock.sendall(piece)
                sent[0] += len(piece)
        except OSError:
            pass  # the server answered and closed

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        reply = sock.recv(200)
    finally:
        thread.join(15)
        sock.close()
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert _peak_rss(worker) - before < 20 * 1024 * 1024
    assert http_get(address)[0] == 200  # and the worker serves on
    assert instance.worker_pids(1) == [worker]


def test_a_client_that_never_reads_frees_the_worker_at_the_socket_timeout(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    app = tmp_path / "big.py"
    app.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    if environ['PATH_INFO'] == '/big':\n"
        "        return [b'x' * (1 << 20)] * 64\n"
        "    return [b'small']\n"
    )
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                            "--master", "--processes", "1", "--socket-timeout", "1"])
    address = instance.address(0)
    stuck = socket.create_connection(_host_port(address), timeout=10)
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        instance.wait_for_log("timeout writing the response", timeout=10)
        started = time.monotonic()
        status, body = http_get(address, "/small", timeout=10)
        assert status == 200 and body == b"small"
        assert time.monotonic() - started < 3
        worker = psutil.Process(instance.worker_pids(1)[0])
        assert worker.is_running()
    finally:
        stuck.close()


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_a_client_that_never_reads_a_static_file_frees_the_worker(
    uzerg: InstanceStarter, app_file: Path, tmp_path: Path, family: str
) -> None:
    # the file goes out with a blocking sendfile(): bounded by SO_SNDTIMEO, which a TCP
    # connection inherits from its listener (set once by the worker) and a unix one gets set
    site = tmp_path / "site"
    site.mkdir()
    with open(site / "big.bin", "wb") as big:
        big.truncate(64 << 20)  # more than any socket buffer holds
    (site / "small.txt").write_bytes(b"small")
    where = "127.0.0.1:0" if family == "tcp" else str(tmp_path / "http.sock")
    instance = uzerg.start(["--http-socket", where, "--wsgi-file", str(app_file),
                            "--master", "--processes", "1", "--socket-timeout", "1",
                            "--static-map", f"/static={site}"])
    address = instance.address(0)
    for round_ in range(2):  # the second time on a connection of the same listener
        stuck = connect_to(address, 10)
        try:
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda n=round_: instance.log_text().count(
                "timeout writing the response") > n, 10, "the worker's send timeout")
            started = time.monotonic()
            status, body = http_get(address, "/static/small.txt", timeout=10)
            assert (status, body) == (200, b"small")
            # the timeout has fired (the log line): the worker is free, only load slows this
            assert time.monotonic() - started < 6
        finally:
            stuck.close()
    assert psutil.Process(instance.worker_pids(1)[0]).is_running()


GRABBER = '''
import errno, os, threading, time

held = []

def grab(seconds):
    # every free descriptor for `seconds`, the one of the /grab connection too once the
    # worker has closed it (taken again and again during the first half second)
    until = time.monotonic() + 0.5
    while time.monotonic() < until:
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        time.sleep(0.01)
    time.sleep(seconds)
    while held:
        os.close(held.pop())

def application(environ, start_response):
    if environ["PATH_INFO"] == "/grab":
        threading.Thread(target=grab, args=(float(environ["QUERY_STRING"]),)).start()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def test_workers_back_off_when_out_of_descriptors_and_recover(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    app = tmp_path / "grabber.py"
    app.write_text(GRABBER)
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                            "--master", "--processes", "1", "--enable-threads"],
                           prefix=["prlimit", "--nofile=64:64"])
    address = instance.address(0)
    [worker_pid] = instance.worker_pids(1)
    worker = psutil.Process(worker_pid)
    assert http_get(address, "/grab?3", timeout=10)[0] == 200
    wait_until(lambda: worker.num_fds() == 64, 5, "the worker out of descriptors")
    answer: list[tuple[int, bytes]] = []
    waiting = threading.Thread(target=lambda: answer.append(http_get(address, timeout=20)),
                               daemon=True)
    cpu_before, started = sum(worker.cpu_times()[:2]), time.monotonic()
    waiting.start()
    instance.wait_for_log("accept(): Too many open files: retrying", timeout=10)
    since = instance.mark()
    instance.send(signal.SIGUSR1)  # the master answers signals meanwhile
    instance.wait_for_log("requests", since=since, timeout=5)
    assert not answer  # still out of descriptors: the request waits in the backlog
    waiting.join(20)
    assert answer and answer[0][0] == 200  # served once the descriptors were freed
    busy = (sum(worker.cpu_times()[:2]) - cpu_before) / (time.monotonic() - started)
    assert busy < 0.5, f"the worker spun at {busy:.0%} of a CPU while out of descriptors"
    assert instance.worker_pids(1) == [worker_pid]  # nothing died
    assert http_get(address)[0] == 200


def test_an_idle_keepalive_connection_does_not_hold_the_worker(uzerg: InstanceStarter,
                                                               app_file: Path) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--processes", "1", "--http-keepalive",
                            "--http-timeout", "30"])
    address = instance.address(0)
    with socket.create_connection(_host_port(address), timeout=10) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        started = time.monotonic()  # the connection now idles, kept alive
        assert http_get(address, timeout=10)[0] == 200
        assert time.monotonic() - started < 2.0
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # and it is still served
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_graceful_stop_finishes_a_head_in_progress(uzerg: InstanceStarter, app_file: Path,
                                                     tmp_path: Path) -> None:
    stats = str(tmp_path / "stats.sock")
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--processes", "1", "--socket-timeout", "20",
                            "--stats", stats])
    address = instance.address(0)
    with socket.create_connection(_host_port(address), timeout=10) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        # one worker accepts in order: once this one is answered, the slow one is parked
        assert http_get(address, timeout=10)[0] == 200
        instance.send(signal.SIGTERM)
        # the master retires its worker (signalled at once) and lists it no more
        wait_until(lambda: read_stats(stats)["workers"] == [], 10, "the worker retired")
        assert _still_open(slow)
        slow.sendall(b"Host: x\r\n\r\n")
        assert slow.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    assert instance.wait_exit(15) == 0
