"""System calls and context switches per request in the workers of uzerg and uWSGI, under wrk.

    python bench/syscalls.py [--only 6] [--servers uzerg,uwsgi] [--seconds 5] [--rounds 2]
                             [--tool perf|strace]

CPU time per request swings with the machine's load; what a worker asks of the kernel per
request does not, or much less: this runs a scenario of bench/suite.py (default 6: threads=4,
an app sleeping 10 ms) for each server, and counts, in the worker processes only (every
thread), the system calls by name, futex calls and context switches, divided by the requests
wrk made meanwhile. ``--tool perf`` (default) counts with ``perf stat`` and the kernel's
syscall tracepoints, which barely slow the workers; ``--tool strace`` uses ``strace -c -f``
instead (any syscall, but it slows every call several-fold, and slower threads contend more
for the GIL and the locks: its futex count is inflated). Needs root (or
perf_event_paranoid <= 1) for the tracepoints. Not a test; every process started is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import SCENARIOS, Scenario  # noqa: E402
from suite import serving, wrk, wrk_script  # noqa: E402

# the calls of a request's path in either server (uzerg: recvfrom/sendto, uWSGI: read/writev)
NAMED = ("accept4", "epoll_wait", "futex", "recvfrom", "read", "sendto", "writev", "write",
         "sendfile64", "openat", "newfstatat", "readlink", "setsockopt",
         "close", "clock_nanosleep", "getsockname", "poll", "pselect6")


def perf_events() -> list[str]:
    return (["raw_syscalls:sys_enter", "context-switches", "task-clock"]
            + [f"syscalls:sys_enter_{name}" for name in NAMED])


def worker_pids(root: int) -> list[int]:
    return [child.pid for child in psutil.Process(root).children()]


def counted(tool: str, pids: list[int], workdir: Path) -> subprocess.Popen[bytes]:
    """perf or strace counting in every thread of `pids`, started and ready: perf with its
    events disabled (enable() starts them), strace attached to every thread."""
    out = workdir / f"{tool}.out"
    if tool == "perf":
        for fifo in ("ctl", "ack"):
            with contextlib.suppress(FileNotFoundError):
                (workdir / fifo).unlink()
            os.mkfifo(workdir / fifo)
        cmd = ["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(perf_events()),
               "-D", "-1", "--control", f"fifo:{workdir / 'ctl'},{workdir / 'ack'}",
               "-p", ",".join(map(str, pids))]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cmd = ["strace", "-f", "-c", "-q", "-o", str(out)]
    for pid in pids:
        cmd += ["-p", str(pid)]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not all(traced(pid) for pid in pids):  # wrk starts once every thread is traced
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("strace did not attach")
        time.sleep(0.05)
    return process


def traced(pid: int) -> bool:
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as status:
            if re.search(r"^TracerPid:\s+0$", status.read(), re.M):
                return False
    return True


def perf_command(workdir: Path, command: str) -> None:
    """Send perf stat `command` ("enable", "disable") and wait for its ack."""
    with open(workdir / "ctl", "w") as ctl:
        ctl.write(command + "\n")
    with open(workdir / "ack") as ack:
        ack.readline()


def read_counts(tool: str, workdir: Path) -> dict[str, float]:
    """name -> count (perf: also "all", "context-switches" and "task-clock" in ms)."""
    text = (workdir / f"{tool}.out").read_text()
    counts: dict[str, float] = {}
    if tool == "perf":
        for line in text.splitlines():
            fields = line.split(",")
            if len(fields) < 3 or not fields[0].replace(".", "", 1).isdigit():
                continue
            event = fields[2]
            name = ("all" if event == "raw_syscalls:sys_enter"
                    else event.removeprefix("syscalls:sys_enter_"))
            counts[name] = float(fields[0])
        return counts
    for line in text.splitlines():  # % time, seconds, usecs/call, calls, [errors], syscall
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = float(fields[3])
    counts["all"] = sum(counts.values())
    return counts


def measure(server: str, scenario: Scenario, args: argparse.Namespace,
            workdir: Path) -> tuple[int, dict[str, float]]:
    wrk_args = argparse.Namespace(wrk_threads=scenario.wrk_threads,
                                  connections=scenario.connections)
    script = wrk_script(scenario, workdir)
    with serving(server, scenario, workdir) as (port, pid):
        wrk(port, 1, wrk_args, script, scenario.path)  # warm-up
        counter = counted(args.tool, worker_pids(pid), workdir)
        try:
            if args.tool == "perf":
                perf_command(workdir, "enable")
            run = wrk(port, args.seconds, wrk_args, script, scenario.path)
            if args.tool == "perf":
                perf_command(workdir, "disable")
        finally:
            counter.send_signal(signal.SIGINT)
            counter.wait(timeout=60)
    return run.requests, read_counts(args.tool, workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default="6", help="scenario numbers of bench/suite.py")
    parser.add_argument("--servers", default="uzerg,uwsgi")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tool", choices=("perf", "strace"), default="perf")
    args = parser.parse_args()
    only = {int(n) for n in args.only.split(",") if n}
    servers = [s for s in args.servers.split(",") if s]
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-syscalls-"))
    (workdir / "file.bin").write_bytes(os.urandom(1 << 20))  # scenario 4's static file
    try:
        for scenario in SCENARIOS:
            if scenario.number not in only:
                continue
            for round_no in range(1, args.rounds + 1):
                for server in servers:
                    if server not in scenario.servers or server.startswith("gunicorn") \
                            and args.tool == "perf":
                        continue
                    with contextlib.suppress(RuntimeError):
                        requests, counts = measure(server, scenario, args, workdir)
                        print(report(scenario, server, round_no, requests, counts), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(scenario: Scenario, server: str, round_no: int, requests: int,
           counts: dict[str, float]) -> str:
    if not requests:
        return f"{scenario.name} {server}: no requests"
    per = {name: value / requests for name, value in counts.items()}
    head = (f"{scenario.name:<22} {server:<6} round {round_no}: {requests} requests, "
            f"{per.pop('all', 0.0):.2f} syscalls/req")
    if "context-switches" in per:
        head += f", {per.pop('context-switches'):.2f} context switches/req"
    if "task-clock" in per:
        head += f", {per.pop('task-clock') * 1000:.0f} us CPU/req"
    calls = ", ".join(f"{name} {value:.2f}" for name, value in
                      sorted(per.items(), key=lambda item: -item[1]) if value >= 0.005)
    return head + "\n    " + re.sub(r"\s+", " ", calls)


if __name__ == "__main__":
    sys.exit(main())
