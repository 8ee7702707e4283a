"""configs/broodlord.ini, the uWSGI documentation's Broodlord example, run unchanged under
``--emperor-broodlord 40`` (it binds :3031 and /tmp/broodlord.sock: skipped when either is
taken); and a bad [zerg] stanza, reported in one line naming the file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.clients import uwsgi_request
from support.emperor import emperor_stats, start_emperor, vassals_named, wait_vassal_pid
from support.processes import InstanceStarter, free_port, wait_until, write_app

from uzerg.protocols.uwsgi import encode_uwsgi_packet

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "broodlord.ini"
REQUEST = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REQUEST_URI": "/",
                               "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
                               "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                               "HTTP_HOST": "localhost"}, b"")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def workers_stopped(vassal_pid: int) -> Iterator[None]:
    """The vassal's workers stopped (SIGSTOP) as if stuck in long requests: what arrives waits
    in the listen queue. (Half-sent requests no longer do: a worker parks an incomplete head in
    its epoll and goes on accepting.)"""
    workers = psutil.Process(vassal_pid).children()
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def held_in_the_queue(vassal_pid: int, address: tuple[str, int] | str,
                      count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that sent a whole request, left in the listen queue behind the
    vassal's stopped workers; closed if the block fails, else left for ``finish``."""
    held = []
    with workers_stopped(vassal_pid):
        try:
            for _ in range(count):
                family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
                sock = socket.socket(family)
                held.append(sock)
                sock.settimeout(10)
                sock.connect(address)
                sock.sendall(REQUEST)
            yield held
        except BaseException:
            for sock in held:
                sock.close()
            raise


def finish(held: list[socket.socket]) -> list[bytes]:
    answers = []
    for sock in held:
        with sock:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            answers.append(data)
    return answers


def zerg_server_in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


@pytest.mark.skipif(not port_free(3031) or zerg_server_in_use("/tmp/broodlord.sock"),
                    reason="port 3031 or /tmp/broodlord.sock is in use")
def test_documentation_example_runs_unchanged(uzerg: InstanceStarter, tmp_path: Path) -> None:
    try:
        run_documentation_example(uzerg, tmp_path)
    finally:  # the example has no vacuum: its zerg server's socket file stays, as with uWSGI
        if not zerg_server_in_use("/tmp/broodlord.sock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/tmp/broodlord.sock")


def run_documentation_example(uzerg: InstanceStarter, tmp_path: Path) -> None:
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    emperor, stats = start_emperor(uzerg, vassals, "--emperor", str(EXAMPLE),
                                   "--emperor-broodlord", "40")
    name = str(EXAMPLE)
    vassal = wait_vassal_pid(stats, name, timeout=30)
    assert b"werkzeug" in uwsgi_request("127.0.0.1:3031", "/").lower()
    with held_in_the_queue(vassal, ("127.0.0.1", 3031), 14) as held:
        emperor.wait_for_log("sos from", 20)
        emperor.wait_for_log(f"launching zerg {name}:zerg", 20)
        wait_until(lambda: any(v["zerg"] and v["ready"]
                               for v in emperor_stats(stats)["vassals"]), 30, "a zerg up")
        uzerg.track(emperor)
    answers = finish(held)
    assert all(b"200 OK" in a for a in answers)
    # the zerg took some of the queued requests: it announced its loyalty
    wait_until(lambda: any(v["loyal"] for v in vassals_named(stats, f"{name}:zerg")), 20,
               "a zerg that served")
    uzerg.track(emperor)
    assert emperor.stop() == 0


def test_bad_zerg_stanza_is_one_line_and_the_vassal_keeps_serving(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    port = free_port()
    zerg_server = tmp_path / "z.sock"
    (vassals / "site.ini").write_text(
        f"[uwsgi]\nsocket = 127.0.0.1:{port}\nwsgi-file = {app}\nmaster = true\n"
        f"processes = 1\nvassal-sos-backlog = 3\nzerg-server = {zerg_server}\n"
        f"[zerg]\nzerg = {zerg_server}\nwsgi-file = {app}\nprotocol = gopher\n")
    emperor, stats = start_emperor(uzerg, vassals, "--emperor-broodlord", "4")
    vassal = wait_vassal_pid(stats, "site.ini")
    with held_in_the_queue(vassal, ("127.0.0.1", port), 6) as held:
        line = emperor.wait_for_log("no zerg for site.ini", 20)
    answers = finish(held)
    assert ("site.ini:11: protocol: unsupported protocol (uzerg speaks uwsgi and http): gopher"
            in line)
    assert all(b"200 OK" in a for a in answers)
    assert emperor.process.poll() is None
    assert not [v for v in emperor_stats(stats)["vassals"] if v["zerg"]]


def test_vassal_sos_when_every_worker_is_busy(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py", slow_seconds=20)
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    port = free_port()
    zerg_server = tmp_path / "z.sock"
    (vassals / "busy.ini").write_text(
        f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {app}\nmaster = true\n"
        f"processes = 1\nvassal-sos = 1\nzerg-server = {zerg_server}\n"
        f"[zerg]\nzerg = {zerg_server}\nwsgi-file = {app}\nmaster = true\n")
    emperor, stats = start_emperor(uzerg, vassals, "--emperor-broodlord", "1")
    wait_vassal_pid(stats, "busy.ini")
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        slow.sendall(b"GET /slow HTTP/1.0\r\n\r\n")
        emperor.wait_for_log("asking Emperor for reinforcements (overload: all 1 workers busy)")
        emperor.wait_for_log("launching zerg busy.ini:zerg", 20)
        wait_until(lambda: any(v["zerg"] and v["ready"] for v in emperor_stats(stats)["vassals"]),
                   30, "the zerg up")
        # at the limit (1): later sos are refused, with the reason
        emperor.wait_for_log("the broodlord limit (1 zergs) is reached", 20)
        uzerg.track(emperor)
        zerg = next(v["pid"] for v in emperor_stats(stats)["vassals"] if v["zerg"])
        # removing the vassal's file stops its zergs too
        (vassals / "busy.ini").unlink()
        emperor.wait_for_log(f"stop the uwsgi instance busy.ini:zerg (pid: {zerg}): its vassal "
                             "busy.ini is stopping", 20)
        wait_until(lambda: not emperor_stats(stats)["vassals"], 30, "vassal and zerg gone")
    finally:
        (tmp_path / "release").touch()
        slow.close()
