"""Shared helpers of the real-peer tests (nginx, uwsgi_curl, curl, real-world configs):
free ports, deadlines, a uwsgi-protocol client, and `Server`, the handle of a started
instance (see peer_fixtures.py for the fixtures that start them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from uzerg.protocols.uwsgi import encode_uwsgi_packet

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
SOCKET_OPTIONS = ("--socket", "-s", "--http-socket", "--uwsgi-socket")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
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
    with _connect(address, timeout) as sock:
        sock.sendall(encode_uwsgi_packet(env, body))
        chunks = []
        while piece := sock.recv(65536):
            chunks.append(piece)
    return b"".join(chunks)


class Server:
    """A started uzerg (or uWSGI) instance: its master's pid, its log, its first socket."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path,
                 socket_address: str) -> None:
        self.process = process
        self.log_path = log_path
        self.socket_address = socket_address

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        """The first log line containing `text`, waiting for it up to `timeout`."""
        def find() -> str | None:
            for line in self.log_text().splitlines():
                if text in line:
                    return line
            return None
        try:
            return str(wait_until(find, timeout, f"{text!r} in the log"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log:\n{self.log_text()[-3000:]}") from None

    def worker_pids(self, expected: int | None = None, timeout: float = 10) -> list[int]:
        """Pids of the workers (the master's children); with `expected`, wait for that many."""
        def children() -> list[int]:
            try:
                return [c.pid for c in psutil.Process(self.pid).children()
                        if c.status() != psutil.STATUS_ZOMBIE]
            except psutil.Error:
                return []
        if expected is None:
            return children() or [self.pid]
        return list(wait_until(lambda: len(pids := children()) == expected and pids, timeout,
                               f"{expected} workers"))  # type: ignore[arg-type]

    def uwsgi_get(self, path: str) -> str:
        """Body of GET `path` sent over the uwsgi protocol to the server's socket."""
        response = uwsgi_request(self.socket_address, path)
        head, _, body = response.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], response[:500]
        return body.decode()

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"server exited with status {self.process.returncode}:\n{self.log_text()}"
            )
        try:
            _connect(self.socket_address, 1).close()
        except OSError:
            return False
        return True

    def stop(self, signum: int = signal.SIGINT, timeout: float = 10) -> int:
        """Send `signum` to the master and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            os.kill(self.pid, signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not exit within {timeout} s of signal "
                                 f"{signum}:\n{self.log_text()}") from None

    def kill(self) -> None:
        """SIGKILL the master and every descendant it still has, by pid."""
        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            family = []
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for child in family:
            try:
                child.kill()
            except psutil.Error:
                pass


def socket_address_of(args: list[str]) -> str:
    """The first --socket/--http-socket value of a command line."""
    for index, arg in enumerate(args):
        for option in SOCKET_OPTIONS:
            if arg == option:
                return args[index + 1]
            if arg.startswith(option + "="):
                return arg.split("=", 1)[1]
    raise ValueError(f"no socket option in {args}: pass socket_address=")
