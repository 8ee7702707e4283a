"""WSGI test application for the integration tests, one route per behaviour under test.

Routes (served by `application`):
- ``/env``, ``/env/...``: the CGI/HTTP variables of the environ as JSON, plus the worker's pid;
- ``/echo``: the request body, byte for byte (read in 64 KiB pieces, as a real app would);
  with ``?announce`` it first writes ECHO_STARTED to wsgi.errors;
- ``/stream?chunks=N&delay=S``: N lines, yielded one by one S seconds apart (no Content-Length);
- ``/status/CODE``: an empty-bodied response with that status (``/status/404``);
- ``/error``: raises, so the server must answer 500 and log the traceback;
- ``/slow?seconds=S``: sleeps S seconds, then answers;
- ``/pid``: the worker's pid;
- anything else: 404.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]

# the error the /error route raises: the tests look for this text in the server's log
ERROR_TEXT = "integration test app: deliberate failure"
ECHO_STARTED = "integration test app: echo started, expecting"


def _text(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(
        status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _env(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    shown = {k: v for k, v in environ.items() if isinstance(v, str)}
    shown["uzerg.test.pid"] = str(os.getpid())
    body = json.dumps(shown, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _echo(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    if "announce" in environ.get("QUERY_STRING", ""):
        # a marker in the server's log: the tests wait for it before cutting the upload
        environ["wsgi.errors"].write(f"{ECHO_STARTED} {environ.get('CONTENT_LENGTH')}\n")
        environ["wsgi.errors"].flush()
    pieces = []
    digest = hashlib.sha256()
    while chunk := stream.read(65536):
        pieces.append(chunk)
        digest.update(chunk)
    body = b"".join(pieces)
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))),
        ("X-Body-Sha256", digest.hexdigest()),
    ])
    return [body]


def _stream(query: dict[str, list[str]], start_response: StartResponse) -> Iterator[bytes]:
    chunks = int(query.get("chunks", ["5"])[0])
    delay = float(query.get("delay", ["0.05"])[0])
    start_response("200 OK", [("Content-Type", "text/plain")])
    for number in range(chunks):
        if number:
            time.sleep(delay)
        yield f"chunk {number} at {time.monotonic():.3f}\n".encode()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/env" or path.startswith("/env/"):
        return _env(environ, start_response)
    if path == "/echo":
        return _echo(environ, start_response)
    if path == "/stream":
        return _stream(query, start_response)
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        return _text(start_response, f"{code} Test Status", f"status {code}\n".encode())
    if path == "/error":
        raise RuntimeError(ERROR_TEXT)
    if path == "/slow":
        time.sleep(float(query.get("seconds", ["1"])[0]))
        return _text(start_response, "200 OK", b"slept\n")
    if path == "/pid":
        return _text(start_response, "200 OK", str(os.getpid()).encode())
    return _text(start_response, "404 Not Found", b"not found\n")
