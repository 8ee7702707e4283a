"""Zerg mode at the instance level (SPEC §3, §4): real ``uzerg`` masters handing their sockets
to zergs over ``--zerg-server``, zergs attaching with ``--zerg``, ``--zerg-fallback``, the
life of a zerg (stop, server death, reload) and chaining. Every answer names the process that
served it (``VERSION PID``), so a test can tell who served what.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import threading
from pathlib import Path

import psutil
import pytest
from support.clients import ClientLoop, get
from support.processes import (
    Instance,
    InstanceStarter,
    start_zerg,
    unique_abstract,
    wait_until,
    write_version_app,
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_version_app(tmp_path / "app.py", "v1")


def start_main(uzerg: InstanceStarter, app: Path, *extra: str, workers: int = 1,
               zerg_server: str | None = None) -> Instance:
    """An instance serving ``app`` on the given sockets, handing them out on ``zerg_server``."""
    args = ["--wsgi-file", str(app), "--master", "--processes", str(workers), *extra]
    if zerg_server:
        args += ["--zerg-server", zerg_server]
    inst = uzerg.start(args, wait_workers=workers)
    if zerg_server:
        inst.wait_for_log(f"*** Zerg server enabled on {zerg_server} ***")
    return inst


def pause(inst: Instance, workers: int = 1) -> None:
    """SIGTSTP; returns once every worker stopped accepting (only zergs serve then)."""
    since = inst.mark()
    inst.send(signal.SIGTSTP)
    inst.wait_for_log("suspended ***", since=since, count=workers)


def resume(inst: Instance, workers: int = 1) -> None:
    since = inst.mark()
    inst.send(signal.SIGTSTP)
    inst.wait_for_log("resumed ***", since=since, count=workers)


def answered_by(body: str, inst: Instance) -> bool:
    return int(body.rsplit(" ", 1)[1]) in inst.worker_pids()


def kill_family(inst: Instance) -> None:
    """SIGKILL a master and all its workers at once, by pid (the zerg server dies hard)."""
    family = [inst.pid] + [c.pid for c in psutil.Process(inst.pid).children(recursive=True)]
    for pid in family:
        os.kill(pid, signal.SIGKILL)
    inst.wait_exit()
    for pid in family[1:]:
        wait_until(lambda pid=pid: not psutil.pid_exists(pid)
                   or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10, f"{pid} dead")


# -- zerg server -------------------------------------------------------------------------------


def test_zerg_server_hands_every_socket_once_under_the_umask(
    uzerg: InstanceStarter, app: Path, tmp_path: Path
) -> None:
    unix = str(tmp_path / "a.sock")
    server_path = str(tmp_path / "zerg.sock")
    old_umask = os.umask(0o077)
    try:
        # a.sock is configured twice: bound once and handed out once (as uWSGI does)
        main = start_main(uzerg, app, "--socket", unix, "--socket", unix,
                          "--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0",
                          "--chmod-socket=666", zerg_server=server_path)
    finally:
        os.umask(old_umask)
    # --chmod-socket applies to the served socket, not to the zerg server's: umask 077 → 0700
    assert stat.S_IMODE(os.stat(unix).st_mode) == 0o666
    assert stat.S_IMODE(os.stat(server_path).st_mode) == 0o700
    # order: the --socket values, then the --http-socket ones (uWSGI: command-line order)
    bound = [main.address(i) for i in range(3)]
    assert bound[0] == unix
    assert main.log_text().count(f"bound to UNIX address {unix}") == 1

    zerg = start_zerg(uzerg, app, server_path)
    main.wait_for_log(f"zerg server {server_path}: 3 sockets handed to zerg pid {zerg.pid}")
    log = zerg.log_text()
    assert f"uwsgi zerg socket 0 attached to UNIX address {unix} fd " in log
    assert f"uwsgi zerg socket 1 attached to INET address {bound[1]} fd " in log
    assert f"uwsgi zerg socket 2 attached to INET address {bound[2]} fd " in log
    assert "uwsgi zerg socket 3 " not in log

    pause(main)  # now only the zerg accepts: every socket must be served by it
    protocols = {unix: "uwsgi", bound[1]: "uwsgi", bound[2]: "http"}
    for address, protocol in protocols.items():
        assert answered_by(get(address, protocol), zerg), address


def test_one_zerg_serves_sockets_of_several_servers_in_one_pool(
    uzerg: InstanceStarter, app: Path, tmp_path: Path
) -> None:
    unix = str(tmp_path / "one.sock")
    first = start_main(uzerg, app, "--socket", unix, zerg_server=str(tmp_path / "z1"))
    abstract = unique_abstract("z2")
    second = start_main(uzerg, app, "--http-socket", "127.0.0.1:0", zerg_server=abstract)
    http_address = second.address(0)
    zerg = start_zerg(uzerg, app, str(tmp_path / "z1"), abstract)
    log = zerg.log_text()
    assert f"uwsgi zerg socket 0 attached to UNIX address {unix} fd " in log
    assert f"uwsgi zerg socket 1 attached to INET address {http_address} fd " in log
    assert log.index("uwsgi zerg socket 1 attached") < log.index("zerg sockets attached")
    pause(first)
    pause(second)
    # one worker, one pool: the same process answers on both servers' sockets
    (worker,) = zerg.worker_pids(1)
    assert get(unix, "uwsgi") == f"v1 {worker}"
    assert get(http_address, "http") == f"v1 {worker}"


def test_unreachable_zerg_server_exits_1(uzerg: InstanceStarter, app: Path,
                                         tmp_path: Path) -> None:
    missing = str(tmp_path / "nobody-here.sock")
    inst = uzerg.start(["--zerg", missing, "--wsgi-file", str(app)], wait_workers=None)
    assert inst.wait_exit() == 1
    assert f"--- unable to connect to zerg server {missing} --- (No such file or directory)" \
        in inst.log_text()
    assert "spawned uWSGI worker" not in inst.log_text()


def _fake_zerg_server(path: str, reply: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A unix listener that answers every peer with ``reply`` (None: says nothing, holds on)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                break
            if reply is None:
                held.append(conn)
                continue
            with conn:
                conn.sendall(reply)
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("reply", [b"uwsgi-zorg\x01\x00\x00\x00", b"garbage", None],
                         ids=["bad-magic", "short", "silent"])
def test_bad_zerg_server_exits_1_and_serves_nothing(
    uzerg: InstanceStarter, app: Path, tmp_path: Path, reply: bytes | None
) -> None:
    good_path = str(tmp_path / "good")
    start_main(uzerg, app, "--socket", str(tmp_path / "s.sock"), zerg_server=good_path)
    bad_path = str(tmp_path / "bad")
    listener, thread = _fake_zerg_server(bad_path, reply)
    try:
        inst = uzerg.start(["--zerg", good_path, "--zerg", bad_path, "--zerg-timeout", "1",
                            "--wsgi-file", str(app)], wait_workers=None)
        assert inst.wait_exit() == 1
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
    log = inst.log_text()
    assert "--- invalid data received from zerg-server ---" in log
    assert "spawned uWSGI worker" not in log


# -- fallback ----------------------------------------------------------------------------------


def test_fallback_binds_the_configured_sockets_when_no_server_answers(
    uzerg: InstanceStarter, app: Path, tmp_path: Path
) -> None:
    inst = uzerg.start(["--zerg", str(tmp_path / "absent"), "--zerg-fallback",
                        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app)])
    assert f"--- unable to connect to zerg server {tmp_path / 'absent'} ---" in inst.log_text()
    assert answered_by(get(inst.address(0)), inst)


def test_fallback_binds_nothing_twice_when_the_server_answers(
    uzerg: InstanceStarter, app: Path, tmp_path: Path
) -> None:
    unix = tmp_path / "shared.sock"
    main = start_main(uzerg, app, "--socket", str(unix), "--http-socket", "127.0.0.1:0",
                      zerg_server=str(tmp_path / "zs"))
    port = main.address(1).rsplit(":", 1)[1]
    inode = os.stat(unix).st_ino
    # other spellings of the same addresses: a relative path, a host name
    zerg = start_zerg(uzerg, app, str(tmp_path / "zs"), extra=(
        "--zerg-fallback", "--socket", "./shared.sock", "--http-socket", f"localhost:{port}"))
    log = zerg.log_text()
    assert "./shared.sock is already served by a zerg socket: not binding it again" in log
    assert f"localhost:{port} is already served by a zerg socket: not binding it again" in log
    assert " bound to " not in log
    assert os.stat(unix).st_ino == inode
    pause(main)
    assert answered_by(get(str(unix), "uwsgi"), zerg)
    assert answered_by(get(f"127.0.0.1:{port}"), zerg)


def test_fallback_never_takes_over_a_path_another_process_serves(
    uzerg: InstanceStarter, app: Path, tmp_path: Path
) -> None:
    unix = tmp_path / "held.sock"
    main = start_main(uzerg, app, "--socket", str(unix), zerg_server=str(tmp_path / "zs"))
    holder = start_zerg(uzerg, app, str(tmp_path / "zs"))
    kill_family(main)  # the server is gone; its zerg still serves held.sock
    inode = os.stat(unix).st_ino
    late = uzerg.start(["--zerg", str(tmp_path / "zs"), "--zerg-fallback", "--socket", str(unix),
                        "--wsgi-file", str(app)], wait_workers=None)
    assert late.wait_exit() == 1
    assert f"cannot bind {unix}: another process is listening on it" in late.log_text()
    assert os.stat(unix).st_ino == inode
    assert answered_by(get(str(unix), "uwsgi"), holder)


# -- life of a zerg ----------------------------------------------------------------------------


def test_zergs_stopped_by_int_quit_term_under_load_lose_no_request(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    app = write_version_app(tmp_path / "app.py", "v1", delay_ms=15)
    main = start_main(uzerg, app, "--http-socket", "127.0.0.1:0",
                      zerg_server=str(tmp_path / "zs"))
    address = main.address(0)
    zergs = [start_zerg(uzerg, app, str(tmp_path / "zs")) for _ in range(3)]
    main.wait_for_log("sockets handed to zerg pid", count=3)
    loop = ClientLoop(address, concurrency=6, seconds=80)
    try:
        for zerg in zergs:  # every holder takes its share of the traffic
            loop.wait_for(lambda body, z=zerg: answered_by(body, z), 20, f"zerg {zerg.pid}")
        for zerg, signum in zip(zergs, (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM),
                                strict=True):
            loop.wait_for_more(20)
            uzerg.track(zerg)
            zerg.send(signum)  # mid-traffic: its worker is busy most of the time
            assert zerg.wait_exit() == 0
        loop.wait_for_more(40, what="answers from the main instance alone")
    finally:
        loop.stop()
    assert loop.errors == []
    assert loop.count > 100


def test_pause_and_test_a_new_version_with_a_zerg(uzerg: InstanceStarter,
                                                   tmp_path: Path) -> None:
    """The documentation's trick: pause v1, let a zerg with v2 take the traffic, stop the
    zerg, resume v1. The clients see v1 or v2 answers, never an error."""
    v1 = write_version_app(tmp_path / "v1.py", "v1", delay_ms=5)
    v2 = write_version_app(tmp_path / "v2.py", "v2", delay_ms=5)
    main = start_main(uzerg, v1, "--http-socket", "127.0.0.1:0", workers=2,
                      zerg_server=str(tmp_path / "zs"))
    loop = ClientLoop(main.address(0), concurrency=3, seconds=80, timeout=30)
    try:
        loop.wait_for_more(20, what="v1 answers")
        pause(main, 2)
        zerg = start_zerg(uzerg, v2, str(tmp_path / "zs"), workers=2)
        loop.wait_for(lambda body: body.startswith("v2 "), 20, "v2 answers")
        loop.wait_for_more(30, what="v2 answers")
        zerg_stopped = loop.count
        uzerg.track(zerg)
        zerg.send(signal.SIGINT)
        assert zerg.wait_exit() == 0
        resume(main, 2)
        loop.wait_for(lambda body: body.startswith("v1 "), 30, "v1 answers again")
        loop.wait_for_more(20)
    finally:
        loop.stop()
    assert loop.errors == []
    versions = [body.split()[0] for body in loop.bodies]
    assert set(versions) == {"v1", "v2"}
    assert "v2" not in versions[zerg_stopped + 10:]  # (a few in-flight ones may finish late)


@pytest.mark.parametrize("how", ["sigkill", "sigint"])
def test_zerg_outlives_its_server_and_reloads_fresh_code(
    uzerg: InstanceStarter, tmp_path: Path, how: str
) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    unix = str(tmp_path / "u.sock")
    main = start_main(uzerg, app, "--http-socket", "127.0.0.1:0", "--socket", unix,
                      zerg_server=str(tmp_path / "zs"))
    address = main.address(1)  # the --socket values come first
    zerg = start_zerg(uzerg, app, str(tmp_path / "zs"))
    if how == "sigkill":
        kill_family(main)
    else:
        assert main.stop(signal.SIGINT) == 0
    for _ in range(5):
        assert answered_by(get(address), zerg)
        assert answered_by(get(unix, "uwsgi"), zerg)
    if how == "sigint":
        return
    # a reload of the zerg keeps the received sockets (its server is dead: nothing to re-attach
    # to) and loads the new code; requests go on throughout
    old_workers = zerg.worker_pids(1)
    loop = ClientLoop([address], concurrency=2, seconds=60)
    try:
        loop.wait_for_more(10)
        write_version_app(tmp_path / "app.py", "v2")
        since = zerg.mark()
        zerg.send(signal.SIGHUP)
        zerg.wait_for_log("gracefully (RE)spawned uWSGI master process", since=since)
        loop.wait_for(lambda body: body.startswith("v2 "), 20, "answers of the new code")
        loop.wait_for_more(10)
    finally:
        loop.stop()
    assert loop.errors == []
    assert get(unix, "uwsgi").startswith("v2 ")
    assert not set(zerg.worker_pids(1)) & set(old_workers)
    assert zerg.log_text().count("zerg sockets attached") == 1
    uzerg.track(zerg)


def test_chained_zergs_hand_on_what_they_received_once(
    uzerg: InstanceStarter, app: Path, tmp_path: Path
) -> None:
    unix = str(tmp_path / "origin.sock")
    main = start_main(uzerg, app, "--socket", unix, zerg_server=str(tmp_path / "level0"))
    first = start_zerg(uzerg, app, str(tmp_path / "level0"),
                       extra=("--zerg-server", str(tmp_path / "level1")))
    first.wait_for_log(f"*** Zerg server enabled on {tmp_path / 'level1'} ***")
    # a zerg of both: it receives origin.sock twice, and hands it on once
    both = start_zerg(uzerg, app, str(tmp_path / "level0"), str(tmp_path / "level1"),
                      extra=("--zerg-server", str(tmp_path / "level2")))
    assert both.log_text().count(f"attached to UNIX address {unix} fd ") == 2
    both.wait_for_log(f"*** Zerg server enabled on {tmp_path / 'level2'} ***")
    last = start_zerg(uzerg, app, str(tmp_path / "level2"))
    assert last.log_text().count(f"attached to UNIX address {unix} fd ") == 1
    both.wait_for_log(f"1 sockets handed to zerg pid {last.pid}")
    for inst in (main, first, both):
        pause(inst)
    for _ in range(3):
        assert answered_by(get(unix, "uwsgi"), last)
