"""A worker whose sockets all speak uwsgi builds its RequestHandler with http=False: it serves
the uwsgi protocol as the full handler does, without the HTTP side loaded (start-up time,
issue 13); and which listeners speak HTTP, a zerg's received sockets included."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from config_helpers import make_config
from request_helpers import exchange

from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.http_requests import HttpRequestHandler
from uzerg.serve.preload import speaks_http
from uzerg.serve.request import RequestHandler
from uzerg.sockets import build_listeners
from uzerg.zerg.client import ReceivedSocket

HTTP_SIDE = ("uzerg.protocols.http", "uzerg.protocols.http_stream",
             "uzerg.protocols.https_redirect", "uzerg.serve.http_requests",
             "uzerg.serve.http_body", "uzerg.serve.environ")
PACKET = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "REQUEST_URI": "/a?b=1",
                              "PATH_INFO": "/a", "QUERY_STRING": "b=1",
                              "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "192.0.2.1"})


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['PATH_INFO']} {environ['QUERY_STRING']}".encode()]


def test_the_default_handler_has_the_http_side_and_http_false_has_not() -> None:
    full = RequestHandler(app, make_config(), 1)
    uwsgi_only = RequestHandler(app, make_config(), 1, http=False)
    assert type(full) is HttpRequestHandler and isinstance(full, RequestHandler)
    assert type(uwsgi_only) is RequestHandler
    assert not hasattr(uwsgi_only, "_serve_http") and not hasattr(uwsgi_only, "_heads")
    # the same uwsgi request, the same bytes back
    replies = [exchange(handler, PACKET, protocol="uwsgi", half_close=False)
               for handler in (full, uwsgi_only)]
    assert replies[0][0] == replies[1][0] == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n/a b=1")
    assert replies[0][1] == replies[1][1]


SERVE_UWSGI = """
import socket, sys
from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.request import RequestHandler
from uzerg.config.load import load_config

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hi"]

handler = RequestHandler(app, load_config([], {}), 1, http=False)
server, client = socket.socketpair()
client.sendall(encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}))
client.shutdown(socket.SHUT_WR)
handler.handle(server, "", "uwsgi")
print(client.recv(4096).hex())
print(" ".join(sorted(sys.modules)))
"""


def test_a_uwsgi_only_handler_serves_without_loading_the_http_side() -> None:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", SERVE_UWSGI], capture_output=True, text=True,
                         check=True, timeout=30, env={**os.environ, "PYTHONPATH": root})
    reply, names = out.stdout.split("\n")[:2]
    assert bytes.fromhex(reply) == b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhi"
    modules = set(names.split())
    assert "uzerg.serve.request" in modules
    assert not modules & set(HTTP_SIDE), modules & set(HTTP_SIDE)


@pytest.mark.parametrize(("argv", "hint", "http"), [
    ([], None, False),  # no hint, no --protocol: uwsgi
    ([], "uwsgi", False),
    ([], "http", True),  # the server's hint: an http socket of the zerg server
    (["--protocol", "http"], None, True),  # a zergpool's socket, --protocol http
    (["--protocol", "http"], "uwsgi", True),  # --protocol wins over the hint
    (["--protocol", "uwsgi"], "http", False),
    (["--http-socket", "127.0.0.1:0"], None, True),  # a socket of its own speaks HTTP
])
def test_received_sockets_speak_http_by_hint_or_protocol(
    argv: list[str], hint: str | None, http: bool
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    listeners = build_listeners(make_config(*argv),
                                [ReceivedSocket(sock, hint, "zerg.sock")])
    try:
        assert speaks_http(listeners) is http
    finally:
        for listener in listeners:
            listener.sock.close()
