"""A reload (SIGHUP: re-exec of the master) keeps the zerg server's own unix listener and every
zergpool entry's listener open: a zerg attaching meanwhile waits in the backlog and is served by
the new master, never refused; the socket file and the listening socket are the very same
before and after; --vacuum still removes the file at the final exit; an address changed in the
configuration across a reload takes effect (the old file removed, the new one bound).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.clients import uwsgi_request
from support.processes import Instance, InstanceStarter, unique_abstract, wait_until, write_app

from uzerg.zerg import HandshakeError, fetch_sockets

RELOADS = 3
# the new master serves its zerg listeners only once the app is loaded: a slow import keeps the
# reload window open long enough for attaches to land in it (they wait in the backlog)
SLOW_IMPORT = "import time\ntime.sleep(0.8)\n"


def slow_app(tmp_path: Path) -> Path:
    path = write_app(tmp_path / "app.py")
    path.write_text(SLOW_IMPORT + path.read_text())
    return path


def listening_unix_inode(address: str) -> int | None:
    """The inode of the socket listening on a unix path or @name (from /proc/net/unix)."""
    # the kernel prints an abstract name's NUL bytes as '@': uzerg binds "\0name\0"
    shown = f"@{address[1:]}@" if address.startswith("@") else address
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            # Flags 00010000: __SO_ACCEPTCON (listening); State 01: unconnected
            if len(fields) >= 8 and fields[7] == shown and fields[3] == "00010000":
                return int(fields[6])
    return None


@dataclass
class AttachLoop:
    """Zergs attaching one after another in a thread, each bounded by a deadline."""

    address: str
    timeout: float = 20.0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                received = fetch_sockets(self.address, self.timeout)
            except HandshakeError as exc:
                self.failures.append(f"{exc} ({exc.detail})")
                continue
            for sock in received.sockets:
                sock.close()
            self.ok += 1


def attach(address: str) -> tuple[int, float]:
    """One attach: (sockets received, seconds it took). Raises HandshakeError."""
    started = time.monotonic()
    received = fetch_sockets(address, 20)
    for sock in received.sockets:
        sock.close()
    return len(received.sockets), time.monotonic() - started


def reload_under_attaches(instance: Instance, address: str, expected_sockets: int) -> None:
    """HUP the instance RELOADS times while a loop attaches; one attach is made right in each
    exec window (after the old master said it re-executes): all must succeed."""
    loop = AttachLoop(address)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: loop.ok > 0, 15, "the first attaches")
        for _ in range(RELOADS):
            mark = instance.mark()
            instance.send(signal.SIGHUP)
            instance.wait_for_log("binary reloading uWSGI...", since=mark)
            # the old master is exec()ing now, the new one loads the app for a while
            count, _seconds = attach(address)
            assert count == expected_sockets
            instance.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
            instance.wait_for_log(f"*** Zerg server enabled on {address} ***", since=mark)
            before = loop.ok
            wait_until(lambda before=before: loop.ok > before, 15, "attaches after the reload")
    finally:
        loop.stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert loop.failures == [], loop.failures[:3]
    assert loop.ok > RELOADS
    log = instance.log_text()
    assert "unable to connect" not in log and "no longer configured" not in log


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_zerg_server_listener_survives_reloads(
    uzerg: InstanceStarter, tmp_path: Path, kind: str
) -> None:
    address = str(tmp_path / "zerg.sock") if kind == "path" else unique_abstract("reload")
    unix = str(tmp_path / "app.sock")
    main = uzerg.start(["--master", "--socket", unix, "--http-socket", "127.0.0.1:0",
                        "--wsgi-file", str(slow_app(tmp_path)), "--zerg-server", address])
    main.wait_for_log(f"*** Zerg server enabled on {address} ***")
    listener = listening_unix_inode(address)
    assert listener is not None
    file_inode = os.stat(address).st_ino if kind == "path" else None

    reload_under_attaches(main, address, expected_sockets=2)

    uzerg.track(main)
    assert listening_unix_inode(address) == listener  # the very same listening socket
    if file_inode is not None:
        assert os.stat(address).st_ino == file_inode  # never unlinked nor re-created
    # the zergs got working sockets: one attached now serves them
    zerg = uzerg.start(["--zerg", address, "--wsgi-file", str(write_app(tmp_path / "z.py"))])
    zerg.wait_for_log("zerg sockets attached")
    assert b"hello" in uwsgi_request(unix, "/")


def test_zergpool_listener_survives_reloads(uzerg: InstanceStarter, tmp_path: Path) -> None:
    pool_address, unix = str(tmp_path / "p.pool"), str(tmp_path / "u.sock")
    # with an app of its own, so that the new master is busy loading it during the reload
    pool = uzerg.start(["--master", "--zergpool", f"{pool_address}:127.0.0.1:0,{unix}",
                        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(slow_app(tmp_path))])
    pool.wait_for_log(f"*** Zerg server enabled on {pool_address} ***")
    listener = listening_unix_inode(pool_address)
    assert listener is not None
    file_inode = os.stat(pool_address).st_ino

    reload_under_attaches(pool, pool_address, expected_sockets=2)

    uzerg.track(pool)
    assert listening_unix_inode(pool_address) == listener
    assert os.stat(pool_address).st_ino == file_inode
    zerg = uzerg.start(["--zerg", pool_address, "--wsgi-file", str(write_app(tmp_path / "z.py"))])
    zerg.wait_for_log("zerg sockets attached")
    assert b"hello" in uwsgi_request(unix, "/")


def write_ini(path: Path, zerg_server: str, pool: str, unix: str, app: Path) -> None:
    path.write_text(
        "[uwsgi]\nmaster = true\nvacuum = true\n"
        f"socket = {unix}\nwsgi-file = {app}\n"
        f"zerg-server = {zerg_server}\nzergpool = {pool}:127.0.0.1:0\n"
    )


def test_vacuum_after_reload_and_addresses_changed_across_a_reload(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    ini, app, unix = tmp_path / "site.ini", write_app(tmp_path / "app.py"), str(tmp_path / "a.sock")
    first, first_pool = str(tmp_path / "zs-1"), str(tmp_path / "pool-1")
    write_ini(ini, first, first_pool, unix, app)
    inst = uzerg.start(["--ini", str(ini)])
    inst.wait_for_log(f"*** Zerg server enabled on {first} ***")
    created = os.stat(first).st_ino

    # same configuration: the file created before the reload is still ours afterwards
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log(f"*** Zerg server enabled on {first} ***", since=mark)
    assert os.stat(first).st_ino == created
    assert attach(first)[0] == 1

    # new addresses: the old listeners are closed and their files removed, the new ones bound
    second, second_pool = str(tmp_path / "zs-2"), str(tmp_path / "pool-2")
    write_ini(ini, second, second_pool, unix, app)
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log(f"*** Zerg server enabled on {second} ***", since=mark)
    inst.wait_for_log(f"zerg server {first} is no longer configured: closed, socket file "
                      "removed", since=mark)
    inst.wait_for_log(f"zergpool {first_pool} is no longer configured: closed, socket file "
                      "removed", since=mark)
    assert not os.path.exists(first) and not os.path.exists(first_pool)
    assert attach(second)[0] == 1
    assert attach(second_pool)[0] == 1
    with pytest.raises(HandshakeError):
        fetch_sockets(first, 2)

    # and back to the first address, then the final stop: vacuum removes the file that the
    # master created before its last reload
    write_ini(ini, first, second_pool, unix, app)
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log(f"*** Zerg server enabled on {first} ***", since=mark)
    assert not os.path.exists(second)
    mark = inst.mark()
    inst.send(signal.SIGHUP)  # one more reload: the files are inherited, not bound
    inst.wait_for_log(f"*** Zerg server enabled on {first} ***", since=mark)
    uzerg.track(inst)
    assert inst.stop(signal.SIGTERM) == 0
    assert not os.path.exists(first)
    assert not os.path.exists(second_pool)
    assert not os.path.exists(unix)


def test_a_file_replaced_behind_the_server_is_not_vacuumed(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    zerg_server, app = str(tmp_path / "zs"), write_app(tmp_path / "app.py")
    inst = uzerg.start(["--master", "--vacuum", "--socket", "127.0.0.1:0", "--wsgi-file",
                        str(app), "--zerg-server", zerg_server])
    inst.wait_for_log(f"*** Zerg server enabled on {zerg_server} ***")
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log(f"*** Zerg server enabled on {zerg_server} ***", since=mark)
    os.unlink(zerg_server)
    Path(zerg_server).write_text("someone else's")
    uzerg.track(inst)
    assert inst.stop(signal.SIGTERM) == 0
    assert Path(zerg_server).read_text() == "someone else's"
