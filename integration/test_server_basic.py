"""Start-up, serving, shutdown: real uzerg processes over real sockets."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from support.clients import http_get, read_stats, uwsgi_request
from support.processes import InstanceStarter, wait_until


def test_two_workers_serve_http_and_uwsgi_sockets(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0",
                        "--wsgi-file", str(app_file), "--processes", "2", "--master"],
                       wait_workers=2)
    # --socket sockets come first, then --http-socket ones
    uwsgi_address, http_address = inst.address(0), inst.address(1)
    assert "(port auto-assigned)" in inst.wait_for_log("uwsgi socket 0 bound to TCP address")
    status, body = http_get(http_address)
    assert status == 200 and body.startswith(b"hello ")
    response = uwsgi_request(uwsgi_address, "/")
    assert response.startswith(b"HTTP/1.1 200") and b"hello " in response
    pids = inst.worker_pids(2)
    # answers come from the workers, never from the master
    seen = {int(http_get(http_address)[1].split()[1]) for _ in range(20)}
    assert seen <= set(pids) and inst.pid not in seen
    assert inst.stop(signal.SIGTERM) == 0
    assert "goodbye to uWSGI." in inst.log_text()


def test_sigint_stops_fast(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    assert inst.stop(signal.SIGINT) == 0
    assert "SIGINT/SIGTERM received...killing workers..." in inst.log_text()


def test_background_start_with_ignored_sigint_still_obeys_it(
    uzerg: InstanceStarter, app_file: Path
) -> None:
    # a shell script's `uzerg ... &` starts with SIGINT and SIGQUIT ignored (SPEC §6)
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)],
                       as_background_job=True)
    assert inst.stop(signal.SIGQUIT) == 0
    assert "goodbye to uWSGI." in inst.log_text()


def test_unix_socket_chmod_pidfile_and_vacuum(uzerg: InstanceStarter, app_file: Path,
                                              tmp_path: Path) -> None:
    sock_path = tmp_path / "app.sock"
    pidfile = tmp_path / "app.pid"
    inst = uzerg.start(["--socket", str(sock_path), "--chmod-socket=660", "--vacuum",
                        "--pidfile", str(pidfile), "--wsgi-file", str(app_file)])
    assert inst.wait_for_log(f"uwsgi socket 0 bound to UNIX address {sock_path} fd")
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
    assert pidfile.read_text().strip() == str(inst.pid)
    assert b"hello" in uwsgi_request(str(sock_path), "/")
    assert inst.stop(signal.SIGTERM) == 0
    assert not sock_path.exists() and not pidfile.exists()
    assert f"VACUUM: unix socket {sock_path} removed." in inst.log_text()


def test_without_vacuum_files_stay(uzerg: InstanceStarter, app_file: Path,
                                   tmp_path: Path) -> None:
    sock_path = tmp_path / "app.sock"
    pidfile = tmp_path / "app.pid"
    inst = uzerg.start(["--socket", str(sock_path), "--pidfile", str(pidfile),
                        "--wsgi-file", str(app_file)])
    assert inst.stop(signal.SIGTERM) == 0
    assert sock_path.exists() and pidfile.exists()


def test_need_app_exits_22(uzerg: InstanceStarter, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(broken),
                        "--need-app"], wait_workers=None)
    assert inst.wait_exit() == 22
    text = inst.log_text()
    assert "unable to load wsgi file" in text and "GAME OVER" in text


def test_lazy_apps_need_app_exits_22(uzerg: InstanceStarter, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise SyntaxError('bad')\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(broken),
                        "--need-app", "--lazy-apps"], wait_workers=None)
    assert inst.wait_exit() == 22


def test_without_need_app_answers_500(uzerg: InstanceStarter, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_xyz\n")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(broken)])
    status, body = http_get(inst.address(0))
    assert status == 500 and body == b"Internal Server Error"
    assert inst.stop() == 0


def test_listen_above_somaxconn_is_a_warning(uzerg: InstanceStarter, app_file: Path) -> None:
    """uWSGI 2.0.31 exits here; issue 10 keeps it a warning: the kernel caps the queue."""
    limit = int(Path("/proc/sys/net/core/somaxconn").read_text())
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--listen", str(limit + 1)])
    assert ("Listen queue size is greater than the system max net.core.somaxconn "
            f"({limit}): uzerg runs with the kernel's cap of {limit}") in inst.log_text()
    assert http_get(inst.address(0))[0] == 200
    assert inst.stop() == 0


def test_bind_error_is_one_line(uzerg: InstanceStarter, app_file: Path) -> None:
    first = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    taken = first.address(0)
    inst = uzerg.start(["--http-socket", taken, "--wsgi-file", str(app_file)],
                       wait_workers=None)
    assert inst.wait_exit() == 1
    assert f"cannot bind {taken}" in inst.log_text()
    assert "Traceback" not in inst.log_text()


def test_http_option_says_there_is_no_router(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http", "127.0.0.1:0", "--wsgi-file", str(app_file)])
    inst.wait_for_log("uzerg has no separate HTTP router process")
    assert http_get(inst.address(0))[0] == 200


def test_threads_serve_concurrently(uzerg: InstanceStarter, app_file: Path,
                                    tmp_path: Path) -> None:
    import threading

    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--threads", "4", "--enable-threads", "--stats", stats])
    address = inst.address(0)
    results: list[int] = []
    slow = [threading.Thread(target=lambda: results.append(http_get(address, "/slow")[0]))
            for _ in range(3)]
    for thread in slow:
        thread.start()
    # one process, 4 cores: a fourth request is answered while 3 are in /slow
    def in_request() -> int:
        cores = read_stats(stats)["workers"][0]["cores"]
        return sum(core["in_request"] for core in cores)
    wait_until(lambda: in_request() == 3, 10, "3 cores busy")
    assert http_get(address, "/")[0] == 200
    assert not results  # the slow ones are still waiting
    (tmp_path / "release").write_text("")
    for thread in slow:
        thread.join(15)
    assert results == [200, 200, 200]
