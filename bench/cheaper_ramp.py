"""The cheaper load ramp side by side: uzerg vs the uWSGI binary, same options.

    python bench/cheaper_ramp.py [--servers uzerg,uwsgi] [--repeat 3] [--overload 1]
                                 [--algo spare]

Each server runs ``--cheaper 1 --processes 4 --cheaper-overload N`` with an app that takes
20 ms per request. Client threads ramp up to 8 concurrent connections (1, 2, 4, then 8, half
a second apart) until 4 workers run, then stop; the stats socket is polled every 50 ms. Prints,
per run, the seconds from the first request to 4 workers, from the end of the load to 1
worker, and the requests answered and failed; then the medians. Not a test. Every process
started is killed by pid at the end of its run.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from compare import free_port, kill_tree, probe

APP = '''
import time

def application(environ, start_response):
    time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
'''
REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"


def active_workers(stats_port: int) -> int:
    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as sock:
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return sum(1 for w in json.loads(data)["workers"] if w["status"] != "cheap")


def wait_for(stats_port: int, count: int, timeout: float) -> float:
    started = time.monotonic()
    while active_workers(stats_port) != count:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not {count} workers after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def one_run(server: str, args: argparse.Namespace, workdir: Path) -> tuple[float, float, int, int]:
    app = workdir / "app.py"
    app.write_text(APP)
    port, stats_port = free_port(), free_port()
    binary = ["uwsgi"] if server == "uwsgi" else [sys.executable, "-m", "uzerg"]
    cmd = binary + ["--master", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(app),
                    "--processes", "4", "--cheaper", "1", "--cheaper-overload",
                    str(args.overload), "--cheaper-algo", args.algo, "--disable-logging",
                    "--stats", f"127.0.0.1:{stats_port}"]
    with open(workdir / f"{server}.log", "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def client() -> None:
        while not stop.is_set():
            counts["ok" if probe(port, REQUEST) else "failed"] += 1

    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 30
        while not probe(port, REQUEST):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{server} did not answer; see {workdir}/{server}.log")
            time.sleep(0.05)
        wait_for(stats_port, 1, 30)
        started = time.monotonic()
        for count in (1, 1, 2, 4):
            for _ in range(count):
                threads.append(threading.Thread(target=client, daemon=True))
                threads[-1].start()
            if active_workers(stats_port) < 4:
                time.sleep(0.5)
        wait_for(stats_port, 4, 60)
        grow = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(15)
        shrink = wait_for(stats_port, 1, 60)
        return grow, shrink, counts["ok"], counts["failed"]
    finally:
        stop.set()
        kill_tree(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="uzerg,uwsgi")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--overload", type=int, default=1)
    parser.add_argument("--algo", default="spare")
    args = parser.parse_args()
    servers = args.servers.split(",")
    results: dict[str, list[tuple[float, float, int, int]]] = {s: [] for s in servers}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for server in servers:  # interleaved: a burst of load elsewhere hits one run
                run = one_run(server, args, Path(tmp))
                results[server].append(run)
                print(f"{server:6} grow 1->4 {run[0]:5.1f} s  shrink 4->1 {run[1]:5.1f} s  "
                      f"{run[2]} answered, {run[3]} failed", flush=True)
    print(f"\nmedians ({args.algo}, cheaper-overload {args.overload}):")
    for server, runs in results.items():
        print(f"{server:6} grow {statistics.median(r[0] for r in runs):5.1f} s  "
              f"shrink {statistics.median(r[1] for r in runs):5.1f} s  "
              f"failed {sum(r[3] for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
