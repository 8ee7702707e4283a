"""Starting and stopping processes: ``python -m uzerg`` in its own session (``InstanceStarter``,
the ``uzerg`` fixture), any other program (``Processes``), waiting with deadlines
(``wait_until``), worker pids, SIGKILL by pid at teardown, the small WSGI app files the tests
serve, free ports and unique abstract names. No bare sleeps: everything polls.

Bind TCP sockets to port 0 and read the port from the start-up log (``instance.address(0)``):
no race for free ports. ``free_port()`` is for peers that cannot report their port.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest

__all__ = [
    "APPS", "REPO", "Instance", "InstanceStarter", "Processes", "app_file", "free_port",
    "io_counters", "kill_with_children", "pids_of", "processes", "python_for_nobody",
    "start_zerg",
    "unique_abstract", "uzerg", "wait_until", "write_app", "write_mount_app",
    "write_version_app",
]

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "integration" / "apps"
_BOUND = re.compile(r"uwsgi socket (\d+) bound to (TCP|UNIX) address (\S+)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for peers that cannot bind port 0 and say so)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_abstract(tag: str) -> str:
    """An ``@name`` that no other test run can hold, nor a real uWSGI left over from one:
    abstract names are machine-wide (per network namespace) and pids get reused."""
    return f"@uzerg-{tag}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something true (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def kill_with_children(process: subprocess.Popen[bytes] | subprocess.Popen[str],
                       timeout: float = 10) -> None:
    """SIGKILL a process and all its descendants, by pid, and reap it."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    for pid in [process.pid, *(child.pid for child in children)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


def io_counters(pid: int) -> dict[str, int]:
    """/proc/PID/io: `syscr` counts read-like system calls (read(), and one per sendfile())."""
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value)
    return fields


def python_for_nobody() -> str:
    """An interpreter uid 65534 can run (a pyenv under /root is out of its reach); skips the
    test when there is none."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3",
                      "/usr/local/bin/python3"):
        try:
            subprocess.run([candidate, "-c", ""], user=65534, group=65534, extra_groups=[],
                           check=True, timeout=20, capture_output=True)
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    pytest.skip("no python interpreter that uid 65534 can run")


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
              as_background_job: bool = False, prefix: Sequence[str] = (),
              pass_fds: Sequence[int] = ()) -> Instance:
        """``python -m uzerg ARGS`` in a new session, its output to a log file in tmp_path.
        Waits for ``wait_workers`` workers (None: do not wait). ``as_background_job``: start
        it with SIGINT and SIGQUIT ignored, as a shell's ``cmd &`` does. ``prefix``: a
        command that execs the rest in place (same pid), e.g. ``nsenter`` into a namespace.
        ``pass_fds``: descriptors the child inherits (a socket activator's)."""
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
                cwd=cwd or self.tmp_path, env=environ, pass_fds=tuple(pass_fds),
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


class Processes:
    """Starts other programs (the uwsgi binary, helper scripts) in their own session, output to
    ``tmp_path/NAME.log``; ``stop_all()`` stops each by pid: SIGINT (SIGTERM would make uWSGI
    2.0 reload), SIGKILL after a deadline, then SIGKILL of every descendant."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str],
              stdout: int | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``argv``; stdout goes to the log unless ``stdout`` (e.g. subprocess.PIPE)."""
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                argv, stdout=log_file if stdout is None else stdout, stderr=log_file,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.tmp_path,
            )
        self.started.append((process, log_path))
        return process, log_path

    def stop_all(self) -> None:
        for process, _ in reversed(self.started):
            try:
                children = psutil.Process(process.pid).children(recursive=True)
            except psutil.Error:
                children = []
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            for child in children:
                try:
                    child.kill()
                except psutil.Error:
                    pass


def pids_of(*instances: Instance) -> set[int]:
    """The current worker pids of instances (uzerg Instances or peer ``Server`` handles)."""
    pids: set[int] = set()
    for instance in instances:
        pids.update(instance.worker_pids())
    return pids


def start_zerg(uzerg: InstanceStarter, app: Path, *servers: str, workers: int = 1,
               extra: Sequence[str] = ()) -> Instance:
    """A zerg instance serving ``app`` with sockets from ``servers`` (zerg servers or pools);
    returns once its ``workers`` run and it logged ``zerg sockets attached``."""
    args = ["--wsgi-file", str(app), "--processes", str(workers), *extra]
    for server in servers:
        args += ["--zerg", server]
    inst = uzerg.start(args, wait_workers=workers)
    inst.wait_for_log("zerg sockets attached")
    return inst


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


def write_version_app(path: Path, version: str = "v1", delay_ms: int = 0) -> Path:
    """A WSGI app answering ``VERSION PID`` (``/?ms=N`` sleeps N ms first, default
    ``delay_ms``), the same for uzerg and uWSGI; rewriting it with another version and
    reloading shows which code serves."""
    path.write_text(f'''
import os, time

def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    ms = int(query[3:]) if query.startswith("ms=") else {delay_ms}
    if ms:
        time.sleep(ms / 1000)
    body = "{version} %d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
''')
    return path


def write_mount_app(path: Path, name: str) -> Path:
    """An app answering `NAME|SCRIPT_NAME|PATH_INFO` (`<none>` for a missing key)."""
    path.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [('{name}|' + environ.get('SCRIPT_NAME', '<none>') + '|'\n"
        "             + environ.get('PATH_INFO', '<none>')).encode()]\n")
    return path


# -- fixtures (integration/conftest.py imports them) ------------------------------------------

@pytest.fixture
def uzerg(tmp_path: Path) -> Iterator[InstanceStarter]:
    """An InstanceStarter; every process it started, and every child they had, is killed by
    pid at teardown, whatever the test did."""
    starter = InstanceStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.cleanup()


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    """A small WSGI app (see write_app) in tmp_path."""
    return write_app(tmp_path / "app.py")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """A Processes group, stopped by pid at teardown."""
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
