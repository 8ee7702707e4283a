"""uzerg vs the uWSGI binary vs gunicorn (sync, gthread): the scenarios of issue 13, one table.

    python bench/suite.py [--quick] [--rounds 3] [--seconds 4] [--only 1,3] [--servers ...]
    tox -e bench [-- --quick]

Scenarios 1-7 (bench/scenarios.py: hello world over HTTP and the uwsgi protocol with logging
off and on, behind nginx and through a zergpool, Flask and Django rendering a template, a 1 MB
POST echoed and a 1 MB static file, keep-alive, threads=4 with a 10 ms sleep, 1,000
connections) run in interleaved rounds: each round starts every (scenario, server) once, warms
it up, runs wrk and stops it, so a burst of load from something else on the machine hits one
run, not one server. Then scenario 8 (zerg start, launch to first answer) and 9 (idle memory
per worker, Flask loaded), from bench/startup_memory.py.

The table: median req/s of the rounds, the best, wrk's p50/p99 of the median run, the least
server CPU time per request (user+sys of the server's processes; nginx and the zergpool are
not counted, they are the same for everyone), wrk errors, and uzerg's ratio to each peer for
req/s (higher is better for uzerg) and CPU per request (lower is better). On a loaded machine
req/s moves by 20-30% between runs; the CPU column and bench/worker_instructions.py are the
steady measures. Not a test: every process started is killed by pid. Needs wrk, nginx,
uwsgi, and the `bench` and `interop` extras (gunicorn, Flask, Django).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "integration"))
from compare import (  # noqa: E402
    UWSGI_VARS,
    Results,
    Run,
    free_port,
    kill_tree,
    tree_cpu,
    uwsgi_lua_script,
    uwsgi_packet,
    wait_ready,
    wrk,
)
from scenarios import (  # noqa: E402
    MB,
    POST_SCRIPT,
    SCENARIOS,
    Scenario,
    server_command,
    server_env,
    zergpool_command,
)
from startup_memory import (  # noqa: E402
    idle_memory,
    print_memory,
    print_startup,
    warm_standby,
    zerg_start,
)

Key = tuple[Scenario, str]


@contextlib.contextmanager
def started(cmd: list[str], workdir: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(workdir / f"{name}.log", "ab") as log_file:
        process = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=log_file, start_new_session=True, env=server_env())
    try:
        yield process
    finally:
        kill_tree(process)


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def probe_request(scenario: Scenario) -> bytes:
    if scenario.front in ("uwsgi", "zergpool", "nginx"):  # nginx: its upstream, first
        return uwsgi_packet(UWSGI_VARS)
    return f"GET {scenario.path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode()


@contextlib.contextmanager
def serving(server: str, scenario: Scenario, workdir: Path) -> Iterator[tuple[int, int]]:
    """Start `server` for `scenario`; yields (port wrk hits, pid of the server's root)."""
    name = f"{server}-{scenario.name.replace(' ', '_')}"
    with contextlib.ExitStack() as stack:
        port = free_port()
        if scenario.front == "zergpool":
            pool = workdir / "pool.sock"
            stack.enter_context(started(zergpool_command(pool, port), workdir, "zergpool"))
            wait_listening(port)
            address = str(pool)
        else:
            address = f"127.0.0.1:{port}"
        process = stack.enter_context(
            started(server_command(server, scenario, address, workdir), workdir, name))
        wait_ready(process, port, probe_request(scenario))
        if scenario.front == "nginx":
            from support.peers import running_nginx

            nginx = stack.enter_context(running_nginx(workdir, f"127.0.0.1:{port}"))
            port = nginx.port
        yield port, process.pid


def wrk_script(scenario: Scenario, workdir: Path) -> Path | None:
    if not scenario.script:
        return None
    path = workdir / f"{scenario.script}.lua"
    if not path.exists():
        text = uwsgi_lua_script(uwsgi_packet(UWSGI_VARS)) if scenario.script == "uwsgi" \
            else POST_SCRIPT
        path.write_text(text)
    return path


def worker_wakeups(pid: int) -> dict[int, tuple[int, float]]:
    """Voluntary context switches (sleeps in epoll/accept that ended) and CPU of each worker."""
    counts = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = child.cpu_times()
                counts[child.pid] = (child.num_ctx_switches().voluntary, times.user + times.system)
    return counts


def run_case(server: str, scenario: Scenario, args: argparse.Namespace, workdir: Path) -> Run:
    wrk_args = argparse.Namespace(wrk_threads=scenario.wrk_threads,
                                  connections=scenario.connections)
    script = wrk_script(scenario, workdir)
    with serving(server, scenario, workdir) as (port, pid):
        wrk(port, args.warmup, wrk_args, script, scenario.path)
        before, cpu_before = worker_wakeups(pid), tree_cpu(pid)
        run = wrk(port, args.seconds, wrk_args, script, scenario.path)
        if run.requests:
            run.cpu_us = (tree_cpu(pid) - cpu_before) * 1e6 / run.requests
        if scenario.herd and run.requests:
            after = worker_wakeups(pid)
            shares = [(after[p][0] - before[p][0], after[p][1] - before[p][1])
                      for p in after if p in before]
            total_cpu = sum(cpu for _, cpu in shares) or 1.0
            run.note = (f"wake-ups/req {sum(w for w, _ in shares) / run.requests:.2f}, "
                        "worker CPU shares " + "/".join(f"{cpu / total_cpu:.0%}"
                                                        for _, cpu in shares))
        return run


# -- report ------------------------------------------------------------------------------------

def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:5.2f}" if ours and theirs and ours == ours and theirs == theirs \
        else "    -"


def print_table(results: Results, keys: list[Key]) -> None:
    print(f"\n{'#':<2} {'scenario':<22} {'server':<17} {'req/s':>7} {'best':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'CPU us':>7} {'err':>5}  {'uzerg/x req/s':>13} {'uzerg/x CPU':>11}")
    for scenario, server in keys:
        run = results.median((scenario, server))
        head = f"{scenario.number:<2} {scenario.name:<22} {server:<17}"
        if run is None:
            print(f"{head} {'failed':>7}")
            continue
        cpu = results.least_cpu((scenario, server))
        line = (f"{head} {run.rps:>7.0f} {results.best((scenario, server)):>7.0f} "
                f"{run.p50_ms:>7.2f} {run.p99_ms:>7.2f} {cpu:>7.0f} {run.errors:>5}")
        ours = results.median((scenario, "uzerg"))
        if server != "uzerg" and ours is not None:
            line += (f"  {ratio(ours.rps, run.rps):>13} "
                     f"{ratio(results.least_cpu((scenario, 'uzerg')), cpu):>11}")
        print(line + (f"  {run.note}" if run.note else ""))



def print_targets(results: Results, keys: list[Key], startup: dict[str, float],
                  resumes: dict[str, float], memory: dict[str, tuple[float, float]]) -> None:
    """Issue 13's targets, each met or not, from this run's ratios."""
    print("\ntargets (this run):")
    scenarios = list(dict.fromkeys(s for s, _ in keys))

    def check(label: str, value: float, ok: bool) -> None:
        print(f"  {'met    ' if ok else 'NOT met'} {label}: {value:.2f}")

    for scenario in scenarios:
        ours = results.median((scenario, "uzerg"))
        uwsgi = results.median((scenario, "uwsgi"))
        sync = results.median((scenario, "gunicorn-sync"))
        if ours is None:
            continue
        if uwsgi is not None and scenario.number <= 6:
            cpu = results.least_cpu((scenario, "uzerg")) / results.least_cpu((scenario, "uwsgi"))
            check(f"{scenario.name}: CPU/request <= 1.1x uWSGI", cpu, cpu <= 1.1)
        if uwsgi is not None and scenario.number <= 3:
            check(f"{scenario.name}: req/s >= 1.0x uWSGI", ours.rps / uwsgi.rps,
                  ours.rps >= uwsgi.rps)
        if sync is not None and scenario.number <= 3:
            check(f"{scenario.name}: req/s >= 2.5x gunicorn sync", ours.rps / sync.rps,
                  ours.rps >= 2.5 * sync.rps)
    if "uzerg" in startup and "uwsgi" in startup:
        check("zerg start (cold) <= uWSGI's, ms", startup["uzerg"],
              startup["uzerg"] <= startup["uwsgi"])
    if "uzerg" in resumes:
        check("zerg start with a warm standby (resume -> first answer) < 5 ms, ms",
              resumes["uzerg"], resumes["uzerg"] < 5)
    if "uzerg" in memory and "uwsgi" in memory:
        ours_uss, theirs_uss = memory["uzerg"][0], memory["uwsgi"][0]
        check("USS per idle worker <= uWSGI's + 2 MB, MB", ours_uss,
              ours_uss <= theirs_uss + 2.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round of 2 s runs, 3 zerg starts each")
    parser.add_argument("--rounds", type=int, default=3)  # an odd count: a true median
    parser.add_argument("--seconds", type=int, default=4)  # wrk takes whole seconds
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--starts", type=int, default=20, help="zerg starts per server")
    parser.add_argument("--only", default="", help="scenario numbers, e.g. 1,3,8")
    parser.add_argument("--servers", default="uzerg,uwsgi,gunicorn-sync,gunicorn-gthread")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.starts = 1, 2, 1, 3
    only = {int(n) for n in args.only.split(",") if n}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: kill by pid
    for tool in ("wrk", "uwsgi", "gunicorn", "nginx"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            print(f"not installed: {tool} (its cases fail)")
    servers = [s for s in args.servers.split(",") if s]
    keys: list[Key] = [(scenario, server) for scenario in SCENARIOS
                       if not only or scenario.number in only
                       for server in scenario.servers if server in servers]
    print(f"uzerg vs uWSGI {uwsgi_version()} vs gunicorn; 2 workers each, loopback, "
          f"{os.cpu_count()} CPUs; {args.rounds} round(s) of {args.seconds} s wrk runs")
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-suite-"))
    (workdir / "file.bin").write_bytes(os.urandom(MB))
    results = Results()
    startup: dict[str, float] = {}
    resumes: dict[str, float] = {}
    memory: dict[str, tuple[float, float]] = {}
    try:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds} (load average {os.getloadavg()[0]:.2f})",
                  flush=True)
            for scenario, server in keys:
                try:
                    run = run_case(server, scenario, args, workdir)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    print(f"  {scenario.name:<22} {server:<17} failed: {exc}", flush=True)
                    continue
                results.add((scenario, server), run)
                print(f"  {scenario.name:<22} {server:<17} {run.rps:>7.0f} req/s "
                      f"{run.cpu_us:>6.0f} us CPU/req", flush=True)
        if not only or 8 in only:
            startup = zerg_start([s for s in ("uzerg", "uwsgi") if s in servers], args.starts,
                                 workdir)
            resumes = warm_standby([s for s in ("uzerg", "uwsgi") if s in servers],
                                   args.starts, workdir)
        if not only or 9 in only:
            memory = idle_memory([s for s in servers if s != "gunicorn-gthread"], workdir)
    except KeyboardInterrupt:
        print("interrupted: partial results")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, keys)
    print_startup(startup, resumes)
    print_memory(memory)
    print_targets(results, keys, startup, resumes, memory)
    return 0


def uwsgi_version() -> str:
    try:
        return subprocess.run(["uwsgi", "--version"], capture_output=True, text=True,
                              check=False, timeout=10).stdout.strip()
    except OSError:
        return "(not installed)"


if __name__ == "__main__":
    sys.exit(main())
