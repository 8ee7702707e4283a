"""Scenarios 8 and 9 of bench/suite.py: zerg start and idle memory per worker.

8. A uzerg zergpool holds a TCP socket. A zerg (uzerg, or the uWSGI binary: it attaches to a
   uzerg pool as to its own) is launched with ``--zerg POOL``, 2 workers, hello world; at the
   same moment a client connects to the pool's socket and sends a uwsgi request, which waits in
   the backlog until the zerg's first worker accepts it. The time from launch to the answer,
   median of N starts (interleaved, after one untimed start each that writes .pyc files).
9. The server with the Flask app over HTTP, 2 workers; after 20 requests, each worker's USS
   (the memory only it has: what it wrote since the fork) and RSS, averaged over the workers.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import time
from pathlib import Path

import psutil
from compare import UWSGI_VARS, free_port, kill_tree, uwsgi_packet, wait_ready
from scenarios import FLASK, HELLO, Scenario, server_command, server_env, zergpool_command


def _ask(port: int, request: bytes, deadline: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=deadline - time.monotonic()) \
            as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _one_start(server: str, pool: Path, port: int, workdir: Path) -> float:
    cmd = server_command(server, Scenario(8, "zerg start", HELLO, front="zergpool"), str(pool),
                         workdir)
    request = uwsgi_packet(UWSGI_VARS)
    with open(workdir / f"start-{server}.log", "ab") as log_file:
        start = time.monotonic()
        process = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=log_file, start_new_session=True, env=server_env())
    try:
        answer = _ask(port, request, start + 30)
        elapsed = time.monotonic() - start
        if b" 200 OK" not in answer.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"{server} zerg answered {answer[:60]!r}")
        return elapsed * 1000
    finally:
        kill_tree(process)


def zerg_start(servers: list[str], starts: int, workdir: Path) -> dict[str, float]:
    """Median ms from launching a zerg to its first answer, per server."""
    port = free_port()
    pool = workdir / "startpool.sock"
    times: dict[str, list[float]] = {server: [] for server in servers}
    with open(workdir / "startpool.log", "ab") as log_file:
        pool_process = subprocess.Popen(zergpool_command(pool, port), cwd=workdir,
                                        stdin=subprocess.DEVNULL, stdout=log_file,
                                        stderr=log_file, start_new_session=True, env=server_env())
    try:
        deadline = time.monotonic() + 30
        while not pool.exists():
            if time.monotonic() > deadline or pool_process.poll() is not None:
                raise RuntimeError("the zergpool did not start")
            time.sleep(0.05)
        for server in servers:  # untimed: .pyc files, page cache
            _one_start(server, pool, port, workdir)
        for _ in range(starts):
            for server in servers:
                try:
                    times[server].append(_one_start(server, pool, port, workdir))
                except (RuntimeError, OSError) as exc:
                    print(f"  zerg start {server} failed: {exc}", flush=True)
    finally:
        kill_tree(pool_process)
    medians = {server: statistics.median(runs) for server, runs in times.items() if runs}
    for server, runs in times.items():
        print(f"  zerg start {server:<8} " + " ".join(f"{t:.0f}" for t in sorted(runs)) + " ms",
              flush=True)
    return medians


def idle_memory(servers: list[str], workdir: Path) -> dict[str, tuple[float, float]]:
    """(USS, RSS) in MB per idle worker of each server with the Flask app loaded."""
    scenario = Scenario(9, "idle memory", FLASK)
    request = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
    memory = {}
    for server in servers:
        port = free_port()
        cmd = server_command(server, scenario, f"127.0.0.1:{port}", workdir)
        with open(workdir / f"memory-{server}.log", "ab") as log_file:
            process = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=log_file,
                                       start_new_session=True, env=server_env())
        try:
            wait_ready(process, port, request)
            for _ in range(20):
                _ask(port, request, time.monotonic() + 10)
            time.sleep(0.5)  # a bench, not a test: let the workers settle
            workers = psutil.Process(process.pid).children()
            infos = []
            for worker in workers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    infos.append(worker.memory_full_info())
            if infos:
                memory[server] = (statistics.mean(i.uss for i in infos) / 2**20,
                                  statistics.mean(i.rss for i in infos) / 2**20)
        except (RuntimeError, OSError) as exc:
            print(f"  idle memory {server} failed: {exc}", flush=True)
        finally:
            kill_tree(process)
    return memory


def print_startup(medians: dict[str, float]) -> None:
    if not medians:
        return
    print("\n8  zerg start, launch -> first answer (median): " + ", ".join(
        f"{server} {ms:.0f} ms" for server, ms in medians.items()))
    if "uzerg" in medians and "uwsgi" in medians:
        print(f"   uzerg/uwsgi {medians['uzerg'] / medians['uwsgi']:.2f}; warm standby: not "
              "available in uzerg yet")


def print_memory(memory: dict[str, tuple[float, float]]) -> None:
    if not memory:
        return
    print("\n9  idle worker, Flask loaded (per worker, MB): " + ", ".join(
        f"{server} USS {uss:.1f} RSS {rss:.1f}" for server, (uss, rss) in memory.items()))
