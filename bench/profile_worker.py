"""Profile a real uzerg worker under wrk load with cProfile; prints the top functions.

    python bench/profile_worker.py [--protocol http|uwsgi] [--seconds 5] [--log] [--top 40]

Runs uzerg (1 master, 1 worker, hello_app) in a child process whose Worker.run is wrapped in
cProfile (patched here, in the bench; uzerg itself has no profiling hook), drives it with wrk,
stops the worker with SIGTERM (it finishes its loop and writes the profile) and kills the rest
by pid. cProfile slows Python calls several-fold: read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (  # noqa: E402
    APP,
    UWSGI_VARS,
    free_port,
    kill_tree,
    uwsgi_lua_script,
    uwsgi_packet,
    wait_ready,
)

CHILD = """
import cProfile, sys
import uzerg.processes.worker
from uzerg.cli import main

original = uzerg.processes.worker.Worker.run

def profiled(self):
    profile = cProfile.Profile()
    try:
        return profile.runcall(original, self)
    finally:
        profile.dump_stats(sys.argv[1])

uzerg.processes.worker.Worker.run = profiled
sys.exit(main(sys.argv[2:]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--protocol", choices=("http", "uwsgi"), default="http")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--log", action="store_true", help="request logging on")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-profile-"))
    stats_path = workdir / "worker.prof"
    port = free_port()
    option = "--http-socket" if args.protocol == "http" else "--socket"
    uzerg_args = [option, f"127.0.0.1:{port}", "--master", "--processes", "1",
                  "--wsgi-file", str(APP)] + ([] if args.log else ["--disable-logging"])
    packet = uwsgi_packet(UWSGI_VARS)
    request = packet if args.protocol == "uwsgi" else b"GET / HTTP/1.0\r\n\r\n"
    wrk = ["wrk", "-t1", "-c16", f"-d{args.seconds}s"]
    if args.protocol == "uwsgi":
        script = workdir / "uwsgi.lua"
        script.write_text(uwsgi_lua_script(packet))
        wrk += ["-s", str(script)]
    with open(workdir / "server.log", "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(stats_path)] + uzerg_args, cwd=workdir,
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True)
    try:
        wait_ready(process, port, request)
        family = psutil.Process(process.pid).children(recursive=True)
        out = subprocess.run(wrk + [f"http://127.0.0.1:{port}/"], capture_output=True,
                             text=True, timeout=args.seconds + 60, check=False).stdout
        print(out)
        for child in family:
            os.kill(child.pid, signal.SIGTERM)  # the worker: graceful, writes the profile
        psutil.wait_procs(family, timeout=10)  # the profile is complete once it has exited
    finally:
        kill_tree(process)
    if not stats_path.exists():
        print((workdir / "server.log").read_text())
        return 1
    pstats.Stats(str(stats_path)).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
