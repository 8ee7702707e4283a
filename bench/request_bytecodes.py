"""Where a request's Python time goes: bytecodes executed per function for one request.

    python bench/request_bytecodes.py [--mode http|uwsgi] [--no-log] [--lines] [--app FILE]
                                      [--static]

One request (the same as bench/request_path.py's) goes through RequestHandler.handle() over a
socketpair under sys.settrace with opcode events, after a few warm-up requests (caches full);
prints the bytecodes executed and the calls, per function (or per line with --lines). A
bytecode costs some tens of CPU instructions; function calls cost several hundred each. The
count is exact and does not move with the machine's load, unlike a timing. ``--app FILE``
serves that WSGI file's ``application`` (e.g. bench/apps/flask_app.py) instead of hello
world, and splits the count between uzerg's frames and the app's. ``--static``: GET a 1 KB
file through ``--static-map`` (scenario 4's path; a 1 MB file would not fit the socketpair).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import socket
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import request_path  # noqa: E402

from uzerg import record  # noqa: E402
from uzerg.logs import configure_logging  # noqa: E402
from uzerg.serve.request import RequestHandler  # noqa: E402
from uzerg.serve.static import load_file_support  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=("http", "uwsgi"), default="http")
    parser.add_argument("--no-log", action="store_true", help="disable-logging")
    parser.add_argument("--lines", action="store_true", help="count per source line")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--app", type=Path, help="a WSGI file (its `application`)")
    parser.add_argument("--path", default="/hello?name=world", help="the URL (http mode)")
    parser.add_argument("--static", action="store_true",
                        help="GET /static/file.bin, a 1 KB file served by --static-map")
    args = parser.parse_args()
    configure_logging(stream=open(os.devnull, "w"))  # for the process's life
    app = request_path.hello
    if args.app is not None:
        sys.path.insert(0, str(args.app.resolve().parent))
        spec = importlib.util.spec_from_file_location("bench_app", args.app)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        app = module.application
    config = request_path.config(args.no_log)
    if args.static:  # the path of scenario 4's file (a small one: it fits a socketpair)
        workdir = tempfile.mkdtemp(prefix="uzerg-bytecodes-")
        Path(workdir, "file.bin").write_bytes(os.urandom(1024))
        config = record.replace(config, static_map=(f"/static={workdir}",))
        args.path = "/static/file.bin"
        load_file_support()
    handler = RequestHandler(app, config, 1)
    request = request_path.HTTP_REQUEST if args.mode == "http" else request_path.UWSGI_REQUEST
    request = request.replace(b" /hello?name=world ", f" {args.path} ".encode())
    peer = ("127.0.0.1", 50000)

    def one_request(trace: Any = None) -> None:
        server, client = socket.socketpair()
        client.sendall(request)
        sys.settrace(trace)
        try:
            handler.handle(server, peer, args.mode, server_port="80")
        finally:
            sys.settrace(None)
        client.close()

    for _ in range(3):
        one_request()
    opcodes: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = f"{_short(code.co_filename)}:{code.co_name}"
        if args.lines:
            key += f":{frame.f_lineno}"
        if event == "call":
            calls[key] += 1
        elif event == "opcode":
            opcodes[key] += 1
        return tracer

    one_request(tracer)
    print(f"{args.mode} log-{'off' if args.no_log else 'on'}: {sum(opcodes.values())} bytecodes, "
          f"{sum(calls.values())} Python calls")
    if args.app is not None:
        ours = [key for key in opcodes if _is_uzerg(key)]
        print(f"  in uzerg's frames: {sum(opcodes[k] for k in ours)} bytecodes, "
              f"{sum(calls[k] for k in ours)} calls; the rest is the app")
    for key, count in opcodes.most_common(args.top):
        print(f"{count:6d} {calls[key]:4d}  {key}")
    return 0


def _short(filename: str) -> str:
    """uzerg/serve/request.py, flask/app.py: the file and the package it is in."""
    path = Path(filename)
    return f"{path.parent.name}/{path.name}"


def _is_uzerg(key: str) -> bool:
    return key.split("/", 1)[0] in ("uzerg", "serve", "protocols", "processes", "zerg")


if __name__ == "__main__":
    sys.exit(main())
