"""Scenarios 8 and 9 of bench/suite.py: zerg start and idle memory per worker.

8. A uzerg zergpool holds a TCP socket. A zerg (uzerg, or the uWSGI binary: it attaches to a
   uzerg pool as to its own) is launched with ``--zerg POOL``, 2 workers, hello world; at the
   same moment a client connects to the pool's socket and sends a uwsgi request, which waits in
   the backlog until the zerg's first worker accepts it. The time from launch to the answer,
   median of N starts (interleaved, after one untimed start each that writes .pyc files).
   Warm standby: a zerg started paused (uzerg's ``start-paused``; uWSGI, which has none, is
   paused through its master fifo once it answers) while a request waits in the pool's queue;
   the time from the master fifo's ``p`` (resume) to the answer, median of N.
9. The server with the Flask app over HTTP, 2 workers; after 20 requests, each worker's USS
   (the memory only it has: what it wrote since the fork) and RSS, averaged over the workers.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from compare import UWSGI_VARS, free_port, kill_tree, uwsgi_packet, wait_ready
from scenarios import (
    FLASK,
    HELLO,
    Scenario,
    server_command,
    server_env,
    uzerg_label,
    zergpool_command,
)


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


def _medians_through_a_pool(
    servers: list[str], starts: int, workdir: Path, name: str, fmt: str,
    one_run: Callable[[str, Path, int, Path], float], warm_up: bool,
) -> dict[str, float]:
    """Start a zergpool, time ``one_run`` for each server ``starts`` times (interleaved; after
    one untimed run each when ``warm_up``: .pyc files, page cache), print the runs, return the
    median ms per server."""
    port = free_port()
    pool = workdir / f"{name}pool.sock"
    times: dict[str, list[float]] = {server: [] for server in servers}
    with open(workdir / f"{name}pool.log", "ab") as log_file:
        pool_process = subprocess.Popen(zergpool_command(pool, port), cwd=workdir,
                                        stdin=subprocess.DEVNULL, stdout=log_file,
                                        stderr=log_file, start_new_session=True, env=server_env())
    try:
        deadline = time.monotonic() + 30
        while not pool.exists():
            if time.monotonic() > deadline or pool_process.poll() is not None:
                raise RuntimeError("the zergpool did not start")
            time.sleep(0.05)
        if warm_up:
            for server in servers:
                one_run(server, pool, port, workdir)
        for turn in range(starts):
            # each server goes first every other turn: a start right after another one's
            # (its exit, the page cache, the scheduler) is not always the same server's
            for server in servers if turn % 2 == 0 else servers[::-1]:
                try:
                    times[server].append(one_run(server, pool, port, workdir))
                except (RuntimeError, OSError) as exc:
                    print(f"  {name} {server} failed: {exc}", flush=True)
    finally:
        kill_tree(pool_process)
    for server, runs in times.items():
        print(f"  {name} {server:<8} " + " ".join(format(t, fmt) for t in sorted(runs)) + " ms",
              flush=True)
    return {server: statistics.median(runs) for server, runs in times.items() if runs}


def zerg_start(servers: list[str], starts: int, workdir: Path) -> dict[str, float]:
    """Median ms from launching a zerg to its first answer, per server."""
    return _medians_through_a_pool(servers, starts, workdir, "start", ".0f", _one_start,
                                   warm_up=True)


def _wait_log(path: Path, text: bytes, count: int, process: subprocess.Popen[bytes],
              deadline: float) -> None:
    while path.read_bytes().count(text) < count:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"no {count} x {text!r} in {path.name}")
        time.sleep(0.005)


def _one_resume(server: str, pool: Path, port: int, workdir: Path) -> float:
    """ms from the master fifo's ``p`` to the first answer of a paused zerg: uzerg's started
    with ``start-paused`` (a warm standby), uWSGI's paused once it answered (it has no
    start-paused); the request waits in the pool's queue meanwhile."""
    fifo = workdir / f"standby-{server}.fifo"
    fifo.unlink(missing_ok=True)
    cmd = server_command(server, Scenario(8, "zerg start", HELLO, front="zergpool"), str(pool),
                         workdir) + ["--master-fifo", str(fifo)]
    if server == "uzerg":
        cmd.append("--start-paused")
    request = uwsgi_packet(UWSGI_VARS)
    log_path = workdir / f"standby-{server}.log"
    log_path.write_bytes(b"")
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=log_file, start_new_session=True, env=server_env())
    try:
        deadline = time.monotonic() + 30
        if server == "uzerg":
            _wait_log(log_path, b"suspended ***", 2, process, deadline)
        else:
            _ask(port, request, deadline)  # its workers accept: now pause them
            while not fifo.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server} made no master fifo")
                time.sleep(0.005)
            with open(fifo, "w") as writer:
                writer.write("p")
            _wait_log(log_path, b"*** PAUSE", 1, process, deadline)
            time.sleep(0.2)  # a bench, not a test: let the workers take the pause
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)  # queued: nobody accepts
            sock.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                if sock.recv(1):
                    raise RuntimeError(f"a paused {server} answered")
            sock.settimeout(30)
            with open(fifo, "w") as writer:
                start = time.monotonic()
                writer.write("p")
            answer = sock.recv(65536)
            elapsed = time.monotonic() - start
        if b" 200 OK" not in answer.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"{server} standby answered {answer[:60]!r}")
        return elapsed * 1000
    finally:
        kill_tree(process)


def warm_standby(servers: list[str], starts: int, workdir: Path) -> dict[str, float]:
    """Median ms from resuming a paused zerg (master fifo ``p``) to its first answer."""
    return _medians_through_a_pool(servers, starts, workdir, "standby", ".1f", _one_resume,
                                   warm_up=False)


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


def print_startup(medians: dict[str, float], resumes: dict[str, float]) -> None:
    if medians:
        print("\n8  zerg start, launch -> first answer (median): " + ", ".join(
            f"{server} {ms:.0f} ms" for server, ms in medians.items())
            + f" (uzerg: {uzerg_label()})")
    if "uzerg" in medians and "uwsgi" in medians:
        print(f"   uzerg/uwsgi {medians['uzerg'] / medians['uwsgi']:.2f}")
    if resumes:
        print("   warm standby, master fifo p -> first answer (median): " + ", ".join(
            f"{server} {ms:.1f} ms" for server, ms in resumes.items())
            + " (uzerg: start-paused; uWSGI: paused after its start)")


def print_memory(memory: dict[str, tuple[float, float]]) -> None:
    if not memory:
        return
    print("\n9  idle worker, Flask loaded (per worker, MB): " + ", ".join(
        f"{server} USS {uss:.1f} RSS {rss:.1f}" for server, (uss, rss) in memory.items()))
