"""wsgi.input reads of more than 64 KB: received straight into one reused buffer (see
wsgi_io._read_into), with the same bytes, errors and log lines as reading piece by piece."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from config_helpers import make_config
from request_helpers import exchange, logs_fixture, read_all  # noqa: F401

from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve import wsgi_io
from uzerg.serve.request import RequestHandler

BODY = os.urandom(300_000)


def handler_for(app: Any, **config: Any) -> RequestHandler:
    return RequestHandler(app, make_config(**config), 1)


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


def reads_app(*sizes: int) -> Any:
    """Reads wsgi.input with these sizes (-1: read()), answers the lengths and the bytes."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        parts = [stream.read(size) for size in sizes]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b",".join(b"%d" % len(p) for p in parts) + b"|" + b"".join(parts)]

    return app


def answer(reply: bytes) -> tuple[bytes, bytes]:
    lengths, _, data = reply.partition(b"\r\n\r\n")[2].partition(b"|")
    return lengths, data


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_large_read_gets_the_whole_body_sent_in_pieces(logs):
    reply, _ = exchange(handler_for(reads_app(len(BODY), 10)), pieces(post(BODY), 40_000))
    assert answer(reply) == (b"300000,0", BODY)


def test_a_read_past_the_body_ends_at_the_body(logs):
    reply, _ = exchange(handler_for(reads_app(1 << 20, 1 << 20, -1)), post(BODY))
    assert answer(reply) == (b"300000,0,0", BODY)


def test_large_reads_after_small_ones_and_a_readline(logs):
    body = b"first line\n" + BODY

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        parts = [stream.read(3), stream.readline(), stream.read(100_000), stream.read(150_000),
                 stream.read()]
        start_response("200 OK", [])
        return [b",".join(b"%d" % len(p) for p in parts) + b"|" + b"".join(parts)]

    reply, _ = exchange(handler_for(app), pieces(post(body), 70_000))
    assert answer(reply) == (b"3,8,100000,150000,50000", body)


def test_the_reused_buffer_never_leaks_an_earlier_body(logs):
    wsgi_io._spare.clear()
    handler = handler_for(reads_app(1 << 20))
    first, _ = exchange(handler, post(BODY))
    second_body = os.urandom(100_000)
    second, _ = exchange(handler, post(second_body))
    assert answer(first) == (b"300000", BODY)
    assert answer(second) == (b"100000", second_body)
    assert [len(b) for b in wsgi_io._spare] == [300_000]  # kept for the next large read


def test_a_chunked_body_takes_the_piecewise_way(logs):
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces(BODY, 70_000)) + b"0\r\n\r\n"
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    reply, _ = exchange(handler_for(reads_app(200_000, 200_000)), pieces(raw, 50_000))
    assert answer(reply) == (b"200000,100000", BODY)


def test_keepalive_next_request_after_a_large_body(logs):
    handler = handler_for(reads_app(len(BODY)), http_keepalive=1)
    raw = post(BODY) + b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    reply, counts = exchange(handler, pieces(raw, 65_000))
    assert counts.requests == 2
    first, _, second = reply.partition(b"HTTP/1.1 200 OK\r\n")[2].partition(b"HTTP/1.1 200 OK")
    assert answer(first) == (b"300000", BODY)
    assert answer(second) == (b"0", b"")


def test_a_client_vanishing_in_a_large_read_is_logged_as_before(logs):
    # the same line as a piece-by-piece read (uWSGI's), and the app's read fails
    raw = post(BODY)[: -(len(BODY) - 70_000)]
    reply, counts = exchange(handler_for(reads_app(200_000)), raw)
    assert counts.exceptions == 1 and counts.status == 500
    text = logs.getvalue()
    assert ("[uwsgi-body-read] Error reading 130000 bytes. Content-Length: 300000 "
            "consumed: 70000 left: 230000 message: Client closed connection") in text
    assert "BodyReadError: error during read(" in text


def test_expect_100_continue_then_a_large_read(logs):
    handler = handler_for(reads_app(len(BODY)))
    server, client = socket.socketpair()
    thread = threading.Thread(target=handler.handle, args=(server, ("::1", 1), "http"), daemon=True)
    thread.start()
    try:
        client.settimeout(10)
        client.sendall(post(b"", b"Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: %d" % len(BODY)))
        assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        for piece in pieces(BODY, 60_000):
            client.sendall(piece)
        reply = read_all(client)
    finally:
        client.close()
        thread.join(10)
    assert answer(reply) == (b"300000", BODY)


def test_uwsgi_protocol_large_read(logs):
    env = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/", "PATH_INFO": "/",
           "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(BODY))}
    raw = encode_uwsgi_packet(env, BODY)
    reply, _ = exchange(handler_for(reads_app(150_000, 1 << 20)), pieces(raw, 45_000),
                        protocol="uwsgi")
    assert answer(reply) == (b"150000,150000", BODY)


def test_uwsgi_protocol_client_vanishing_in_a_large_read(logs):
    env = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/", "PATH_INFO": "/",
           "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(BODY))}
    raw = encode_uwsgi_packet(env, BODY)[: -(len(BODY) - 90_000)]
    _, counts = exchange(handler_for(reads_app(len(BODY))), raw, protocol="uwsgi")
    assert counts.exceptions == 1
    assert ("[uwsgi-body-read] Error reading 210000 bytes. Content-Length: 300000 "
            "consumed: 90000 left: 210000 message: Client closed connection") in logs.getvalue()


def test_read_all_of_a_large_body(logs):
    reply, _ = exchange(handler_for(reads_app(5, -1, -1)), pieces(post(BODY), 50_000))
    assert answer(reply) == (b"5,299995,0", BODY)


def test_a_client_vanishing_in_a_large_read_all_is_counted_as_before(logs):
    # read() reports as it always did: its own hint, a read error in the worker's counts
    raw = post(BODY)[: -(len(BODY) - 80_000)]
    reply, counts = exchange(handler_for(reads_app(-1)), raw)
    assert counts.exceptions == 1 and counts.read_errors == 1
    assert ("[uwsgi-body-read] Error reading 65536 bytes. Content-Length: 300000 "
            "consumed: 80000 left: 220000 message: Client closed connection") in logs.getvalue()
    assert "error during read(65536) on wsgi.input" in logs.getvalue()


def test_a_read_past_the_body_keeps_its_hint_in_the_error(logs):
    raw = post(BODY)[: -(len(BODY) - 80_000)]
    _, counts = exchange(handler_for(reads_app(1 << 20)), raw)
    assert counts.exceptions == 1
    assert f"error during read({(1 << 20) - 80_000}) on wsgi.input" in logs.getvalue()


def test_a_huge_declared_length_reserves_nothing_up_front(logs):
    # reads above 4 MB go piece by piece: a client's Content-Length is no allocation
    wsgi_io._spare.clear()
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (1 << 40) + BODY
    _, counts = exchange(handler_for(reads_app(-1)), raw)
    assert counts.exceptions == 1 and counts.read_errors == 1
    assert "consumed: 300000 left: " in logs.getvalue()
    assert wsgi_io._spare == []
