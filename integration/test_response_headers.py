"""add-header/del-header and the static gzip/expires options on running instances, checked on
the wire: http-socket, http11-socket (keep-alive) and the uwsgi protocol (issue 10: the
searxng and healthchecks configs of the corpus)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from support.clients import connect_to, read_all, read_one_response
from support.processes import APPS, InstanceStarter

from uzerg.protocols.uwsgi import encode_uwsgi_packet

TESTAPP = str(APPS / "testapp.py")
APP = """
def application(environ, start_response):
    if environ["PATH_INFO"] == "/error":
        raise RuntimeError("deliberate")
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "app"),
                              ("Server", "app/1")])
    return [b"app says hi"]
"""


def _http(address: str, path: str, headers: str = "") -> tuple[list[str], bytes]:
    """One HTTP/1.1 request with Connection: close; (head lines, body)."""
    with connect_to(address, 10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
                     .encode())
        return _split(read_all(sock))


def _uwsgi(address: str, path: str, **extra: str) -> tuple[list[str], bytes]:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path,
           "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost", **extra}
    with connect_to(address, 10) as sock:
        sock.sendall(encode_uwsgi_packet(env))
        return _split(read_all(sock))


def _split(data: bytes) -> tuple[list[str], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data[:200]
    return head.decode("latin-1").split("\r\n"), body


def _named(head: list[str], name: str) -> list[str]:
    return [line for line in head if line.lower().startswith(name.lower() + ":")]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "CACHE").mkdir(parents=True)
    (static / "robots.txt").write_text("User-agent: *\n")
    for name, text in (("CACHE/app.css", "body { color: red }\n" * 40),
                       ("site.css", "p { margin: 0 }\n" * 40)):
        (static / name).write_text(text)
        (static / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
    return static


def test_add_and_del_header_on_every_response(uzerg: InstanceStarter, app: Path,
                                              site: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0",
                        "--wsgi-file", str(app), "--static-map", f"/static={site}",
                        "--add-header", "X-Frame-Options: DENY",
                        "--add-header", "X-Content-Type-Options: nosniff",
                        "--del-header", "x-powered-by", "--rem-header", "SERVER"])
    uwsgi, http = inst.address(0), inst.address(1)  # uwsgi sockets are bound first
    for head, body in (_http(http, "/"), _uwsgi(uwsgi, "/")):
        assert head[0] == "HTTP/1.1 200 OK" and body == b"app says hi"
        assert _named(head, "X-Frame-Options") == ["X-Frame-Options: DENY"]
        assert _named(head, "X-Content-Type-Options") == ["X-Content-Type-Options: nosniff"]
        assert _named(head, "X-Powered-By") == [] == _named(head, "Server")
        assert _named(head, "Content-Type") == ["Content-Type: text/plain"]
    for head, body in (_http(http, "/static/robots.txt"), _uwsgi(uwsgi, "/static/robots.txt")):
        assert (head[0], body) == ("HTTP/1.1 200 OK", b"User-agent: *\n")
        assert _named(head, "X-Frame-Options") == ["X-Frame-Options: DENY"]
    for head, _body in (_http(http, "/error"), _uwsgi(uwsgi, "/error")):
        assert head[0] == "HTTP/1.1 500 Internal Server Error"
        assert _named(head, "X-Frame-Options") == ["X-Frame-Options: DENY"]
    inst.wait_for_log("RuntimeError: deliberate")
    with connect_to(http, 10) as sock:  # a malformed request: uzerg's own 400
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
        head, _ = _split(read_all(sock))
    assert head[0].startswith("HTTP/1.1 400") and "X-Frame-Options: DENY" in head


def test_connection_close_header_closes_keepalive_connections(uzerg: InstanceStarter,
                                                               app: Path) -> None:
    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    plain = uzerg.start(["--http11-socket", "127.0.0.1:0", "--wsgi-file", str(app)])
    with connect_to(plain.address(0), 10) as sock:  # the connection is reused without it
        for _ in range(2):
            sock.sendall(request)
            status, headers, body = read_one_response(sock)
            assert (status, body) == (200, b"app says hi") and "connection" not in headers
    closing = uzerg.start(["--http11-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                           "--add-header", "Connection: close"])
    with connect_to(closing.address(0), 10) as sock:
        sock.sendall(request)
        head, body = _split(read_all(sock))  # read to the server's close
        assert _named(head, "Connection") == ["Connection: close"]
        assert body == b"app says hi"
    with connect_to(closing.address(0), 10) as sock:  # pipelined: only the first is served
        sock.sendall(request * 2)
        data = read_all(sock)
        assert data.count(b"HTTP/1.1 200 OK") == 1 and data.endswith(b"app says hi")


def _gzip_instance(uzerg: InstanceStarter, site: Path, *options: str, socket_kind: str) -> str:
    inst = uzerg.start([socket_kind, "127.0.0.1:0", "--wsgi-file", TESTAPP,
                        "--check-static", f"{site.name}/", *options], cwd=site.parent)
    return inst.address(0)


def test_static_gzip_dir_served_only_when_accepted(uzerg: InstanceStarter, site: Path) -> None:
    # healthchecks' config (corpus 046): check-static + a relative static-gzip-dir
    address = _gzip_instance(uzerg, site, "--static-gzip-dir", f"{site.name}/CACHE",
                             "--static-expires-type", "text/css=3600",
                             socket_kind="--http-socket")
    original = (site / "CACHE" / "app.css").read_bytes()
    twin = (site / "CACHE" / "app.css.gz").read_bytes()
    head, body = _http(address, "/CACHE/app.css", "Accept-Encoding: gzip, deflate, br\r\n")
    assert head[0] == "HTTP/1.1 200 OK" and body == twin
    assert gzip.decompress(body) == original
    assert _named(head, "Content-Encoding") == ["Content-Encoding: gzip"]
    assert _named(head, "Content-Type") == ["Content-Type: text/css"]
    assert _named(head, "Content-Length") == [f"Content-Length: {len(twin)}"]
    assert _named(head, "Vary") == ["Vary: Accept-Encoding"]
    assert len(_named(head, "Expires")) == 1
    for refusing in ("", "Accept-Encoding: identity\r\n", "Accept-Encoding: gzip;q=0\r\n"):
        head, body = _http(address, "/CACHE/app.css", refusing)
        assert body == original and _named(head, "Content-Encoding") == []
        assert _named(head, "Vary") == ["Vary: Accept-Encoding"]
    # outside the gzip dir the twin is not used, and nothing varies
    head, body = _http(address, "/site.css", "Accept-Encoding: gzip\r\n")
    assert body == (site / "site.css").read_bytes() and _named(head, "Content-Encoding") == []
    assert _named(head, "Vary") == []


def test_static_gzip_over_the_uwsgi_protocol(uzerg: InstanceStarter, site: Path) -> None:
    # searxng's (corpus 081): static-gzip-all; nginx passes Accept-Encoding as HTTP_ACCEPT_...
    address = _gzip_instance(uzerg, site, "--static-gzip-all", "--static-expires", "/* 60",
                             socket_kind="--socket")
    head, body = _uwsgi(address, "/site.css", HTTP_ACCEPT_ENCODING="gzip")
    assert _named(head, "Content-Encoding") == ["Content-Encoding: gzip"]
    assert gzip.decompress(body) == (site / "site.css").read_bytes()
    assert len(_named(head, "Expires")) == 1
    head, body = _uwsgi(address, "/site.css")
    assert body == (site / "site.css").read_bytes() and _named(head, "Content-Encoding") == []
    head, body = _uwsgi(address, "/robots.txt", HTTP_ACCEPT_ENCODING="gzip")  # no twin
    assert body == b"User-agent: *\n" and _named(head, "Vary") == []


def test_a_bad_add_header_is_a_one_line_error(uzerg: InstanceStarter, app: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                        "--add-header", "X-Frame-Options DENY"], wait_workers=None)
    assert inst.wait_exit() != 0
    text = inst.log_text()
    assert "add-header" in text and "expected NAME: VALUE" in text and "Traceback" not in text
