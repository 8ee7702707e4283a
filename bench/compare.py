"""Hello world side by side: uzerg vs the uWSGI binary vs gunicorn (sync), 2 workers each.

    python bench/compare.py [--quick] [--seconds 5] [--repeat 3] [--connections 16]
                            [--servers uzerg,uwsgi,gunicorn] [--protocols http,uwsgi]
                            [--logging off,on]

Every case runs alone on loopback, in turn, with the same wrk settings (``wrk -t1 -c16``;
``apt-get install wrk``); a round starts and stops each server once and rounds repeat, so a
burst of load from something else on the machine hits one run, not one server. The table
shows the median run (req/s, wrk's p50/p99 latency), the best req/s, the least server CPU
time per request (user+sys of all its processes: steadier than req/s on a busy machine), then
the ratios uzerg/base, uzerg/uwsgi and uzerg/gunicorn of median and best req/s. Cases:

- http: ``--http-socket`` (uzerg, uWSGI) and gunicorn's ``--bind``;
- uwsgi: ``--socket``, the uwsgi protocol as nginx's uwsgi_pass speaks it (uzerg, uWSGI),
  driven by wrk with a Lua script that sends a uwsgi packet instead of an HTTP request;
- ``--baseline DIR``: uzerg from another checkout as a fourth server, "base";
- logging off (``--disable-logging``; gunicorn's default, no access log) and on (uzerg's and
  uWSGI's request lines, gunicorn's ``--access-logfile -``), written to a file.

Not a test. Every process started is killed by pid at the end of its case (and on Ctrl-C).
``--quick``: one round of 2 s runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
APP = BENCH / "hello_app.py"
SERVERS = ("uzerg", "uwsgi", "gunicorn")
PROTOCOLS = ("http", "uwsgi")
LOGGING = ("off", "on")

# the vars nginx's uwsgi_params would send for GET /; HTTP/1.0 so that the response (a raw
# HTTP response, then the server closes) tells wrk to reconnect rather than reuse
UWSGI_VARS = {
    "QUERY_STRING": "", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
    "REQUEST_URI": "/", "PATH_INFO": "/", "DOCUMENT_ROOT": "/usr/share/nginx/html",
    "SERVER_PROTOCOL": "HTTP/1.0", "REQUEST_SCHEME": "http", "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "50000", "SERVER_PORT": "80", "SERVER_NAME": "bench", "HTTP_HOST": "bench",
    "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*",
}


def uwsgi_packet(env: dict[str, str]) -> bytes:
    body = b"".join(
        len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
        for k, v in env.items()
    )
    return b"\0" + len(body).to_bytes(2, "little") + b"\0" + body


def uwsgi_lua_script(packet: bytes) -> str:
    escaped = "".join(f"\\{byte}" for byte in packet)
    # wrk parses the first request() result as HTTP before the run (and exits if it is not):
    # give it a valid one; every later call returns the packet
    return (
        f'local packet = "{escaped}"\n'
        "local first = true\n"
        "function request()\n"
        "  if first then\n"
        "    first = false\n"
        '    return "GET / HTTP/1.0\\r\\n\\r\\n"\n'
        "  end\n"
        "  return packet\n"
        "end\n"
    )


@dataclass(frozen=True)
class Case:
    server: str
    protocol: str
    logging: str

    @property
    def name(self) -> str:
        return f"{self.server} {self.protocol} log-{self.logging}"


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # wrk socket errors + non-2xx (a server that closes without saying so: read)
    requests: int = 0
    cpu_us: float = float("nan")  # server CPU (user+sys, all its processes) per request
    note: str = ""  # what else the run measured (suite.py: wake-ups per worker)


@dataclass
class Results:
    """The runs of each case (a Case here, (Scenario, server) in suite.py)."""

    runs: dict[Hashable, list[Run]] = field(default_factory=dict)

    def add(self, case: Hashable, run: Run) -> None:
        self.runs.setdefault(case, []).append(run)

    def median(self, case: Hashable) -> Run | None:
        runs = sorted(self.runs.get(case, []), key=lambda r: r.rps)
        return runs[(len(runs) - 1) // 2] if runs else None

    def best(self, case: Hashable) -> float:
        return max((r.rps for r in self.runs.get(case, [])), default=0.0)

    def least_cpu(self, case: Hashable) -> float:
        return min((r.cpu_us for r in self.runs.get(case, [])), default=float("nan"))


# -- processes ---------------------------------------------------------------------------------

def program(name: str) -> str:
    """The real executable of `name` installed beside this Python (uwsgi, gunicorn), else the
    one on PATH. A pyenv shim on PATH is a shell script: ~50 ms more per start, and valgrind
    would count the shell, not the server."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(case: Case, port: int) -> list[str]:
    addr = f"127.0.0.1:{port}"
    if case.server == "gunicorn":
        cmd = [program("gunicorn"), "--workers", "2", "--worker-class", "sync", "--bind", addr,
               "--chdir", str(BENCH), "hello_app:application"]
        return cmd + (["--access-logfile", "-"] if case.logging == "on" else [])
    binary = [program("uwsgi")] if case.server == "uwsgi" else [sys.executable, "-m", "uzerg"]
    socket_option = "--http-socket" if case.protocol == "http" else "--socket"
    cmd = binary + [socket_option, addr, "--processes", "2", "--master",
                    "--wsgi-file", str(APP)]
    return cmd + (["--disable-logging"] if case.logging == "off" else [])


def probe(port: int, request: bytes) -> bool:
    """One real request answered with a 200 (the workers are up, not just the socket)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.split(b"\r\n", 1)[0].endswith(b" 200 OK")
    except OSError:
        return False


def wait_ready(process: subprocess.Popen[bytes], port: int, request: bytes) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        if probe(port, request):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no 200 from port {port} within 30 s")


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and every descendant, each by pid, and reap the server. A server
    started in its own session (start_new_session) leads its process group: the group is
    killed too, so a worker forked after the list was read (the second one, on a loaded
    machine) does not outlive its master and answer the next run's request (a 7 ms "start")."""
    try:
        own_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        own_group = False
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for pid in [process.pid] + [child.pid for child in family]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if own_group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    psutil.wait_procs(family, timeout=10)


# -- load --------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _latency(out: str, percent: str) -> float:
    match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(match[1]) * _UNITS[match[2]] if match else float("nan")


def tree_cpu(pid: int) -> float:
    """User+system CPU seconds of a process and its living descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root] + root.children(recursive=True):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def wrk(
    port: int, seconds: int, args: argparse.Namespace, script: Path | None, path: str = "/"
) -> Run:
    cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    done = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                          timeout=seconds + 60, check=False)
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk failed: {(done.stderr or out).strip()[:200]}")
    errors = 0
    if sock := re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += int(sock[1]) + int(sock[3]) + int(sock[4])  # read: see Run.errors
    if non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(non2xx[1])
    run = Run(float(rps[1]), _latency(out, "50"), _latency(out, "99"), errors)
    if count := re.search(r"(\d+) requests in", out):
        run.requests = int(count[1])
    return run


def run_case(case: Case, args: argparse.Namespace, workdir: Path) -> Run:
    port = free_port()
    packet = uwsgi_packet(UWSGI_VARS)
    request = packet if case.protocol == "uwsgi" else b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
    script = workdir / "uwsgi.lua" if case.protocol == "uwsgi" else None
    log_path = workdir / f"{case.server}-{case.protocol}-{case.logging}.log"
    env = dict(os.environ)
    if case.server == "base":  # uzerg from another checkout (--baseline), first on the path
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.baseline, env.get("PYTHONPATH")]))
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command(case, port), cwd=workdir, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=log_file, start_new_session=True,
                                   env=env)
    try:
        wait_ready(process, port, request)
        wrk(port, args.warmup, args, script)
        cpu_before = tree_cpu(process.pid)
        run = wrk(port, args.seconds, args, script)
        if run.requests:
            run.cpu_us = (tree_cpu(process.pid) - cpu_before) * 1e6 / run.requests
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} during the run")
        return run
    finally:
        kill_tree(process)


# -- report ------------------------------------------------------------------------------------

def print_table(results: Results, cases: list[Case]) -> None:
    print(f"\n{'case':<26} {'req/s':>8} {'best':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU us/req':>10} {'errors':>7}")
    for case in cases:
        run = results.median(case)
        if run is None:
            print(f"{case.name:<26} {'failed':>8}")
            continue
        cpu = results.least_cpu(case)
        print(f"{case.name:<26} {run.rps:>8.0f} {results.best(case):>8.0f} {run.p50_ms:>7.2f} "
              f"{run.p99_ms:>7.2f} {cpu:>10.0f} {run.errors:>7}")
    print()
    for protocol in PROTOCOLS:
        for logging in LOGGING:
            ours = results.median(Case("uzerg", protocol, logging))
            if ours is None:
                continue
            for other in ("base", "uwsgi", "gunicorn"):
                theirs = results.median(Case(other, protocol, logging))
                if theirs is not None and theirs.rps:
                    best = results.best(Case("uzerg", protocol, logging)) / results.best(
                        Case(other, protocol, logging))
                    print(f"uzerg/{other:<8} {protocol:<5} log-{logging:<3} "
                          f"median {ours.rps / theirs.rps:5.2f}  best {best:5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 2 s runs")
    parser.add_argument("--seconds", type=int, default=5)  # wrk takes whole seconds
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--logging", default=",".join(LOGGING))
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the uzerg package of another checkout (e.g. `git archive "
                             "REV | tar -x -C DIR`) as server 'base', for before/after numbers")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.repeat = 2, 1, 1
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    servers = [s for s in args.servers.split(",") if s]
    if args.baseline:
        servers.insert(servers.index("uzerg") + 1 if "uzerg" in servers else 0, "base")
    missing = [s for s in servers if s in ("uwsgi", "gunicorn") and shutil.which(s) is None]
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}")
    cases = [
        Case(server, protocol, logging)
        for protocol in args.protocols.split(",")
        for logging in args.logging.split(",")
        for server in servers
        if server not in missing and not (server == "gunicorn" and protocol == "uwsgi")
    ]
    print(f"hello world, 2 workers, loopback, {os.cpu_count()} CPUs; wrk -t{args.wrk_threads} "
          f"-c{args.connections} -d{args.seconds}s, {args.repeat} round(s), median shown")
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-compare-"))
    (workdir / "uwsgi.lua").write_text(uwsgi_lua_script(uwsgi_packet(UWSGI_VARS)))
    results = Results()
    try:
        for round_no in range(1, args.repeat + 1):
            load = os.getloadavg()[0]
            print(f"round {round_no}/{args.repeat} (load average {load:.2f})", flush=True)
            for case in cases:
                try:
                    run = run_case(case, args, workdir)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"  {case.name:<26} failed: {exc}", flush=True)
                    continue
                results.add(case, run)
                print(f"  {case.name:<26} {run.rps:>8.0f} req/s {run.cpu_us:>6.0f} us CPU/req",
                      flush=True)
    except KeyboardInterrupt:
        print("interrupted: partial results")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
