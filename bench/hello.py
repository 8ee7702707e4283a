"""Hello-world throughput: uzerg vs the uWSGI binary vs gunicorn (sync), 2 workers each.

    python bench/hello.py [--seconds 5] [--connections 32]

HTTP is driven by ``wrk`` when installed (``apt-get install wrk``), else by a small Python
client; the uwsgi protocol (``--socket``, uzerg vs uWSGI) always by the Python client. Every
server runs with request logging off, on loopback, and is killed (by pid) afterwards. Not a
test: it prints req/s and the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello World!"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def start(command: list[str], cwd: Path, ports: list[int]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        for port in ports:
            wait_for_port(port, process)
    except BaseException:
        stop(process)
        raise
    time.sleep(0.5)  # let every worker reach its accept loop (a benchmark, not a test)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the server and its workers: its own session
    except ProcessLookupError:
        pass
    process.wait(10)


# -- load generators ---------------------------------------------------------------------------

def wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"    (wrk: {errors.group(1)} non-2xx responses)")
    return float(match.group(1)) if match else 0.0


def _http_request() -> bytes:
    return b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def _uwsgi_request() -> bytes:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/", "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "bench", "SERVER_PORT": "80",
           "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "bench"}
    body = b"".join(len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little")
                    + v.encode() for k, v in env.items())
    return bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + body


def _client(port: int, payload: bytes, deadline: float, counter: Any) -> None:
    done = 0
    while time.time() < deadline:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(payload)
            while sock.recv(65536):
                pass
        done += 1
    with counter.get_lock():
        counter.value += done


def python_load(port: int, seconds: int, payload: bytes, clients: int = 4) -> float:
    """Closed-loop clients in processes (one connection per request, as wrk against a server
    that closes after each response)."""
    counter = multiprocessing.Value("q", 0)
    deadline = time.time() + seconds
    procs = [multiprocessing.Process(target=_client, args=(port, payload, deadline, counter))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(seconds + 30)
    return counter.value / seconds


# -- servers -----------------------------------------------------------------------------------

def uzerg_command(app: Path, http_port: int, uwsgi_port: int) -> list[str]:
    return [sys.executable, "-m", "uzerg", "--master", "--processes", "2", "--disable-logging",
            "--wsgi-file", str(app), "--http-socket", f"127.0.0.1:{http_port}",
            "--socket", f"127.0.0.1:{uwsgi_port}"]


def uwsgi_command(app: Path, http_port: int, uwsgi_port: int) -> list[str]:
    return ["uwsgi", "--master", "--processes", "2", "--disable-logging", "--wsgi-file",
            str(app), "--http-socket", f"127.0.0.1:{http_port}",
            "--socket", f"127.0.0.1:{uwsgi_port}"]


def gunicorn_command(app_dir: Path, http_port: int) -> list[str]:
    return ["gunicorn", "--workers", "2", "--worker-class", "sync", "--bind",
            f"127.0.0.1:{http_port}", "--chdir", str(app_dir), "app:application"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    have_wrk = shutil.which("wrk") is not None
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-bench-"))
    app = workdir / "app.py"
    app.write_text(APP)

    def http_load(port: int) -> float:
        if have_wrk:
            return wrk(port, args.seconds, args.connections)
        return python_load(port, args.seconds, _http_request())

    results: dict[str, float] = {}
    runs: list[tuple[str, Callable[[int, int], list[str]] | None, str]] = [
        ("uzerg", lambda h, u: uzerg_command(app, h, u), "uzerg"),
        ("uwsgi", lambda h, u: uwsgi_command(app, h, u), "uwsgi"),
        ("gunicorn", lambda h, u: gunicorn_command(workdir, h), "gunicorn"),
    ]
    print(f"hello world, 2 workers, {args.seconds} s per run, loopback; HTTP load: "
          f"{'wrk -c' + str(args.connections) if have_wrk else 'python clients'}")
    for name, build, binary in runs:
        if name != "uzerg" and shutil.which(binary) is None:
            print(f"  {name}: not installed, skipped")
            continue
        http_port, uwsgi_port = free_port(), free_port()
        assert build is not None
        ports = [http_port] if name == "gunicorn" else [http_port, uwsgi_port]
        process = start(build(http_port, uwsgi_port), workdir, ports)
        try:
            results[f"{name} http"] = http_load(http_port)
            if name != "gunicorn":
                results[f"{name} uwsgi"] = python_load(uwsgi_port, args.seconds,
                                                       _uwsgi_request())
        finally:
            stop(process)
    print()
    for key, value in results.items():
        print(f"  {key:<16} {value:>10.0f} req/s")
    print()
    for base in ("uwsgi http", "gunicorn http"):
        if base in results and results[base] and "uzerg http" in results:
            print(f"  uzerg http / {base:<14} {results['uzerg http'] / results[base]:.2f}")
    if results.get("uwsgi uwsgi") and "uzerg uwsgi" in results:
        ratio = results["uzerg uwsgi"] / results["uwsgi uwsgi"]
        print(f"  uzerg uwsgi / uwsgi uwsgi    {ratio:.2f}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
