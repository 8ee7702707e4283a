"""Process-level test helpers: start ``python -m uzerg`` in its own session, wait for log lines,
ports, workers and conditions with deadlines, talk HTTP/uwsgi over raw sockets, and kill every
process that was started (by pid) when the test ends. No bare sleeps: everything polls.

The ``uzerg`` fixture (integration/conftest.py) returns an ``InstanceStarter``; ``start(args)``
returns an ``Instance``. Bind TCP sockets to port 0 and read the port from the start-up log
(``instance.address(0)``): no race for free ports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from peer_helpers import connect_to, uwsgi_request, wait_until

__all__ = ["Instance", "InstanceStarter", "http_get", "uwsgi_request", "wait_until"]

_BOUND = re.compile(r"uwsgi socket (\d+) bound to (TCP|UNIX) address (\S+)")


def http_get(address: str, path: str = "/", timeout: float = 10,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.0-style GET over a fresh connection; (status, body). Raises OSError."""
    sock = connect_to(address, timeout)
    with sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n"
                     .encode())
        data = _read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionError(f"no response from {address}")
    status = int(head.split(b" ", 2)[1])
    return status, body


def read_stats(address: str, timeout: float = 10) -> dict[str, Any]:
    """The stats server's JSON document (raw or wrapped in HTTP)."""
    with connect_to(address, timeout) as sock:
        data = _read_all(sock)
    if data.startswith(b"HTTP/"):
        data = data.partition(b"\r\n\r\n")[2]
    return dict(json.loads(data))


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while piece := sock.recv(65536):
        chunks.append(piece)
    return b"".join(chunks)


class Instance:
    """A started uzerg master: pid, log, sockets; every method waits with a deadline."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    # -- the log -------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """A position in the log: later waits look only after it."""
        return len(self.log_text())

    def wait_for_log(self, text: str, timeout: float = 15, since: int = 0,
                     count: int = 1) -> str:
        """The first line containing ``text`` (after ``since``), once ``count`` lines have it."""
        def find() -> str | None:
            lines = [ln for ln in self.log_text()[since:].splitlines() if text in ln]
            return lines[0] if len(lines) >= count else None
        return str(self._wait(find, timeout, f"{count} x {text!r} in the log"))

    def _wait(self, condition: Callable[[], object], timeout: float, what: str) -> object:
        def alive_condition() -> object:
            result = condition()
            if not result and self.process.poll() is not None:
                raise AssertionError(f"uzerg exited with status {self.process.returncode} "
                                     f"while waiting for {what}")
            return result
        try:
            return wait_until(alive_condition, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log:\n{self.log_text()[-4000:]}") from None

    # -- sockets and processes -----------------------------------------------------------------

    def address(self, index: int = 0, timeout: float = 15) -> str:
        """The address of ``uwsgi socket INDEX`` as bound (auto-assigned ports resolved)."""
        def find() -> str | None:
            for match in _BOUND.finditer(self.log_text()):
                if int(match.group(1)) == index:
                    return match.group(3)
            return None
        return str(self._wait(find, timeout, f"socket {index} in the log"))

    def worker_pids(self, expected: int | None = None, timeout: float = 15) -> list[int]:
        """Living workers (the master's children); with ``expected``, wait for that many."""
        def children() -> list[int]:
            try:
                return sorted(c.pid for c in psutil.Process(self.pid).children()
                              if c.status() != psutil.STATUS_ZOMBIE)
            except psutil.Error:
                return []
        if expected is None:
            return children()

        def exactly() -> list[int] | None:
            pids = children()
            return pids if len(pids) == expected else None
        return list(self._wait(exactly, timeout, f"{expected} workers"))  # type: ignore[arg-type]

    def wait_ready(self, workers: int, timeout: float = 20) -> None:
        self.wait_for_log("spawned uWSGI master process", timeout)
        self.worker_pids(workers, timeout)

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 20) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"uzerg did not exit within {timeout} s; log:\n"
                                 f"{self.log_text()[-4000:]}") from None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.send(signum)
        return self.wait_exit(timeout)


_IGNORING_WRAPPER = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGQUIT, signal.SIG_IGN)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'uzerg'] + sys.argv[1:])\n"
)


class InstanceStarter:
    """Starts instances and remembers every pid they ever had, to kill leftovers."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.instances: list[Instance] = []
        self.pids: set[int] = set()

    def start(self, args: list[str], *, wait_workers: int | None = 1, timeout: float = 20,
              env: dict[str, str] | None = None, cwd: Path | None = None,
              as_background_job: bool = False, prefix: Sequence[str] = ()) -> Instance:
        """``python -m uzerg ARGS`` in a new session, its output to a log file in tmp_path.
        Waits for ``wait_workers`` workers (None: do not wait). ``as_background_job``: start
        it with SIGINT and SIGQUIT ignored, as a shell's ``cmd &`` does. ``prefix``: a
        command that execs the rest in place (same pid), e.g. ``nsenter`` into a namespace."""
        log_path = self.tmp_path / f"uzerg-{len(self.instances)}.log"
        environ = {**os.environ, **(env or {})}
        command = [sys.executable, "-m", "uzerg", *args]
        if as_background_job:
            command = [sys.executable, "-c", _IGNORING_WRAPPER, *args]
        command = [*prefix, *command]
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=cwd or self.tmp_path, env=environ,
            )
        instance = Instance(process, log_path)
        self.instances.append(instance)
        self.pids.add(process.pid)
        if wait_workers:
            instance.wait_ready(wait_workers, timeout)
            self.track(instance)
        return instance

    def track(self, instance: Instance) -> None:
        """Remember the instance's current children too (call after respawns or reloads)."""
        try:
            self.pids.update(c.pid for c in psutil.Process(instance.pid).children(True))
        except psutil.Error:
            pass

    def cleanup(self) -> None:
        for instance in self.instances:
            self.track(instance)
        # masters first: a master that outlives one of its workers by a moment respawns it,
        # and the new worker is in no list
        masters = [instance.pid for instance in self.instances]
        for pid in masters + sorted(self.pids - set(masters)):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for instance in self.instances:
            try:
                instance.process.wait(10)
            except subprocess.TimeoutExpired:
                pass


def write_app(path: Path, body: str = "hello", slow_seconds: float = 3.0) -> Path:
    """A WSGI app file: ``/`` answers ``body`` and the pid; ``/slow`` waits first (polling a
    file named ``release`` next to it, when that exists, so tests can end the wait early)."""
    path.write_text(f'''
import os, time

def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        release = os.path.join(os.path.dirname(__file__), "release")
        deadline = time.monotonic() + {slow_seconds}
        while time.monotonic() < deadline and not os.path.exists(release):
            time.sleep(0.01)
    if path == "/crash":
        raise RuntimeError("boom")
    if path == "/hang":
        while True:
            time.sleep(0.05)
    body = ("{body} " + str(os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
''')
    return path
