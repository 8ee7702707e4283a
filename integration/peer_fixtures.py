"""Fixtures of the real-peer tests; test modules load them with
``pytest_plugins = ("peer_fixtures",)``.

`start_uzerg(args, socket_address=None)` starts `python -m uzerg ARGS` (`start_uwsgi`: the real
uWSGI binary) in its own session, logging to tmp_path, waits until its first socket accepts
connections, and returns a `Server`; every server started is killed by pid at teardown.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from peer_helpers import Server, socket_address_of, wait_until


class _Starter:
    def __init__(self, command: list[str], tmp_path: Path, name: str) -> None:
        self.command = command
        self.tmp_path = tmp_path
        self.name = name
        self.servers: list[Server] = []

    def __call__(self, args: list[str], socket_address: str | None = None,
                 timeout: float = 20) -> Server:
        address = socket_address or socket_address_of(args)
        log_path = self.tmp_path / f"{self.name}-{len(self.servers)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [*self.command, *args], stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.tmp_path,
            )
        server = Server(process, log_path, address)
        self.servers.append(server)
        try:
            wait_until(server.answers, timeout, f"{self.name} to answer on {address}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlog:\n{server.log_text()[-3000:]}") from None
        return server

    def kill_all(self) -> None:
        for server in self.servers:
            server.kill()


def _starter(command: list[str], tmp_path: Path, name: str) -> Iterator[_Starter]:
    starter = _Starter(command, tmp_path, name)
    try:
        yield starter
    finally:
        starter.kill_all()


@pytest.fixture
def start_uzerg(tmp_path: Path) -> Iterator[_Starter]:
    yield from _starter([sys.executable, "-m", "uzerg"], tmp_path, "uzerg")


@pytest.fixture
def start_uwsgi(tmp_path: Path) -> Iterator[_Starter]:
    """The real uWSGI binary, for side-by-side comparisons."""
    yield from _starter(["uwsgi", "--master", "--need-app"], tmp_path, "uwsgi")
