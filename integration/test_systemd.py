"""systemd integration (issue 12): socket activation (LISTEN_FDS, LISTEN_FDNAMES, fd://) and
readiness notifications (NOTIFY_SOCKET), against a small fake activator
(integration/support/activator.py) that binds the sockets, execs uzerg with them as fds 3, 4,
... and listens on the notify socket."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
from support.activator import Activator, NotifyListener
from support.clients import get, http_get
from support.processes import InstanceStarter, unique_abstract, wait_until, write_version_app


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _listening_inodes(pid: int) -> set[int]:
    """Inodes of the TCP sockets ``pid`` listens on."""
    found = set()
    for conn in psutil.Process(pid).net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.fd >= 0:
            found.add(os.stat(f"/proc/{pid}/fd/{conn.fd}").st_ino)
    return found


def test_activated_sockets_are_used_and_notifications_arrive_in_order(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    activator = Activator()
    uwsgi_sock = activator.bind_tcp("api")
    unix_path = tmp_path / "http.sock"
    activator.bind_unix("web", unix_path)
    named = activator.bind_tcp("extra")
    pool_sock = activator.bind_tcp("pool")
    unix_inode = os.stat(unix_path).st_ino
    notify = NotifyListener(str(tmp_path / "notify.sock"))
    uwsgi_port = uwsgi_sock.getsockname()[1]
    named_port = named.getsockname()[1]
    pool_port = pool_sock.getsockname()[1]
    try:
        inst = uzerg.start(
            ["--master", "--processes", "2", "--wsgi-file", str(app),
             "--socket", f"127.0.0.1:{uwsgi_port}", "--http-socket", str(unix_path),
             "--http-socket", "fd://extra",
             "--zergpool", f"{tmp_path / 'pool.sock'}:127.0.0.1:{pool_port}"],
            wait_workers=2, prefix=activator.prefix(), pass_fds=activator.pass_fds(),
            env={**activator.environ(), "NOTIFY_SOCKET": notify.address},
        )
        notify.wait_for("READY")
        text = inst.log_text()
        assert "- SystemD socket activation detected -" in text
        assert f"uwsgi socket 0 inherited INET address 127.0.0.1:{uwsgi_port}" in text
        assert "bound to" not in text  # nothing bound anew
        assert get(f"127.0.0.1:{uwsgi_port}", "uwsgi").startswith("v1 ")
        assert get(str(unix_path), "http").startswith("v1 ")
        assert get(f"127.0.0.1:{named_port}", "http").startswith("v1 ")
        # the very sockets the activator bound: same inodes, no other listener on the ports
        assert activator.inodes() <= _socket_inodes(inst.pid)
        assert _listening_inodes(inst.pid) <= activator.inodes()
        assert os.stat(unix_path).st_ino == unix_inode

        since = inst.mark()
        inst.send(signal.SIGHUP)
        inst.wait_for_log("gracefully (RE)spawned uWSGI master process", since=since)
        notify.wait_for("READY", count=2)
        assert get(f"127.0.0.1:{uwsgi_port}", "uwsgi").startswith("v1 ")
        assert activator.inodes() <= _socket_inodes(inst.pid)  # kept across the re-exec
        inst.stop(signal.SIGTERM)
        messages = notify.wait_for("STOPPING")
    finally:
        notify.close()
        activator.close()
    kinds = [next(k for k in ("READY", "RELOADING", "STOPPING") if k in m) for m in messages
             if {"READY", "RELOADING", "STOPPING"} & m.keys()]
    assert kinds == ["READY", "RELOADING", "READY", "STOPPING"], messages
    assert messages[0]["STATUS"] == "uzerg is ready: 2 workers accepting"
    assert "MONOTONIC_USEC" in next(m for m in messages if "RELOADING" in m)


def test_abstract_notify_socket_and_numeric_fd(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    activator = Activator()
    sock = activator.bind_tcp("web")
    notify = NotifyListener(unique_abstract("notify"))
    try:
        inst = uzerg.start(["--wsgi-file", str(app), "--http-socket", "fd://3"],
                           prefix=activator.prefix(), pass_fds=activator.pass_fds(),
                           env={**activator.environ(), "NOTIFY_SOCKET": notify.address})
        notify.wait_for("READY")
        assert http_get(f"127.0.0.1:{sock.getsockname()[1]}")[0] == 200
        inst.send(signal.SIGTTIN)  # the worker count follows in STATUS=
        wait_until(lambda: any(m.get("STATUS") == "uzerg is ready: 2 workers accepting"
                               for m in notify.collect()), 10, "STATUS with 2 workers")
        inst.stop(signal.SIGTERM)
    finally:
        notify.close()
        activator.close()


def test_bad_fd_reference_is_one_clear_line(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    for reference, message in (("fd://nosuch", "no socket named 'nosuch' was passed"),
                               ("fd://0", "fd://0: not a socket"),
                               ("fd://77", "fd://77: Bad file descriptor")):
        inst = uzerg.start(["--wsgi-file", str(app), "--http-socket", reference],
                           wait_workers=None)
        assert inst.wait_exit() == 1
        text = inst.log_text()
        assert message in text, text
        assert "Traceback" not in text
    # LISTEN_PID of another process: the variables are not ours, nothing is adopted
    inst = uzerg.start(["--wsgi-file", str(app), "--http-socket", "127.0.0.1:0"],
                       env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert "socket activation" not in inst.log_text()
    wait_until(lambda: http_get(inst.address(0))[0] == 200, 10, "an answer")
