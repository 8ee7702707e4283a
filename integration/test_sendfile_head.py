"""A head that a sendfile() follows is sent with MSG_MORE, to leave with the file's first bytes:
every response must still arrive whole and at once on a connection that stays open, where
nothing else pushes a head held back (HEAD, an empty file, a wsgi.file_wrapper). Linux sends
a held-back segment on its own only when the zero-window probe timer fires, after at least
200 ms (TCP_RTO_MIN): a few such responses in a row take over a second, where they take a few
ms when nothing is held back."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support.clients import connect_to, read_all, read_one_response
from support.processes import APPS, InstanceStarter

from uzerg.protocols.uwsgi import encode_uwsgi_packet

TESTAPP = str(APPS / "testapp.py")
PROMPT = 5.0  # socket timeout
ROUNDS_WITHIN = 0.9  # seconds for the rounds below: 5 x 200 ms if heads were held back
FILE_APP = """
import os


def application(environ, start_response):
    path = os.environ["DOCUMENT"]
    headers = [("Content-Type", "application/octet-stream")]
    if environ["PATH_INFO"] == "/sized":
        headers.append(("Content-Length", str(os.path.getsize(path))))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](open(path, "rb"))
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    static.mkdir()
    (static / "page.bin").write_bytes(bytes(range(256)) * 400)  # 100 KB
    (static / "empty.txt").write_bytes(b"")
    return static


def _head_only(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"closed before the end of the head: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == b"", rest[:100]
    return head


def test_static_files_arrive_whole_on_a_kept_alive_connection(uzerg: InstanceStarter,
                                                              site: Path) -> None:
    inst = uzerg.start(["--http11-socket", "127.0.0.1:0", "--static-map",
                        f"/static={site}", "--wsgi-file", TESTAPP])
    page = (site / "page.bin").read_bytes()
    started = time.monotonic()
    with connect_to(inst.address(0), PROMPT) as sock:
        for method, path in (("GET", "page.bin"), ("HEAD", "page.bin"), ("GET", "empty.txt"),
                             ("HEAD", "empty.txt"), ("GET", "page.bin"), ("HEAD", "page.bin"),
                             ("GET", "empty.txt"), ("HEAD", "empty.txt"), ("HEAD", "page.bin")):
            sock.sendall(f"{method} /static/{path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            if method == "HEAD":
                head = _head_only(sock)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
                size = len(page) if path == "page.bin" else 0
                assert f"Content-Length: {size}\r\n".encode() in head + b"\r\n", head
                continue
            status, _, body = read_one_response(sock)
            assert status == 200
            assert body == (page if path == "page.bin" else b"")
    assert time.monotonic() - started < ROUNDS_WITHIN


def test_file_wrapper_responses_arrive_whole_on_a_kept_alive_connection(
        uzerg: InstanceStarter, site: Path, tmp_path: Path) -> None:
    app = tmp_path / "file_app.py"
    app.write_text(FILE_APP)
    page = (site / "page.bin").read_bytes()
    inst = uzerg.start(["--http11-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--env", f"DOCUMENT={site / 'page.bin'}"])
    started = time.monotonic()
    with connect_to(inst.address(0), PROMPT) as sock:
        for path in ("/sized", "/unsized", "/sized"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, headers, body = read_one_response(sock)
            assert (status, headers["content-length"], body) == (200, str(len(page)), page)
        for _ in range(5):
            sock.sendall(b"HEAD /sized HTTP/1.1\r\nHost: t\r\n\r\n")
            assert _head_only(sock).startswith(b"HTTP/1.1 200 OK\r\n")
    assert time.monotonic() - started < ROUNDS_WITHIN


def test_a_static_file_over_the_uwsgi_protocol_on_a_unix_socket(uzerg: InstanceStarter,
                                                                site: Path,
                                                                tmp_path: Path) -> None:
    address = str(tmp_path / "u.sock")
    uzerg.start(["--socket", address, "--static-map", f"/static={site}",
                 "--wsgi-file", TESTAPP])
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/static/page.bin",
           "PATH_INFO": "/static/page.bin", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
           "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1"}
    with connect_to(address, PROMPT) as sock:
        sock.sendall(encode_uwsgi_packet(env))
        head, _, body = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == (site / "page.bin").read_bytes()
