"""Zerg mode between whole instances of uzerg and the real uWSGI 2.0 binary (both ways, path and
``@abstract`` names, more than 8 sockets), and behind nginx with holders of both kinds.

The real uWSGI runs in its own session and is stopped by pid with SIGINT (SIGTERM would make
uWSGI 2.0 reload), then SIGKILL with its workers at teardown (support.peers.start_uwsgi).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.clients import get
from support.peers import nginx_available, running_nginx
from support.processes import (
    Instance,
    InstanceStarter,
    free_port,
    unique_abstract,
    wait_until,
    write_version_app,
)

if TYPE_CHECKING:
    from support.peers import Server

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("uwsgi") is None, reason="the uwsgi binary is not installed"),
]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_version_app(tmp_path / "app.py", "v1")


def zerg_server_name(tmp_path: Path, kind: str) -> str:
    return str(tmp_path / "zs") if kind == "path" else unique_abstract("interop")


def pause_uzerg(inst: Instance, workers: int = 1) -> None:
    since = inst.mark()
    inst.send(signal.SIGTSTP)
    inst.wait_for_log("suspended ***", since=since, count=workers)


def start_uwsgi_zerg(start_uwsgi, app: Path, server: str, shared_socket: str) -> Server:  # noqa: ANN001
    """A real ``uwsgi --zerg SERVER`` (one worker); ready once its worker runs."""
    zerg = start_uwsgi(["--zerg", server, "--processes", "1", "--wsgi-file", str(app)],
                       socket_address=shared_socket)
    zerg.wait_for_log("zerg sockets attached")
    zerg.worker_pids(1)
    return zerg


def served_only_by(address: str, pids: list[int], protocol: str = "uwsgi") -> None:
    """Requests to ``address`` end up served by ``pids`` (a paused holder's workers may take
    one more before they stop), then every one of 5 more is."""
    def theirs() -> bool:
        return int(get(address, protocol).split()[1]) in pids
    wait_until(theirs, 10, f"{address} served by {pids}")
    for _ in range(5):
        assert theirs(), address


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_real_uwsgi_zerg_serves_a_uzerg_zerg_server(
    uzerg: InstanceStarter, start_uwsgi, app: Path, tmp_path: Path, kind: str  # noqa: ANN001
) -> None:
    server = zerg_server_name(tmp_path, kind)
    unix = str(tmp_path / "u.sock")
    main = uzerg.start(["--socket", unix, "--socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--zerg-server", server])
    main.wait_for_log(f"*** Zerg server enabled on {server} ***")
    tcp = main.address(1)
    zerg = start_uwsgi_zerg(start_uwsgi, app, server, unix)
    log = zerg.log_text()
    assert f"uwsgi zerg socket 0 attached to UNIX address {unix} fd " in log
    assert f"uwsgi zerg socket 1 attached to INET address {tcp} fd " in log
    main.wait_for_log(f"2 sockets handed to zerg pid {zerg.pid}")
    pause_uzerg(main)
    workers = zerg.worker_pids(1)
    served_only_by(unix, workers)
    served_only_by(tcp, workers)
    assert zerg.stop(signal.SIGINT) in (0, 30)  # uWSGI 2.0 may exit 30 on SIGINT


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_uzerg_zerg_serves_a_real_uwsgi_zerg_server(
    uzerg: InstanceStarter, start_uwsgi, app: Path, tmp_path: Path, kind: str  # noqa: ANN001
) -> None:
    server = zerg_server_name(tmp_path, kind)
    unix = str(tmp_path / "u.sock")
    tcp = f"127.0.0.1:{free_port()}"
    main = start_uwsgi(["--socket", unix, "--socket", tcp, "--processes", "1",
                        "--wsgi-file", str(app), "--zerg-server", server])
    main.wait_for_log(f"*** Zerg server enabled on {server} ***")
    zerg = uzerg.start(["--zerg", server, "--wsgi-file", str(app)])
    zerg.wait_for_log("zerg sockets attached")
    log = zerg.log_text()
    assert f"uwsgi zerg socket 0 attached to UNIX address {unix} fd " in log
    assert f"uwsgi zerg socket 1 attached to INET address {tcp} fd " in log
    os.kill(main.pid, signal.SIGTSTP)  # uWSGI's pause: its workers stop accepting
    main.wait_for_log("*** PAUSE")
    workers = zerg.worker_pids(1)
    # uWSGI sets TCP_DEFER_ACCEPT on its TCP sockets: a connection is accepted once it sent
    # data (our client sends the request at once, as nginx does)
    served_only_by(unix, workers)
    served_only_by(tcp, workers)


def test_real_uwsgi_zerg_takes_all_12_sockets_of_a_uzerg_server(
    uzerg: InstanceStarter, start_uwsgi, app: Path, tmp_path: Path  # noqa: ANN001
) -> None:
    server = str(tmp_path / "zs")
    paths = [str(tmp_path / f"{index}.sock") for index in range(12)]
    main = uzerg.start(["--wsgi-file", str(app), "--zerg-server", server,
                        *[arg for path in paths for arg in ("--socket", path)]])
    main.wait_for_log(f"*** Zerg server enabled on {server} ***")
    zerg = start_uwsgi_zerg(start_uwsgi, app, server, paths[0])
    # uWSGI's client offers room for 8 descriptors, sees 12 announced, and asks again
    main.wait_for_log(f"12 sockets handed to zerg pid {zerg.pid}", count=2)
    log = zerg.log_text()
    for index, path in enumerate(paths):
        assert f"uwsgi zerg socket {index} attached to UNIX address {path} fd " in log
    pause_uzerg(main)
    workers = zerg.worker_pids(1)
    for path in paths:
        served_only_by(path, workers)


def _nginx_get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body)
        return body
    finally:
        connection.close()


@pytest.mark.skipif(not nginx_available(), reason="nginx is not installed")
def test_nginx_reaches_a_socket_served_by_uzerg_and_zergs_of_both_kinds(
    uzerg: InstanceStarter, start_uwsgi, tmp_path: Path  # noqa: ANN001
) -> None:
    app = write_version_app(tmp_path / "app.py", "v1", delay_ms=50)
    server = str(tmp_path / "zs")
    main = uzerg.start(["--socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--zerg-server", server])
    main.wait_for_log(f"*** Zerg server enabled on {server} ***")
    address = main.address(0)
    ours = uzerg.start(["--zerg", server, "--wsgi-file", str(app)])
    ours.wait_for_log("zerg sockets attached")
    theirs = start_uwsgi_zerg(start_uwsgi, app, server, address)
    holders = {"uzerg": main.worker_pids(1), "uzerg zerg": ours.worker_pids(1),
               "uwsgi zerg": theirs.worker_pids(1)}
    seen: dict[str, int] = dict.fromkeys(holders, 0)
    with running_nginx(tmp_path, address) as nginx, ThreadPoolExecutor(20) as pool:
        def everyone_served() -> bool:
            # 20 concurrent 50 ms requests: more work than one holder can take at once, so
            # every holder gets some (EPOLLEXCLUSIVE wake-ups alone would favour one)
            for body in pool.map(lambda _: _nginx_get(nginx.port, "/"), range(20)):
                pid = int(body.split()[1])
                for name, pids in holders.items():
                    if pid in pids:
                        seen[name] += 1
            return all(seen.values())
        wait_until(everyone_served, 30, f"answers from every holder (so far {seen})")
