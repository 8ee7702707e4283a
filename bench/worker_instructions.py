"""User-space instructions per request in a real uzerg worker, counted by valgrind.

    python bench/worker_instructions.py [--protocol http|uwsgi] [--log] [-n 1500] [--distinct]
                                        [--keepalive] [--server uzerg|uwsgi] [--app FILE]
                                        [--cache-sim] [--static | --post] [--threads N]

Wall-clock req/s swing by 30% on a machine that other jobs load; an instruction count does not.
Runs uzerg (1 master, 1 worker, bench/hello_app.py) under ``valgrind --tool=cachegrind`` (which
follows the worker's fork), sends requests one at a time from this process, stops the worker
with SIGTERM and reads its instruction count; two runs (n/5 and n requests) are subtracted, so
start-up and shutdown cancel out. ``--app FILE``: another WSGI file than hello world (e.g.
bench/apps/flask_app.py; its directory goes on the Python path). Kernel work (the TCP stack)
is not counted. ``--distinct`` (uwsgi): a different REMOTE_PORT in each packet, so no packet
repeats (the worker's cache of vars blocks never hits, as with many clients). Scenario 4 of
bench/suite.py (http): ``--static`` GETs a 1 MB file through ``--static-map``, ``--post`` sends
a 1 MB POST to bench/apps/echo_app.py (which echoes it back). ``--keepalive`` (http): an
``--http11-socket``, every request on one connection, as bench scenario 5. ``--threads N``:
N threads in the worker (scenario 6: ``--threads 4 --app bench/apps/sleep_app.py``); requests
still come one at a time, so this counts the path, not contention (bench/syscalls.py counts
futex calls and context switches under load). Needs valgrind
(``apt-get install -y valgrind``); about a minute per run.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import APP, UWSGI_VARS, free_port, kill_tree, program, uwsgi_packet  # noqa: E402

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"  # what wrk sends
MB = 1 << 20
STATIC_REQUEST = b"GET /static/file.bin HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
POST_REQUEST = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: %d\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n%s" % (MB, b"x" * MB))
ECHO_APP = Path(__file__).resolve().parent / "apps" / "echo_app.py"


def ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def ask_keepalive(sock: socket.socket, request: bytes) -> bytes:
    """One request on a kept-alive connection: the head and a Content-Length body back."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the keep-alive connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        body += sock.recv(65536)
    return data


def worker_instructions(
    requests: int, args: argparse.Namespace, workdir: Path
) -> dict[str, int]:
    """Events (Ir: instructions; with --cache-sim also cache misses and branch mispredicts)
    counted in the worker process over its life, serving `requests`."""
    port = free_port()
    option = "--http-socket" if args.protocol == "http" else "--socket"
    if args.keepalive:
        option = "--http11-socket"
    python = os.path.realpath(sys.executable)  # a pyenv shim is a shell script: skip it
    out_pattern = str(workdir / f"cg.{requests}.%p")
    server = [python, "-m", "uzerg"] if args.server == "uzerg" else [program("uwsgi")]
    sim = ["--cache-sim=yes", "--branch-sim=yes"] if args.cache_sim else ["--cache-sim=no"]
    cmd = ["valgrind", "--tool=cachegrind", *sim,
           f"--cachegrind-out-file={out_pattern}"] + server + [
           option, f"127.0.0.1:{port}", "--master", "--processes", "1",
           "--wsgi-file", str(args.app.resolve()), "--pythonpath", str(args.app.resolve().parent)]
    if not args.log:
        cmd.append("--disable-logging")
    if args.threads > 1:
        cmd += ["--threads", str(args.threads)]
    request = uwsgi_packet(UWSGI_VARS) if args.protocol == "uwsgi" else HTTP_REQUEST
    if args.static:
        (workdir / "file.bin").write_bytes(os.urandom(MB))
        cmd += ["--static-map", f"/static={workdir}"]
        request = STATIC_REQUEST
    elif args.post:
        request = POST_REQUEST
    with open(workdir / "server.log", "ab") as log_file:
        process = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=log_file, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # valgrind starts slowly: poll for the first answer
            try:
                if b" 200 OK" in ask(port, request):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("uzerg under valgrind did not answer")
            time.sleep(0.2)
        if args.keepalive:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                for _ in range(requests - 1):
                    # as under wrk, where the worker is not slowed down 50 times by valgrind:
                    # it has answered and parked the idle connection before the next request
                    # comes (without the pause the count swings with the timing)
                    time.sleep(0.003)
                    ask_keepalive(sock, request)
        for i in range(0 if args.keepalive else requests - 1):
            if args.distinct:  # as from many clients: no two packets alike
                request = uwsgi_packet({**UWSGI_VARS, "REMOTE_PORT": str(1024 + i)})
            ask(port, request)
        family = psutil.Process(process.pid).children(recursive=True)
        workers = [p for p in family if p.ppid() == process.pid]
        for worker in workers:
            os.kill(worker.pid, signal.SIGTERM)
        psutil.wait_procs(workers, timeout=60)
        pid = workers[0].pid
    finally:
        kill_tree(process)
    text = Path(out_pattern.replace("%p", str(pid))).read_text()
    names = re.search(r"^events: (.*)$", text, re.M)[1].split()  # type: ignore[index]
    totals = re.search(r"^summary: (.*)$", text, re.M)[1].split()  # type: ignore[index]
    return dict(zip(names, map(int, totals), strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--protocol", choices=("http", "uwsgi"), default="http")
    parser.add_argument("--server", choices=("uzerg", "uwsgi"), default="uzerg",
                        help="uwsgi: the real uWSGI binary, for scale")
    parser.add_argument("--log", action="store_true", help="request logging on")
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("--app", type=Path, default=APP, help="a WSGI file (default: hello)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--distinct", action="store_true",
                        help="uwsgi: each packet differs (REMOTE_PORT), as from many clients")
    parser.add_argument("--keepalive", action="store_true",
                        help="http: all requests on one kept-alive connection (--http11-socket)")
    parser.add_argument("--cache-sim", action="store_true",
                        help="also simulated cache misses and branch mispredicts (slower)")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--static", action="store_true",
                      help="http: GET a 1 MB file served by --static-map (scenario 4)")
    body.add_argument("--post", action="store_true",
                      help="http: a 1 MB POST echoed back by apps/echo_app.py (scenario 4)")
    args = parser.parse_args()
    if args.post and args.app == APP:
        args.app = ECHO_APP
    if (args.static or args.post or args.keepalive) and args.protocol != "http":
        parser.error("--static, --post and --keepalive are HTTP requests")
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-instr-"))
    small, large = args.n // 5, args.n
    few = worker_instructions(small, args, workdir)
    many = worker_instructions(large, args, workdir)
    per_request = {name: (many[name] - few[name]) / (large - small) for name in many}
    distinct = " distinct" if args.distinct else ""
    distinct += " static 1MB" if args.static else " post 1MB" if args.post else ""
    distinct += " keep-alive" if args.keepalive else ""
    distinct += f" threads={args.threads}" if args.threads > 1 else ""
    print(f"{args.server} {args.protocol}{distinct} log-{'on' if args.log else 'off'} "
          f"{args.app.name}: "
          f"{per_request['Ir']:,.0f} "
          "user instructions per request in the worker")
    if args.cache_sim:  # I1/D1: first-level misses, LL: last level; Bcm/Bim: mispredicts
        print("  per request: " + ", ".join(
            f"{name} {value:,.0f}" for name, value in per_request.items() if name != "Ir"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
