"""Life of a pool (SPEC §5, §4.4): a reload keeps its sockets, a killed pool leaves its zergs
serving, and a pool restarted while zergs still hold its sockets either shares its TCP ports
(SO_REUSEPORT, logged) with them or refuses clearly (a unix socket in use), never stealing one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from support.clients import answering_pid
from support.netns import start_client_loop
from support.processes import Instance, InstanceStarter, start_zerg, wait_until

BOUND = re.compile(r"zergpool \S+ bound to TCP socket (\S+) \(fd: \d+\)")


def listening_inodes(port: int) -> list[int]:
    """Inodes of every TCP socket listening on ``port`` in this network namespace."""
    inodes = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rpartition(":")[2], 16)
                if local_port == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.append(int(fields[9]))
    return inodes


def start_pool(uzerg: InstanceStarter, entry: str) -> Instance:
    pool = uzerg.start(["--master", "--zergpool", entry], wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    return pool


def start_pool_zerg(uzerg: InstanceStarter, pool_address: str, app_file: Path,
                    since_pool: Instance | None = None) -> tuple[Instance, set[int]]:
    mark = since_pool.mark() if since_pool else 0
    zerg = start_zerg(uzerg, app_file, pool_address, workers=2, extra=("--master",))
    if since_pool is not None:  # the pool saw this very zerg
        since_pool.wait_for_log(f"handed to zerg pid {zerg.pid} ", since=mark)
    return zerg, set(zerg.worker_pids())


def test_reload_keeps_pool_sockets_and_serves_new_zergs(
    uzerg: InstanceStarter, tmp_path: Path, app_file: Path
) -> None:
    pool_address, unix_sock = str(tmp_path / "p.pool"), str(tmp_path / "u.sock")
    pool = start_pool(uzerg, f"{pool_address}:127.0.0.1:0,{unix_sock}")
    tcp = BOUND.search(pool.log_text()).group(1)  # type: ignore[union-attr]
    port = int(tcp.rpartition(":")[2])
    before = listening_inodes(port)
    unix_inode = os.stat(unix_sock).st_ino
    old_zerg, old_workers = start_pool_zerg(uzerg, pool_address, app_file, pool)

    loop = start_client_loop([tcp, unix_sock], tmp_path / "stop-loop")
    try:
        wait_until(lambda: answering_pid(tcp), 10, "the loop's first answers")
        mark = pool.mark()
        pool.send(signal.SIGHUP)
        pool.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
        new_zerg, new_workers = start_pool_zerg(uzerg, pool_address, app_file, pool)
        seen = wait_until(lambda: new_workers & {answering_pid(tcp) for _ in range(20)}, 15,
                          "a worker of the new zerg answering")
        assert seen
    finally:
        summary = loop.stop()
    assert summary["failures"] == [], summary["failures"][:3]
    assert summary["ok"] > 0
    assert listening_inodes(port) == before  # the very same listener: never rebound
    assert os.stat(unix_sock).st_ino == unix_inode
    after_reload = pool.log_text()[mark:]
    assert "bound to" not in after_reload, after_reload
    assert pool.worker_pids() == []  # still a pool-only instance
    answered = {int(body.split()[-1]) for body in summary["bodies"]}
    assert answered <= old_workers | new_workers
    assert old_zerg.process.poll() is None


def test_killed_pool_leaves_zergs_serving_and_a_restart_shares_its_tcp_sockets(
    uzerg: InstanceStarter, tmp_path: Path, app_file: Path
) -> None:
    pool_address = str(tmp_path / "p.pool")
    pool = start_pool(uzerg, f"{pool_address}:127.0.0.1:0")
    tcp = BOUND.search(pool.log_text()).group(1)  # type: ignore[union-attr]
    port = int(tcp.rpartition(":")[2])
    old_zerg, old_workers = start_pool_zerg(uzerg, pool_address, app_file, pool)

    loop = start_client_loop([tcp], tmp_path / "stop-loop")
    try:
        wait_until(lambda: answering_pid(tcp), 10, "the loop's first answers")
        pool.send(signal.SIGKILL)
        pool.wait_exit(10)
        assert {answering_pid(tcp) for _ in range(10)} <= old_workers  # zergs keep serving
    finally:
        summary = loop.stop()
    assert summary["failures"] == [], summary["failures"][:3]
    assert Path(pool_address).is_socket()  # a dead pool's leftover file

    # Restart it, the same entry (the same port), while the old zerg holds that port.
    restarted = start_pool(uzerg, f"{pool_address}:{tcp}")
    restarted.wait_for_log(f"{tcp} is still listening in another process")
    assert len(listening_inodes(port)) == 2  # the old zerg's queue and the new pool's
    new_zerg, new_workers = start_pool_zerg(uzerg, pool_address, app_file, restarted)
    answered = [answering_pid(tcp) for _ in range(40)]
    assert set(answered) <= old_workers | new_workers
    assert set(answered) & old_workers, "the old zerg no longer serves"
    assert set(answered) & new_workers, "the restarted pool's zerg never served"

    # The old zerg goes away (as an operator would, once the new ones serve): nothing is lost.
    old_zerg.stop(signal.SIGTERM)
    wait_until(lambda: len(listening_inodes(port)) == 1, 15, "the old queue closing")
    assert {answering_pid(tcp) for _ in range(20)} <= new_workers


def test_restarted_pool_refuses_a_unix_socket_its_old_zergs_still_serve(
    uzerg: InstanceStarter, tmp_path: Path, app_file: Path
) -> None:
    pool_address, unix_sock = str(tmp_path / "p.pool"), str(tmp_path / "u.sock")
    entry = f"{pool_address}:{unix_sock}"
    pool = start_pool(uzerg, entry)
    old_zerg, old_workers = start_pool_zerg(uzerg, pool_address, app_file, pool)
    inode = os.stat(unix_sock).st_ino
    pool.send(signal.SIGKILL)
    pool.wait_exit(10)

    result = subprocess.run([sys.executable, "-m", "uzerg", "--master", "--zergpool", entry],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert (f"zergpool {entry}: cannot bind {unix_sock}: another process is listening on it "
            "(stop it, or attach to it with --zerg)") in output
    assert os.stat(unix_sock).st_ino == inode  # never unlinked from under the old zerg
    assert answering_pid(unix_sock) in old_workers
    assert old_zerg.process.poll() is None
