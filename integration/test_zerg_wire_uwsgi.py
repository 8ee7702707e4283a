"""Zerg handshake interop with the real ``uwsgi`` binary, both directions.

(a) uWSGI is the zerg server (or zergpool), our client attaches;
(b) our ZergServer (integration/support/zerg_server.py) serves a real uWSGI zerg.
"""

from __future__ import annotations

import _socket
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support.clients import http_get
from support.processes import Processes, free_port, unique_abstract, wait_until

from uzerg.zerg import HandshakeError, attach_to_zerg_servers

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("uwsgi") is None, reason="the uwsgi binary is not installed"),
]

HELPER = Path(__file__).parent / "support" / "zerg_server.py"
APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("port %s path %s" % (environ["SERVER_PORT"], environ["PATH_INFO"])).encode()]
"""


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


def uwsgi_argv(app_file: Path, *extra: str) -> list[str]:
    return [
        "uwsgi", "--master", "--processes", "1", "--die-on-term", "--wsgi-file", str(app_file),
        *extra,
    ]  # fmt: skip


def attach_when_ready(address: str, timeout: float = 20.0):
    def attempt():
        try:
            return attach_to_zerg_servers([address], timeout=2)
        except HandshakeError:
            return None

    return wait_until(attempt, timeout, f"zerg server {address}")


def workers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def accept_on_received_socket(proc: subprocess.Popen, received: _socket.socket,
                              port: int) -> None:
    """Connect to PORT and accept the connection on our copy: uWSGI's workers are stopped
    meanwhile so that they cannot win the race for it."""
    workers = workers_of(proc)
    assert workers, "uWSGI has no worker"
    for worker in workers:
        worker.suspend()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            # uWSGI sets TCP_DEFER_ACCEPT on its TCP sockets: no data, no accept
            client.sendall(b"x")
            received.settimeout(5)
            conn_fd, peer = received._accept()  # (the C socket type: no accept())
            os.close(conn_fd)
            assert peer == client.getsockname()
    finally:
        for worker in workers:
            worker.resume()


# -- (a) uWSGI serves, we attach -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_attach_to_uwsgi_zerg_server(processes, app_file, tmp_path, kind):
    port = free_port()
    unix_socket = str(tmp_path / "app.sock")
    address = str(tmp_path / "zerg.sock") if kind == "path" else unique_abstract("it")
    proc, log = processes.start(
        "uwsgi",
        uwsgi_argv(
            app_file, "--zerg-server", address, "--socket", f"127.0.0.1:{port}",
            "--socket", unix_socket,
        ),
    )  # fmt: skip
    received = attach_when_ready(address)
    try:
        assert [r.sock.getsockname() for r in received] == [("127.0.0.1", port), unix_socket]
        assert [r.protocol for r in received] == [None, None]  # uWSGI sends no hint
        assert all(r.server == address for r in received)
        accept_on_received_socket(proc, received[0].sock, port)
    finally:
        for item in received:
            item.sock.close()
    assert f"*** Zerg server enabled on {address} ***" in log.read_text()


def test_abstract_name_is_bound_with_a_trailing_nul(processes, app_file):
    name = unique_abstract("it-nul")[1:]
    port = free_port()
    processes.start(
        "uwsgi", uwsgi_argv(app_file, "--zerg-server", "@" + name, "--socket", f"127.0.0.1:{port}")
    )
    received = attach_when_ready("@" + name)
    for item in received:
        item.sock.close()
    with socket.socket(socket.AF_UNIX) as probe:  # without the trailing NUL: nobody there
        with pytest.raises(ConnectionRefusedError):
            probe.connect(b"\0" + name.encode())


def test_attach_to_uwsgi_with_more_than_eight_sockets(processes, app_file):
    ports = [free_port() for _ in range(12)]
    address = unique_abstract("it-many")
    sockets = [arg for p in ports for arg in ("--socket", f"127.0.0.1:{p}")]
    processes.start("uwsgi", uwsgi_argv(app_file, "--zerg-server", address, *sockets))
    received = attach_when_ready(address)
    try:
        assert [r.sock.getsockname()[1] for r in received] == ports
    finally:
        for item in received:
            item.sock.close()


def test_attach_to_uwsgi_zergpool(processes, tmp_path):
    ports = [free_port(), free_port()]
    pool = str(tmp_path / "pool.sock")
    processes.start(
        "uwsgi-pool",
        ["uwsgi", "--master", "--zergpool", f"{pool}:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"],
    )
    received = attach_when_ready(pool)
    try:
        assert [r.sock.getsockname() for r in received] == [("127.0.0.1", p) for p in ports]
    finally:
        for item in received:
            item.sock.close()


# -- (b) we serve, uWSGI attaches ------------------------------------------------------------------


def start_helper(processes: Processes, address: str, count: int, protocol: str | None):
    argv = [sys.executable, str(HELPER), address, str(count)] + ([protocol] if protocol else [])
    proc, _log = processes.start("helper", argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the helper prints its ports once it is ready
    assert line, "the zerg server helper died"
    return proc, json.loads(line)["ports"]


def wait_for_answer(port: int, timeout: float = 20.0) -> bytes:
    """The body of the first 200 answer on ``port`` to ``GET /pPORT``."""
    def attempt() -> bytes | None:
        try:
            status, body = http_get(f"127.0.0.1:{port}", f"/p{port}", timeout=5)
        except OSError:
            return None
        assert status == 200, (status, body)
        return body

    return bytes(wait_until(attempt, timeout, f"an HTTP answer on port {port}"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind, protocol", [("path", None), ("abstract", "http")], ids=["path-nohint", "abstract-hint"]
)
def test_uwsgi_zerg_serves_all_twelve_sockets_of_our_server(
    processes, app_file, tmp_path, kind, protocol
):
    address = str(tmp_path / "z.sock") if kind == "path" else unique_abstract("it-b")
    _helper, ports = start_helper(processes, address, 12, protocol)
    _proc, log = processes.start(
        "uwsgi-zerg", uwsgi_argv(app_file, "--zerg", address, "--protocol", "http")
    )
    for port in ports:
        answer = wait_for_answer(port)
        assert answer == f"port {port} path /p{port}".encode()
    text = log.read_text()
    assert "uwsgi zerg socket 11 attached to INET address" in text
    assert "zerg sockets attached" in text


def test_uwsgi_zerg_gets_the_first_253_of_300(processes, app_file, tmp_path):
    address = str(tmp_path / "z.sock")
    _helper, ports = start_helper(processes, address, 300, None)
    _proc, log = processes.start(
        "uwsgi-zerg", uwsgi_argv(app_file, "--zerg", address, "--protocol", "http")
    )
    assert wait_for_answer(ports[252]).endswith(f"path /p{ports[252]}".encode())
    text = log.read_text()
    assert "uwsgi zerg socket 252 attached" in text
    assert "uwsgi zerg socket 253 attached" not in text


def test_zerg_probe_reports_uwsgi_sockets(processes, app_file, tmp_path):
    port = free_port()
    address = str(tmp_path / "zerg.sock")
    processes.start(
        "uwsgi", uwsgi_argv(app_file, "--zerg-server", address, "--socket", f"127.0.0.1:{port}")
    )
    for item in attach_when_ready(address):
        item.sock.close()
    missing = str(tmp_path / "missing.sock")
    result = subprocess.run(
        [sys.executable, "-m", "uzerg", "--json", "--zerg-timeout", "5",
         "--zerg-probe", address, "--zerg-probe", missing],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1  # the missing server
    report = json.loads(result.stdout)
    assert report[0]["sockets"] == [
        {"index": 0, "family": "INET", "address": f"127.0.0.1:{port}", "protocol": None}
    ]
    assert report[0]["hint"] is False
    assert report[1]["error"] == f"--- unable to connect to zerg server {missing} ---"
