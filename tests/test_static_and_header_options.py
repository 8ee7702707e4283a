"""add-header/del-header and the static-file options: their parsers, and what a RequestHandler
sends over a socketpair with them (unit level; integration/test_response_headers.py runs real
instances)."""

from __future__ import annotations

import gzip
import os
from email.utils import parsedate_to_datetime

import pytest
from config_helpers import make_config
from request_helpers import exchange, hello_app, logs_fixture  # noqa: F401

from uzerg.config.load import ConfigError
from uzerg.config.serving_values import (
    parse_add_header,
    parse_expires_regexp,
    parse_expires_type,
    parse_header_name,
)
from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.headers import ResponseHeaders
from uzerg.serve.request import RequestHandler
from uzerg.serve.static_rules import accepted_codings

# -- parsing ----------------------------------------------------------------------------------


def test_add_header_values() -> None:
    assert parse_add_header("Connection: close") == ("Connection", "close")
    assert parse_add_header("X-Frame-Options:DENY ") == ("X-Frame-Options", "DENY")
    assert parse_add_header("X-Empty:") == ("X-Empty", "")
    for bad, why in (("no colon", "expected NAME: VALUE"), ("Bad Name: x", "expected NAME"),
                     (": x", "expected NAME"), ("X-A: a\x01b", "control character"),
                     ("Content-Length: 5", "framing"), ("transfer-encoding: chunked",
                                                        "framing")):
        with pytest.raises(ValueError, match=why):
            parse_add_header(bad)
    assert parse_header_name(" X-Powered-By ") == "X-Powered-By"
    with pytest.raises(ValueError, match="invalid header name"):
        parse_header_name("X Powered")


def test_expires_values() -> None:
    assert parse_expires_type("text/css=86400") == ("text/css", 86400)
    assert parse_expires_regexp("/* 31557600") == ("/*", 31557600)
    assert parse_expires_regexp(r"\.css$ 60") == (r"\.css$", 60)
    with pytest.raises(ValueError, match="TYPE=SECONDS"):
        parse_expires_type("text/css 86400")
    with pytest.raises(ValueError, match="seconds"):
        parse_expires_type("text/css=soon")
    with pytest.raises(ValueError, match="REGEXP SECONDS"):
        parse_expires_regexp(r"\.css$")
    with pytest.raises(ValueError, match="invalid regular expression"):
        parse_expires_regexp("([ 60")


def test_options_from_an_ini_and_one_line_errors(tmp_path) -> None:
    ini = tmp_path / "a.ini"
    ini.write_text("[uwsgi]\nadd-header = Connection: close\nadd-header = X-A: 1\n"
                   "rem-header = Server\nstatic-gzip-prefix = /srv/static\n"
                   "static-gzip-suffix = .css\nstatic-expires-type = text/css=60\n"
                   "static-check = /srv\nmime-file = /etc/mime.types\n")
    config = make_config("--ini", str(ini))
    assert config.add_header == (("Connection", "close"), ("X-A", "1"))
    assert config.del_header == ("Server",)
    assert config.static_gzip_dir == ("/srv/static",)
    assert config.static_gzip_ext == (".css",)
    assert config.static_expires_type == (("text/css", 60),)
    assert config.check_static == ("/srv",)
    assert config.mimefile == ("/etc/mime.types",)
    ini.write_text("[uwsgi]\nadd-header = X-Frame-Options DENY\n")
    with pytest.raises(ConfigError) as err:
        make_config("--ini", str(ini))
    assert "a.ini:2: add-header" in str(err.value) and "\n" not in str(err.value)


def test_accept_encoding() -> None:
    assert accepted_codings("gzip, deflate, br") == {"gzip", "deflate", "br"}
    assert accepted_codings("GZIP;q=0.5, br;q=0") == {"gzip"}
    assert accepted_codings("gzip;q=0, identity") == {"identity"}
    assert accepted_codings("gzip;q=x") == frozenset()
    assert accepted_codings(None) == frozenset() == accepted_codings("")


def test_header_rules_apply() -> None:
    rules = ResponseHeaders([("X-A", "1")], ["x-powered-by"])
    app_headers = [("Content-Type", "text/plain"), ("X-Powered-By", "me")]
    assert rules.apply(app_headers) == [("Content-Type", "text/plain"), ("X-A", "1")]
    assert app_headers[1] == ("X-Powered-By", "me")  # the app's own list is not changed
    assert rules.apply("junk") == "junk"  # left to the response writer to refuse
    assert ResponseHeaders.from_config((), ()) is None
    assert ResponseHeaders([("Connection", "close"), ("X-B", "2")], []).error_lines == \
        b"X-B: 2\r\n"


# -- served through a RequestHandler ----------------------------------------------------------


def _app(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "app")])
    return [b"Hello World"]


def _head(reply: bytes) -> list[str]:
    return reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")


def get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: h\r\n{extra}\r\n".encode()


def test_added_and_removed_on_app_500_and_400_replies(logs) -> None:
    handler = RequestHandler(_app, make_config(
        add_header=(("X-Frame-Options", "DENY"), ("X-Frame-Options", "SAMEORIGIN")),
        del_header=("x-powered-by",)), 1)
    reply, _ = exchange(handler, get("/"))
    head = _head(reply)
    assert head[0] == "HTTP/1.1 200 OK" and "Content-Type: text/plain" in head
    assert [h for h in head if h.startswith("X-")] == ["X-Frame-Options: DENY",
                                                        "X-Frame-Options: SAMEORIGIN"]
    assert reply.endswith(b"Hello World")
    reply, _ = exchange(handler, get("/boom"))
    assert _head(reply)[0] == "HTTP/1.1 500 Internal Server Error"
    assert "X-Frame-Options: DENY" in _head(reply) and reply.endswith(b"Internal Server Error")
    reply, _ = exchange(handler, b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n")
    assert _head(reply)[0].startswith("HTTP/1.1 400") and "X-Frame-Options: DENY" in _head(reply)
    packet = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/",
                                  "SERVER_PROTOCOL": "HTTP/1.1"})
    reply, _ = exchange(handler, packet, "uwsgi")
    assert "X-Frame-Options: SAMEORIGIN" in _head(reply)
    assert not any(h.lower().startswith("x-powered-by") for h in _head(reply))


def test_connection_close_ends_a_keepalive_connection(logs) -> None:
    plain = RequestHandler(hello_app, make_config(), 1)
    reply, counts = exchange(plain, get("/") + get("/"), "http11")
    assert reply.count(b"200 OK") == 2 and counts.requests == 2
    closing = RequestHandler(hello_app, make_config(add_header=(("Connection", "close"),)), 1)
    for version in ("1.1", "1.0"):
        extra = "Connection: keep-alive\r\n" if version == "1.0" else ""
        reply, counts = exchange(closing, get("/", extra, version) * 2, "http11")
        assert counts.requests == 1 and reply.count(b"200 OK") == 1, reply
        assert [h for h in _head(reply) if h.lower().startswith("connection")] == \
            ["Connection: close"]


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "static"
    (root / "js").mkdir(parents=True)
    (root / "js" / "app.js").write_text("var a = 1;\n" * 50)
    (root / "js" / "app.js.gz").write_bytes(gzip.compress(b"var a = 1;\n" * 50))
    (root / "js" / "app.js.br").write_bytes(b"pretend-brotli")
    (root / "plain.css").write_text("body {}\n")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<p>index</p>")
    (root / "secret.py").write_text("x = 1\n")
    return tmp_path


def _static(site, **config) -> RequestHandler:
    return RequestHandler(hello_app, make_config(static_map=(f"/s={site / 'static'}",),
                                                 **config), 1)


def test_gzip_twin_only_when_accepted(logs, site) -> None:
    handler = _static(site, static_gzip_all=True)
    plain = (site / "static" / "js" / "app.js").read_bytes()
    twin = (site / "static" / "js" / "app.js.gz").read_bytes()
    reply, _ = exchange(handler, get("/s/js/app.js", "Accept-Encoding: gzip, deflate\r\n"))
    head = _head(reply)
    assert "Content-Encoding: gzip" in head and "Vary: Accept-Encoding" in head
    assert f"Content-Length: {len(twin)}" in head
    assert any(h.startswith("Content-Type: ") and "javascript" in h for h in head)
    assert gzip.decompress(reply.split(b"\r\n\r\n", 1)[1]) == plain
    for refused in ("", "Accept-Encoding: gzip;q=0\r\n", "Accept-Encoding: deflate\r\n"):
        reply, _ = exchange(handler, get("/s/js/app.js", refused))
        assert reply.endswith(b"\r\n\r\n" + plain) and b"Content-Encoding" not in reply
        assert "Vary: Accept-Encoding" in _head(reply)
    reply, _ = exchange(handler, get("/s/js/app.js", "Accept-Encoding: gzip, br\r\n"))
    assert "Content-Encoding: br" in _head(reply) and reply.endswith(b"pretend-brotli")
    reply, _ = exchange(handler, get("/s/plain.css", "Accept-Encoding: gzip\r\n"))  # no twin
    assert reply.endswith(b"body {}\n") and b"Vary" not in reply
    # without a static-gzip option the twin is never looked at
    reply, _ = exchange(_static(site), get("/s/js/app.js", "Accept-Encoding: gzip\r\n"))
    assert reply.endswith(plain) and b"Vary" not in reply


def test_gzip_dir_ext_and_regexp_rules(logs, site, monkeypatch) -> None:
    monkeypatch.chdir(site)
    accept = "Accept-Encoding: gzip\r\n"
    for config, served in (({"static_gzip_dir": ("static/js",)}, True),
                           ({"static_gzip_dir": ("static/css",)}, False),
                           ({"static_gzip_ext": (".js",)}, True),
                           ({"static_gzip_ext": (".css",)}, False),
                           ({"static_gzip": (r"/js/.*\.js$",)}, True)):
        reply, _ = exchange(_static(site, **config), get("/s/js/app.js", accept))
        assert (b"Content-Encoding: gzip" in reply) is served, config


def test_expires_index_skip_ext_and_mimefile(logs, site, tmp_path) -> None:
    mime = tmp_path / "mime.types"
    mime.write_text("# comment\ntext/x-test css\n")
    handler = _static(site, static_expires_type=(("text/x-test", 60),),
                      static_expires_path_info_mtime=((r"^/s/js/", 3600),),
                      static_index=("index.html",), static_skip_ext=(".py",),
                      mimefile=(str(mime), str(tmp_path / "missing.types")))
    reply, _ = exchange(handler, get("/s/plain.css"))
    head = _head(reply)
    assert "Content-Type: text/x-test" in head
    expires = next(h for h in head if h.startswith("Expires: "))
    delta = parsedate_to_datetime(expires[9:]).timestamp() - os.path.getmtime(
        site / "static" / "plain.css")
    assert 55 <= delta  # now + 60
    reply, _ = exchange(handler, get("/s/js/app.js"))
    expires = next(h for h in _head(reply) if h.startswith("Expires: "))
    mtime = int(os.path.getmtime(site / "static" / "js" / "app.js"))
    assert parsedate_to_datetime(expires[9:]).timestamp() == mtime + 3600
    reply, _ = exchange(handler, get("/s/docs"))
    assert reply.endswith(b"<p>index</p>")
    reply, _ = exchange(handler, get("/s/secret.py"))
    assert reply.endswith(b"Hello World")  # the app answers
    assert "!!! no " in logs.getvalue() and "missing.types file found !!!" in logs.getvalue()


def test_static_map2_docroot_and_safe(logs, site, tmp_path) -> None:
    (site / "static" / "s").mkdir()
    (site / "static" / "s" / "f.txt").write_text("map2")
    handler = RequestHandler(hello_app, make_config(static_map2=(f"/s={site / 'static'}",)), 1)
    reply, _ = exchange(handler, get("/s/f.txt"))
    assert reply.endswith(b"map2")  # DIR + the whole PATH_INFO
    handler = RequestHandler(hello_app, make_config(check_static_docroot=True), 1)
    packet = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/plain.css",
                                  "DOCUMENT_ROOT": str(site / "static"),
                                  "SERVER_PROTOCOL": "HTTP/1.1"})
    reply, _ = exchange(handler, packet, "uwsgi")
    assert reply.endswith(b"body {}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shared.txt").write_text("shared")
    (site / "static" / "link.txt").symlink_to(outside / "shared.txt")
    reply, _ = exchange(_static(site), get("/s/link.txt"))
    assert reply.endswith(b"Hello World")  # outside the root: the app
    reply, _ = exchange(_static(site, static_safe=(str(outside),)), get("/s/link.txt"))
    assert reply.endswith(b"shared")


def test_static_responses_get_the_header_rules(logs, site) -> None:
    handler = _static(site, add_header=(("X-Static", "yes"),), del_header=("last-modified",))
    reply, _ = exchange(handler, get("/s/plain.css"))
    head = _head(reply)
    assert "X-Static: yes" in head and not any(h.startswith("Last-Modified") for h in head)
    reply, _ = exchange(handler, get("/s/plain.css", "If-Modified-Since: Fri, 01 Jan 2100 "
                                     "00:00:00 GMT\r\n"))
    assert _head(reply)[0] == "HTTP/1.1 304 Not Modified" and "X-Static: yes" in _head(reply)
