"""A master out of descriptors: accept() on the zerg server (and the stats server) fails with
EMFILE while peers wait in the backlog. The master must back off (stop watching the listener for
a moment) instead of spinning, log it once, obey signals meanwhile, and serve zergs again once
descriptors are free."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psutil
from support.clients import http_get
from support.processes import InstanceStarter, write_app

HELD_PEERS = 40
WINDOW = 1.5  # seconds of CPU use measured
MAX_CPU_SHARE = 0.15  # of one core: ~0.01 measured; spinning: 0.37 on a loaded 2-core box


def _lowest_free_fd(pid: int) -> int:
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def test_master_backs_off_when_out_of_descriptors(uzerg: InstanceStarter,
                                                  tmp_path: Path) -> None:
    app = write_app(tmp_path / "app.py")
    zerg_addr, stats = str(tmp_path / "zerg.sock"), str(tmp_path / "stats.sock")
    server = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                          "--zerg-server", zerg_addr, "--stats", stats])
    server.wait_for_log(f"*** Zerg server enabled on {zerg_addr} ***")
    address = server.address(0)
    master = psutil.Process(server.pid)
    limit = master.rlimit(psutil.RLIMIT_NOFILE)
    # every descriptor number below the soft limit is taken: the next accept() gets EMFILE
    master.rlimit(psutil.RLIMIT_NOFILE, (_lowest_free_fd(server.pid), limit[1]))
    peers: list[socket.socket] = []
    try:
        mark = server.mark()
        for _ in range(HELD_PEERS):  # more than the master has descriptors left (none)
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            peer.connect(zerg_addr)  # waits in the backlog, never read
            peers.append(peer)
        stats_peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stats_peer.connect(stats)
        peers.append(stats_peer)
        server.wait_for_log("accept(): Too many open files: retrying later", since=mark)
        server.wait_for_log("stats server accept(): Too many open files", since=mark)
        before = master.cpu_times()
        started = time.monotonic()
        time.sleep(WINDOW)  # a measuring window, not a synchronisation
        after = master.cpu_times()
        elapsed = time.monotonic() - started
        used = (after.user + after.system) - (before.user + before.system)
        assert used / elapsed < MAX_CPU_SHARE, f"master: {used:.2f} s of CPU in {elapsed:.2f} s"
        # it still obeys signals meanwhile
        server.send(signal.SIGUSR1)
        server.wait_for_log("workers total requests:", since=mark)
        episode = server.log_text()[mark:]
        assert episode.count("retrying later") == 1  # once per episode, not per attempt
        assert episode.count("stats server accept()") == 1
        master.rlimit(psutil.RLIMIT_NOFILE, limit)
        stats_peer.settimeout(10)
        assert stats_peer.recv(1) == b"{"  # the waiting stats client is answered
    finally:
        for peer in peers:
            peer.close()
        master.rlimit(psutil.RLIMIT_NOFILE, limit)

    # descriptors are free again: a zerg attaches and serves
    mark = server.mark()
    zerg = uzerg.start(["--zerg", zerg_addr, "--wsgi-file", str(app)])
    zerg.wait_for_log("zerg sockets attached")
    server.send(signal.SIGTSTP)
    server.wait_for_log("*** worker 1 suspended ***", since=mark)
    zerg_worker = zerg.worker_pids(1)[0]
    assert int(http_get(address)[1].split()[1]) == zerg_worker
    assert server.stop(signal.SIGTERM) == 0
