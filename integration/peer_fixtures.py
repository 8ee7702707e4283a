"""Fixtures of the real-peer tests; test modules load them with
``pytest_plugins = ("peer_fixtures",)``.

``start_uzerg(args, socket_address=None)`` starts ``python -m uzerg ARGS`` through the process
harness (the ``uzerg`` fixture of conftest.py, which kills every pid at teardown), waits until
the master is up and its first socket accepts connections, and returns a `Server`.
``start_uwsgi`` does the same with the real uWSGI binary, for side-by-side comparisons.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from harness import Instance, InstanceStarter
from peer_helpers import connect_to, socket_address_of, uwsgi_request


class Server(Instance):
    """A harness Instance plus the address of its first socket and a uwsgi GET helper."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path,
                 socket_address: str) -> None:
        super().__init__(process, log_path)
        self.socket_address = socket_address

    def answers(self) -> bool:
        try:
            connect_to(self.socket_address, 1).close()
        except OSError:
            return False
        return True

    def wait_answering(self, timeout: float) -> None:
        self._wait(self.answers, timeout, f"a server answering on {self.socket_address}")

    def uwsgi_get(self, path: str) -> str:
        """Body of GET `path` sent over the uwsgi protocol to the server's socket."""
        response = uwsgi_request(self.socket_address, path)
        head, _, body = response.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], response[:500]
        return body.decode()


StartServer = Callable[..., Server]


@pytest.fixture
def start_uzerg(uzerg: InstanceStarter) -> StartServer:
    def start(args: list[str], socket_address: str | None = None,
              timeout: float = 20) -> Server:
        instance = uzerg.start(args, wait_workers=None, timeout=timeout)
        instance.wait_for_log("spawned uWSGI master process", timeout)
        # port 0 in the arguments: the log says which port was bound
        address = socket_address or instance.address(0, timeout)
        server = Server(instance.process, instance.log_path, address)
        server.wait_answering(timeout)
        return server
    return start


@pytest.fixture
def start_uwsgi(tmp_path: Path) -> Iterator[StartServer]:
    """The real uWSGI binary (master mode), killed with its workers by pid at teardown."""
    started: list[Server] = []

    def start(args: list[str], socket_address: str | None = None,
              timeout: float = 20) -> Server:
        log_path = tmp_path / f"uwsgi-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                ["uwsgi", "--master", "--need-app", *args], stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
            )
        server = Server(process, log_path, socket_address or socket_address_of(args))
        started.append(server)
        server.wait_answering(timeout)
        return server

    try:
        yield start
    finally:
        for server in started:
            _kill_with_children(server.process)


def _kill_with_children(process: subprocess.Popen[bytes]) -> None:
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    for pid in [process.pid, *(child.pid for child in children)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(10)
