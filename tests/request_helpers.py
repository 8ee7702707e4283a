"""Shared helpers for the request-path tests: log capture, one exchange."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from uzerg.logs import configure_logging
from uzerg.serve.request import HandledCounts, RequestHandler


@pytest.fixture(name="logs")
def logs_fixture() -> Iterator[io.StringIO]:
    """Capture the plain log output (import `logs_fixture`, ask for `logs`)."""
    buf = io.StringIO()
    configure_logging(stream=buf)
    try:
        yield buf
    finally:
        configure_logging()


def exchange(
    handler: RequestHandler, data: bytes | list[bytes], protocol: str = "http",
    peer: Any = ("127.0.0.1", 40000), half_close: bool = True,
) -> tuple[bytes, HandledCounts]:
    """Send `data` over a socketpair to `handler.handle()` in a thread; all the reply bytes."""
    server, client = socket.socketpair()
    result: dict[str, HandledCounts] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("counts", handler.handle(server, peer, protocol)),
        daemon=True,
    )
    thread.start()
    try:
        client.settimeout(10)
        for piece in [data] if isinstance(data, bytes) else data:
            client.sendall(piece)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        reply = read_all(client)
        thread.join(10)
        assert not thread.is_alive(), "handle() did not return"
    finally:
        client.close()
    return reply, result["counts"]


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello World"]
