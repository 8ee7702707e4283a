"""Raw clients of integration/test_options_served.py: an HTTP exchange that keeps the headers
and a uwsgi-protocol request that can carry SCRIPT_NAME (as nginx sends it), plus the
per-process I/O counters of /proc/PID/io (to tell sendfile() from a read loop)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from peer_helpers import connect_to

from uzerg.protocols.uwsgi import encode_uwsgi_packet

Reply = tuple[int, dict[str, str], bytes]


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


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while piece := sock.recv(1 << 20):
        chunks.append(piece)
    return b"".join(chunks)


def http_request(address: str, path: str, method: str = "GET", timeout: float = 10) -> Reply:
    """One request sent byte for byte (the path is not normalised: `..` stays `..`)."""
    with connect_to(address, timeout) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: served-test/1\r\n"
                     "Referer: http://ref.example/\r\nConnection: close\r\n\r\n".encode())
        return parse_reply(read_to_end(sock))


def uwsgi_get(address: str, path: str, script_name: str | None = None,
              timeout: float = 10) -> Reply:
    """GET over the uwsgi protocol with nginx's variables (and SCRIPT_NAME when given)."""
    uri, _, query = path.partition("?")
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": uri,
           "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    if script_name is not None:
        env["SCRIPT_NAME"] = script_name
    with connect_to(address, timeout) as sock:
        sock.sendall(encode_uwsgi_packet(env, b""))
        return parse_reply(read_to_end(sock))


def io_counters(pid: int) -> dict[str, int]:
    """/proc/PID/io: `syscr` counts read-like system calls (read(), and one per sendfile())."""
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value)
    return fields


def write_mount_app(path: Path, name: str) -> Path:
    """An app answering `NAME|SCRIPT_NAME|PATH_INFO` (`<none>` for a missing key)."""
    path.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [('{name}|' + environ.get('SCRIPT_NAME', '<none>') + '|'\n"
        "             + environ.get('PATH_INFO', '<none>')).encode()]\n")
    return path


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
