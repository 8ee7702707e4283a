"""Micro-benchmark of the request path: N requests through RequestHandler, printed as req/s.

Not a test. Modes:
  http     a fresh socketpair per request (as --http-socket: one request per connection)
  uwsgi    a fresh socketpair per request carrying a uwsgi packet (as nginx uwsgi_pass)
  http11   one keep-alive connection, ping-pong with a forked client process
The per-connection modes run client and server in one thread (the request is queued in the
socket before handle() runs); "in handle()" is the CPU time (user+sys) spent in handle() only.
Request lines go to /dev/null unless --no-log (disable-logging) is given.

    python bench/request_path.py [-n 20000] [--mode http|uwsgi|http11|all] [--no-log]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from uzerg import record
from uzerg.config.model import Config
from uzerg.logs import configure_logging
from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.request import RequestHandler

HTTP_REQUEST = (
    b"GET /hello?name=world HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench/1.0\r\n"
    b"Accept: */*\r\n\r\n"
)
UWSGI_REQUEST = encode_uwsgi_packet({
    "QUERY_STRING": "name=world", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "",
    "CONTENT_LENGTH": "", "REQUEST_URI": "/hello?name=world", "PATH_INFO": "/hello",
    "DOCUMENT_ROOT": "/usr/share/nginx/html", "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "http", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000",
    "SERVER_PORT": "80", "SERVER_NAME": "localhost", "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench/1.0", "HTTP_ACCEPT": "*/*",
})


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello World"]


def config(no_log: bool) -> Config:
    return record.replace(Config(), disable_logging=no_log, processes=2)


def per_connection(handler: RequestHandler, request: bytes, protocol: str, n: int) -> None:
    peer = ("127.0.0.1", 50000)
    in_server = 0.0
    started = time.perf_counter()
    clock = time.process_time  # CPU time (user+sys): steadier than wall time on a busy machine
    for _ in range(n):
        server, client = socket.socketpair()
        client.sendall(request)
        t0 = clock()
        handler.handle(server, peer, protocol)
        in_server += clock() - t0
        if not client.recv(65536).endswith(b"Hello World"):
            sys.exit("bad response")
        client.close()
    report(protocol, n, time.perf_counter() - started, in_server)


def keepalive(handler: RequestHandler, n: int) -> None:
    server, client = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the client: one request, one response, n times
        server.close()
        for _ in range(n):
            client.sendall(HTTP_REQUEST)
            if not client.recv(65536).endswith(b"Hello World"):
                os._exit(1)
        client.close()
        os._exit(0)
    client.close()
    try:
        started = time.perf_counter()
        counts = handler.handle(server, ("127.0.0.1", 50000), "http11")
        elapsed = time.perf_counter() - started
    finally:
        _, status = os.waitpid(pid, 0)
    if counts.requests != n or status != 0:
        sys.exit(f"keep-alive run failed: {counts}, client status {status}")
    report("http11", n, elapsed, elapsed)


def report(mode: str, n: int, elapsed: float, in_server: float) -> None:
    print(f"{mode:7} {n:7d} requests  {n / elapsed:9.0f} req/s total  "
          f"{n / in_server:9.0f} req/s in handle()  {in_server / n * 1e6:6.1f} us/request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--mode", default="all", choices=["http", "uwsgi", "http11", "all"])
    parser.add_argument("--no-log", action="store_true", help="disable-logging")
    args = parser.parse_args()
    devnull = open(os.devnull, "w")
    configure_logging(stream=devnull)
    handler = RequestHandler(hello, config(args.no_log), 1)
    modes = ["http", "uwsgi", "http11"] if args.mode == "all" else [args.mode]
    for mode in modes:
        if mode == "http11":
            keepalive(handler, args.n)
        else:
            request = HTTP_REQUEST if mode == "http" else UWSGI_REQUEST
            per_connection(handler, request, mode, args.n)


if __name__ == "__main__":
    main()
