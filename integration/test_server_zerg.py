"""Zerg mode between uzerg instances, as processes: a zerg server, zergs, pools, reloads."""

from __future__ import annotations

import signal
from pathlib import Path

from support.clients import http_get, uwsgi_request
from support.processes import InstanceStarter, wait_until, write_app


def test_zerg_attaches_serves_and_survives_its_server(uzerg: InstanceStarter,
                                                      tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    zerg_addr = str(tmp_path / "zerg.sock")
    server = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                          "--zerg-server", zerg_addr, "--vacuum"])
    server.wait_for_log(f"*** Zerg server enabled on {zerg_addr} ***")
    address = server.address(0)
    # the hint says http: the zerg serves it as HTTP without --protocol
    zerg = uzerg.start(["--zerg", zerg_addr, "--wsgi-file", str(app)])
    zerg.wait_for_log("uwsgi zerg socket 0 attached to INET address")
    zerg.wait_for_log("zerg sockets attached")
    # both serve the socket: pause one, the other answers (the kernel's exclusive wake-up
    # is not round-robin, so a sequential client may otherwise see only one of them)
    for paused, other in ((server, zerg), (zerg, server)):
        mark = paused.mark()
        paused.send(signal.SIGTSTP)
        paused.wait_for_log("*** worker 1 suspended ***", since=mark)
        assert int(http_get(address)[1].split()[1]) == other.worker_pids(1)[0]
        paused.send(signal.SIGTSTP)
        paused.wait_for_log("*** worker 1 resumed ***", since=mark)

    # a zerg keeps serving when its server dies (SPEC §4.4)
    assert server.stop(signal.SIGINT) == 0
    assert not Path(zerg_addr).exists()  # vacuum: the server removed its own socket file
    zerg_worker = zerg.worker_pids(1)[0]
    assert int(http_get(address)[1].split()[1]) == zerg_worker


def test_zerg_reload_keeps_received_sockets(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py", body="old")
    zerg_addr = str(tmp_path / "zerg.sock")
    server = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                          "--zerg-server", zerg_addr])
    server.wait_for_log("*** Zerg server enabled on")
    address = server.address(0)
    zerg = uzerg.start(["--zerg", zerg_addr, "--wsgi-file", str(app)])
    server.stop(signal.SIGTERM)  # nothing to attach to any more: a reload must not need it
    write_app(app, body="new")
    zerg.send(signal.SIGHUP)
    zerg.wait_for_log("gracefully (RE)spawned uWSGI master process")
    zerg.wait_for_log("uwsgi zerg socket 0 inherited INET address")
    wait_until(lambda: http_get(address)[1].startswith(b"new "), 20, "the new code")
    uzerg.track(zerg)
    assert "unable to connect" not in zerg.log_text()


def test_zerg_chain_and_explicit_protocol(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    first, second = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")
    server = uzerg.start(["--socket", "127.0.0.1:0", "--wsgi-file", str(app),
                          "--zerg-server", first])
    server.wait_for_log("*** Zerg server enabled on")
    address = server.address(0)
    # a zerg that is a zerg server too hands on what it received (chaining)
    middle = uzerg.start(["--zerg", first, "--zerg-server", second, "--wsgi-file", str(app)])
    middle.wait_for_log(f"*** Zerg server enabled on {second} ***")
    last = uzerg.start(["--zerg", second, "--wsgi-file", str(app), "--protocol", "uwsgi"])
    last.wait_for_log("zerg sockets attached")
    assert b" 200 " in uwsgi_request(address, "/").split(b"\r\n", 1)[0]
    server.stop()
    middle.stop()
    assert b"hello" in uwsgi_request(address, "/")  # only `last` holds the socket now


def test_unreachable_zerg_server(uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "nobody.sock")
    inst = uzerg.start(["--zerg", missing, "--wsgi-file", str(app_file)], wait_workers=None)
    assert inst.wait_exit() == 1
    assert f"--- unable to connect to zerg server {missing} ---" in inst.log_text()
    fallback = uzerg.start(["--zerg", missing, "--zerg-fallback", "--http-socket",
                            "127.0.0.1:0", "--wsgi-file", str(app_file)])
    assert http_get(fallback.address(0))[0] == 200


def test_configured_socket_already_received_is_not_bound_again(
    uzerg: InstanceStarter, app_file: Path, tmp_path: Path
) -> None:
    zerg_addr = str(tmp_path / "zerg.sock")
    unix = str(tmp_path / "app.sock")
    server = uzerg.start(["--socket", unix, "--wsgi-file", str(app_file),
                          "--zerg-server", zerg_addr])
    server.wait_for_log("*** Zerg server enabled on")
    zerg = uzerg.start(["--zerg", zerg_addr, "--zerg-fallback", "--socket", unix,
                        "--wsgi-file", str(app_file)])
    zerg.wait_for_log(f"{unix} is already served by a zerg socket: not binding it again")
    assert "bound to UNIX address" not in zerg.log_text()
    assert b"hello" in uwsgi_request(unix, "/")


def test_pool_runs_no_workers_and_keeps_its_sockets_across_reload(
    uzerg: InstanceStarter, app_file: Path, tmp_path: Path
) -> None:
    pool_addr = str(tmp_path / "pool.sock")
    unix = str(tmp_path / "app.sock")
    pool = uzerg.start(["--zergpool", f"{pool_addr}:{unix}"], wait_workers=None)
    pool.wait_for_log(f"zergpool {pool_addr} bound to UNIX socket {unix}")
    pool.wait_for_log("spawned uWSGI master process")
    assert pool.worker_pids() == []
    zerg = uzerg.start(["--zerg", pool_addr, "--wsgi-file", str(app_file)])
    assert b"hello" in uwsgi_request(unix, "/")
    pool.send(signal.SIGHUP)
    pool.wait_for_log("gracefully (RE)spawned uWSGI master process")
    # the pool kept the very socket the zerg serves: a new zerg attaches to the same queue
    second = uzerg.start(["--zerg", pool_addr, "--wsgi-file", str(app_file)])
    zerg.stop()
    workers = set(second.worker_pids(1))
    pids = {int(uwsgi_request(unix, "/").rsplit(b" ", 1)[1]) for _ in range(5)}
    assert pids == workers
