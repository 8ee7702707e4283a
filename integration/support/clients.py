"""Clients the tests run in-process over raw sockets: HTTP and uwsgi-protocol requests sent byte
for byte (so a test controls every header, and `..` stays `..`), the stats server's JSON, and
``ClientLoop``, threads doing requests back to back through a whole scenario. Addresses are
``host:port``, a unix path, or ``@name`` (abstract)."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from support.processes import wait_until
from uzerg.protocols.uwsgi import encode_uwsgi_packet

__all__ = [
    "ClientLoop", "Reply", "answering_pid", "connect_to", "get", "http_get", "http_request",
    "parse_reply", "read_all", "read_one_response", "read_stats", "seconds_until_closed",
    "send_and_read_to_close", "uwsgi_get", "uwsgi_request",
]

Reply = tuple[int, dict[str, str], bytes]


def connect_to(address: str, timeout: float) -> socket.socket:
    """Connect to ``host:port``, a unix path, or ``@name`` (uWSGI's ``\\0name\\0`` bytes)."""
    if address.startswith(("/", "@")):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        target: str | bytes = b"\0" + address[1:].encode() + b"\0" if address[0] == "@" else address
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock
    host, _, port = address.rpartition(":")
    return socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes."""
    chunks = []
    while piece := sock.recv(1 << 20):
        chunks.append(piece)
    return b"".join(chunks)


def parse_reply(data: bytes) -> Reply:
    """(status, lower-cased headers, body) of a raw HTTP response."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response: {data[:200]!r}")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers, body


def http_get(address: str, path: str = "/", timeout: float = 10,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET over a fresh connection (``Connection: close``); (status, body). Raises
    OSError."""
    with connect_to(address, timeout) as sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n"
                     .encode())
        data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionError(f"no response from {address}")
    return int(head.split(b" ", 2)[1]), body


def http_request(address: str, path: str, method: str = "GET", timeout: float = 10) -> Reply:
    """One request sent byte for byte (the path is not normalised: `..` stays `..`), with a
    User-Agent and a Referer for the request log."""
    with connect_to(address, timeout) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: served-test/1\r\n"
                     "Referer: http://ref.example/\r\nConnection: close\r\n\r\n".encode())
        return parse_reply(read_all(sock))


def read_one_response(sock: socket.socket) -> Reply:
    """One Content-Length-framed response from a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed before the end of the head: {data!r}")
        data += piece
    status, headers, body = parse_reply(data)
    while len(body) < int(headers["content-length"]):
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("closed in the body")
        body += piece
    return status, headers, body


def send_and_read_to_close(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` to 127.0.0.1:`port`, half-close, and read until the server closes; what
    arrived is returned.

    A server that closes with our bytes still unread makes the kernel reset the connection,
    and the reset can land at any step: during the send (EPIPE/ECONNRESET), before our
    half-close (shutdown() then fails with ENOTCONN) or while we read (ECONNRESET once the
    bytes that came before it are read). Each is a close; the bytes received before it are
    kept, so a response that came ahead of the reset is still seen whole."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
        try:
            while piece := sock.recv(65536):
                chunks.append(piece)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def seconds_until_closed(sock: socket.socket, limit: float = 15) -> float:
    """How long the server took to close an idle connection (reset counts as closed)."""
    sock.settimeout(limit)
    start = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def uwsgi_request(address: str, path: str, body: bytes = b"", method: str = "GET",
                  timeout: float = 10, script_name: str | None = None) -> bytes:
    """One request in the uwsgi protocol with nginx's variables (and SCRIPT_NAME when given);
    the raw response."""
    uri, _, query = path.partition("?")
    env = {"REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": uri,
           "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    if script_name is not None:
        env["SCRIPT_NAME"] = script_name
    with connect_to(address, timeout) as sock:
        sock.sendall(encode_uwsgi_packet(env, body))
        return read_all(sock)


def uwsgi_get(address: str, path: str, script_name: str | None = None,
              timeout: float = 10) -> Reply:
    """GET over the uwsgi protocol; (status, headers, body)."""
    return parse_reply(uwsgi_request(address, path, timeout=timeout, script_name=script_name))


def get(address: str, protocol: str = "http", path: str = "/", timeout: float = 10) -> str:
    """One request to ``address`` (``http`` or ``uwsgi`` protocol); the body of a 200 answer.
    Raises AssertionError for another status, OSError for a transport failure."""
    if protocol == "http":
        status, body = http_get(address, path, timeout=timeout)
    else:
        raw = uwsgi_request(address, path, timeout=timeout)
        head, _, body = raw.partition(b"\r\n\r\n")
        first = head.split(b"\r\n", 1)[0].split(b" ")
        if len(first) < 2 or not first[1].isdigit():
            raise ConnectionError(f"no valid response from {address}: {raw[:200]!r}")
        status = int(first[1])
    if status != 200:
        raise AssertionError(f"status {status} from {address}: {body[:200]!r}")
    return body.decode()


def answering_pid(address: str, protocol: str = "uwsgi") -> int:
    """The pid in the answer of an app whose body ends with its pid (write_app and
    write_version_app)."""
    return int(get(address, protocol).rsplit(" ", 1)[1])


@contextmanager
def dribbling(socks: list[socket.socket], drip: bytes, every: float) -> Iterator[list[int]]:
    """A thread sends ``drip`` on each of ``socks`` (never blocking) every ``every`` seconds
    until the block ends, then the sockets are closed. A socket the server has closed is left
    out from then on. Yields the number of rounds done so far (a one-item list)."""
    stop = threading.Event()
    rounds = [0]

    def dribble() -> None:
        alive = list(socks)
        while alive and not stop.is_set():
            for sock in list(alive):
                try:
                    sock.send(drip, socket.MSG_DONTWAIT)
                except OSError:
                    alive.remove(sock)
            rounds[0] += 1
            stop.wait(every)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        yield rounds
    finally:
        stop.set()
        thread.join(30)
        for sock in socks:
            sock.close()


def read_stats(address: str, timeout: float = 10) -> dict[str, Any]:
    """The stats server's JSON document (raw or wrapped in HTTP). A stats server comes up
    with the master's loop, a moment after the workers it reports on may already serve: a
    socket not there yet, or not listening yet, is waited for (up to ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = connect_to(address, timeout)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # polling for the socket, bounded by the deadline
    with sock:
        data = read_all(sock)
    if data.startswith(b"HTTP/"):
        data = data.partition(b"\r\n\r\n")[2]
    return dict(json.loads(data))


class ClientLoop:
    """``concurrency`` threads doing requests back to back (round-robin over ``addresses``)
    until stopped, ``limit`` requests or ``seconds`` have passed; every answer body and every
    failure (with its time) is recorded. The client timeout is long: a connection made while
    nobody accepts waits in the backlog, and that is not a failure if it is served later."""

    def __init__(self, addresses: list[str] | str, protocol: str = "http", path: str = "/",
                 concurrency: int = 2, limit: int = 20000, seconds: float = 90,
                 timeout: float = 30) -> None:
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        self.protocol = protocol
        self.path = path
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.timeout = timeout
        self.bodies: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._issued = 0
        self._done = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True)
                        for index in range(concurrency)]
        for thread in self.threads:
            thread.start()

    def _next(self) -> int | None:
        with self._lock:
            if self._done.is_set() or self._issued >= self.limit or \
                    time.monotonic() > self.deadline:
                return None
            self._issued += 1
            return self._issued

    def _run(self, index: int) -> None:
        while (number := self._next()) is not None:
            address = self.addresses[(number + index) % len(self.addresses)]
            try:
                self.bodies.append(get(address, self.protocol, self.path, self.timeout))
            except (OSError, AssertionError) as exc:
                self.errors.append(f"{time.strftime('%X')} {address}: {exc!r}")

    @property
    def count(self) -> int:
        return len(self.bodies)

    def wait_for_more(self, more: int, timeout: float = 20, what: str = "answers") -> None:
        """Wait until ``more`` answers beyond the current count have arrived."""
        target = self.count + more
        wait_until(lambda: self.count >= target or self.errors, timeout, f"{more} more {what}")
        assert not self.errors, self.errors[:5]

    def wait_for(self, predicate: Callable[[str], object], timeout: float = 20,
                 what: str = "an answer") -> None:
        """Wait until an answer (arriving from now on) satisfies ``predicate(body)``."""
        start = self.count

        def seen() -> bool:
            return bool(self.errors) or any(predicate(b) for b in self.bodies[start:])
        wait_until(seen, timeout, what)
        assert not self.errors, self.errors[:5]

    def served_by(self, start: int = 0) -> Counter[int]:
        """How many answers each pid gave (bodies are ``VERSION PID``)."""
        return Counter(int(body.rsplit(" ", 1)[1]) for body in self.bodies[start:])

    def stop(self) -> None:
        self._done.set()
        for thread in self.threads:
            thread.join(self.timeout + 10)
        assert not any(t.is_alive() for t in self.threads), "client threads did not finish"
