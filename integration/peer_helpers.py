"""Shared helpers of the real-peer tests (nginx, uwsgi_curl, curl, real-world configs): free
ports, deadlines, client commands and a uwsgi-protocol client. (peer_fixtures.py starts the
servers; harness.py is the process harness they build on.)"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from uzerg.protocols.uwsgi import encode_uwsgi_packet

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
SOCKET_OPTIONS = ("--socket", "-s", "--http-socket", "--uwsgi-socket")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_abstract(tag: str) -> str:
    """An ``@name`` that no other test run can hold, nor a real uWSGI left over from one:
    abstract names are machine-wide (per network namespace) and pids get reused."""
    return f"@uzerg-{tag}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def run_client(argv: list[str], timeout: float = 30,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client command (curl, uwsgi_curl) to completion (killed if it overruns); its
    output decoded as UTF-8 with line endings kept (CRLF of HTTP heads stays CRLF)."""
    result = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                            cwd=cwd)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


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


def uwsgi_request(address: str, path: str, body: bytes = b"", method: str = "GET",
                  timeout: float = 10) -> bytes:
    """One request in the uwsgi protocol (as nginx sends it); the raw response."""
    uri, _, query = path.partition("?")
    env = {"REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": uri,
           "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    with connect_to(address, timeout) as sock:
        sock.sendall(encode_uwsgi_packet(env, body))
        chunks = []
        while piece := sock.recv(65536):
            chunks.append(piece)
    return b"".join(chunks)


def socket_address_of(args: list[str]) -> str:
    """The first --socket/--http-socket value of a command line."""
    for index, arg in enumerate(args):
        for option in SOCKET_OPTIONS:
            if arg == option:
                return args[index + 1]
            if arg.startswith(option + "="):
                return arg.split("=", 1)[1]
    raise ValueError(f"no socket option in {args}: pass socket_address=")
