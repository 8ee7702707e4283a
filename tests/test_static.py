"""--static-map through the RequestHandler: sendfile, fall-through to the app, traversal."""

from __future__ import annotations

import os
from email.utils import formatdate

import pytest
from config_helpers import make_config
from request_helpers import exchange, hello_app, logs_fixture  # noqa: F401

from uzerg.serve.request import RequestHandler
from uzerg.serve.static import StaticMap


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text("body { color: red }\n")
    (root / "big.bin").write_bytes(os.urandom(100_000))
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "robots.txt").write_text("User-agent: *\n")
    return tmp_path


def handler(site, **config):
    static = (f"/static={site / 'static'}", f"/robots.txt={site / 'robots.txt'}")
    return RequestHandler(hello_app, make_config(static_map=static, **config), 1)


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: h\r\n{extra}\r\n".encode()


def test_serves_a_file_with_type_length_and_last_modified(logs, site):
    reply, counts = exchange(handler(site), get("/static/css/site.css"))
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/css\r\n" in head
    assert b"Content-Length: 20\r\n" in head
    mtime = (site / "static" / "css" / "site.css").stat().st_mtime
    assert f"Last-Modified: {formatdate(mtime, usegmt=True)}".encode() in head
    assert body == b"body { color: red }\n"
    assert counts.tx == len(reply)


def test_big_file_over_keepalive_then_another_request(logs, site):
    reply, counts = exchange(handler(site), get("/static/big.bin") + get("/app"), "http11")
    assert reply.count(b"HTTP/1.1 200 OK") == 2 and reply.endswith(b"Hello World")
    assert (site / "static" / "big.bin").read_bytes() in reply


def test_single_file_mapping(logs, site):
    reply, _ = exchange(handler(site), get("/robots.txt"))
    assert reply.endswith(b"User-agent: *\n")


def test_missing_file_falls_through_to_the_app(logs, site):
    reply, _ = exchange(handler(site), get("/static/nope.css"))
    assert reply.endswith(b"Hello World")


def test_directory_falls_through_to_the_app(logs, site):
    assert exchange(handler(site), get("/static/css"))[0].endswith(b"Hello World")


def test_post_goes_to_the_app(logs, site):
    reply, _ = exchange(handler(site), get("/static/css/site.css", "POST"))
    assert reply.endswith(b"Hello World")


def test_head_gets_no_body(logs, site):
    reply, _ = exchange(handler(site), get("/static/css/site.css", "HEAD"))
    assert reply.endswith(b"\r\n\r\n") and b"Content-Length: 20" in reply


def test_if_modified_since_gives_304(logs, site):
    mtime = (site / "static" / "css" / "site.css").stat().st_mtime
    since = f"If-Modified-Since: {formatdate(mtime + 10, usegmt=True)}\r\n"
    reply, counts = exchange(handler(site), get("/static/css/site.css", extra=since))
    assert reply.startswith(b"HTTP/1.1 304 Not Modified\r\n") and counts.status == 304
    assert reply.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("path", ["/static/../secret.txt", "/static/%2e%2e/secret.txt",
                                  "/static/css/..%2f..%2fsecret.txt", "/static/link"])
def test_traversal_and_symlinks_out_of_the_root_are_refused(logs, site, path):
    # as uWSGI 2.0.31: the security error is logged and the application answers instead
    reply, counts = exchange(handler(site), get(path))
    assert reply.endswith(b"Hello World") and b"secret" not in reply
    assert "[uwsgi-fileserve] security error: " in logs.getvalue()
    assert "or a safe path" in logs.getvalue()


def test_lookup_rules(site):
    smap = StaticMap([f"/s={site / 'static'}"])
    found = smap.lookup("/s/css/site.css")
    assert found is not None
    assert smap.lookup("/sx/css/site.css") is None
    assert smap.lookup("/s/css/\0") is None
    # PATH_INFO is already decoded: a `%` in it is part of the file name
    assert smap.lookup("/s/css/site%2ecss") is None
    with pytest.raises(ValueError, match="invalid static-map syntax"):
        StaticMap(["/nothing"])


def test_a_utf8_file_name_sent_percent_encoded(logs, site):
    (site / "static" / "café.txt").write_text("au lait")
    reply, _ = exchange(handler(site), get("/static/caf%C3%A9.txt"))
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"au lait")


def test_path_info_is_matched_not_request_uri(logs, site):
    # what nginx sends after `rewrite ^/assets/(.*)$ /static/$1 break;` (as uWSGI matches)
    from uzerg.protocols.uwsgi import encode_uwsgi_packet

    packet = encode_uwsgi_packet({
        "REQUEST_METHOD": "GET", "REQUEST_URI": "/assets/css/site.css",
        "PATH_INFO": "/static/css/site.css", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
    })
    reply, _ = exchange(handler(site), packet, "uwsgi")
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"body { color: red }\n")


def test_a_fifo_is_not_opened_for_a_writer_and_falls_through(logs, site):
    os.mkfifo(site / "static" / "pipe")
    assert exchange(handler(site), get("/static/pipe"))[0].endswith(b"Hello World")


def test_a_symlink_within_the_root_is_served_under_its_real_name(logs, site):
    (site / "static" / "alias.txt").symlink_to(site / "static" / "css" / "site.css")
    reply, _ = exchange(handler(site), get("/static/alias.txt"))
    assert b"Content-Type: text/css\r\n" in reply and reply.endswith(b"body { color: red }\n")


def test_a_later_mapping_serves_what_the_first_one_lacks(logs, site):
    (site / "other").mkdir()
    (site / "other" / "only.txt").write_text("only here")
    static = (f"/static={site / 'static'}", f"/static={site / 'other'}")
    reply, _ = exchange(RequestHandler(hello_app, make_config(static_map=static), 1),
                        get("/static/only.txt"))
    assert reply.endswith(b"only here")


def test_descriptors_are_closed_after_each_file(logs, site):
    before = len(os.listdir("/proc/self/fd"))
    for path in ("/static/css/site.css", "/static/link", "/static/pipe", "/static/css"):
        if path == "/static/pipe":
            os.mkfifo(site / "static" / "pipe")
        exchange(handler(site), get(path))
        exchange(handler(site), get(path, "HEAD"))
        since = "If-Modified-Since: Sun, 1 Jan 2090 00:00:00 GMT\r\n"
        exchange(handler(site), get(path, extra=since))
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_traversal_never_opens_what_lies_outside_the_root(logs, site):
    # a FIFO outside the root with a writer waiting: any open() of it for reading, even one
    # the real-path check would undo, lets the writer's open() return
    import threading

    fifo = site / "outside.fifo"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        with open(fifo, "wb"):
            opened.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        reply, _ = exchange(handler(site), get("/static/../outside.fifo"))
        assert reply.endswith(b"Hello World")
        assert not opened.wait(0.3), "the traversal opened a file outside the static root"
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # release the writer
        thread.join(5)


def test_a_changed_file_goes_out_with_its_new_length_and_date(logs, site):
    # the file and its headers are remembered per (real path, size, mtime)
    served = handler(site)
    path = site / "static" / "css" / "site.css"
    first, _ = exchange(served, get("/static/css/site.css"))
    path.write_text("body { color: blue; margin: 0 }\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    second, _ = exchange(served, get("/static/css/site.css"))
    assert first.endswith(b"\r\n\r\nbody { color: red }\n") and b"Content-Length: 20\r\n" in first
    assert second.endswith(b"\r\n\r\nbody { color: blue; margin: 0 }\n")
    assert b"Content-Length: 32\r\n" in second
    assert b"Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\n" in second
    third, _ = exchange(served, get("/static/css/site.css", "HEAD"))
    assert b"Content-Length: 32\r\n" in third and third.endswith(b"close\r\n\r\n")


def test_keepalive_framing_of_a_file_per_http_version(logs, site):
    # HTTP/1.0 asking keep-alive is told so; HTTP/1.1 keeps it silently; both serve on
    served = handler(site)
    old = b"GET /static/css/site.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    reply, counts = exchange(served, old + get("/app"), "http11")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length: 20\r\nLast-Modified: " in reply
    assert b"\r\nConnection: keep-alive\r\n\r\nbody { color: red }\nHTTP/1.1 200 OK" in reply
    assert reply.endswith(b"Hello World") and counts.requests == 2
    reply, _ = exchange(served, get("/static/css/site.css") + get("/app"), "http11")
    assert b"Connection:" not in reply.split(b"Hello World")[0]
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    # without keep-alive (http-socket) an HTTP/1.1 client is told the connection closes,
    # an HTTP/1.0 one not
    reply, _ = exchange(served, get("/static/css/site.css"))
    assert reply.endswith(b"\r\nConnection: close\r\n\r\nbody { color: red }\n")
    reply, _ = exchange(served, b"GET /static/css/site.css HTTP/1.0\r\n\r\n")
    assert b"Connection" not in reply and reply.endswith(b"\r\n\r\nbody { color: red }\n")


def test_add_and_del_header_on_a_file(logs, site):
    # the file's encoded headers include add-header's; without its Content-Length (del-header)
    # the file's size is still given on keep-alive, the close frames it otherwise
    served = handler(site, add_header=(("X-Frame-Options", "DENY"),),
                     del_header=("last-modified",))
    reply, _ = exchange(served, get("/static/css/site.css"))
    head, body = reply.split(b"\r\n\r\n", 1)
    assert b"\r\nX-Frame-Options: DENY\r\n" in head and b"Last-Modified" not in head
    assert b"Content-Length: 20\r\n" in head and body == b"body { color: red }\n"
    unframed = handler(site, del_header=("content-length",))
    reply, _ = exchange(unframed, get("/static/css/site.css") + get("/app"), "http11")
    assert b"\r\nContent-Length: 20\r\n\r\nbody { color: red }\nHTTP/1.1 200 OK\r\n" in reply
    assert reply.endswith(b"Hello World")
    reply, _ = exchange(unframed, get("/static/css/site.css"))
    assert b"Content-Length" not in reply and reply.endswith(b"\r\n\r\nbody { color: red }\n")


def test_a_head_request_for_a_file_on_keepalive(logs, site):
    reply, counts = exchange(handler(site), get("/static/big.bin", "HEAD") + get("/app"),
                             "http11")
    assert b"Content-Length: 100000\r\n" in reply
    head, rest = reply.split(b"\r\n\r\n", 1)
    assert rest.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"Hello World")
    assert counts.requests == 2


def test_a_served_path_that_becomes_a_symlink_out_of_the_root_is_refused(logs, site):
    # the name a path opens is remembered, never what it resolves to: checked every time
    served = handler(site)
    path = site / "static" / "css" / "site.css"
    assert exchange(served, get("/static/css/site.css"))[0].endswith(b"body { color: red }\n")
    path.unlink()
    path.symlink_to(site / "secret.txt")
    reply, _ = exchange(served, get("/static/css/site.css"))
    assert reply.endswith(b"Hello World") and b"secret" not in reply
    path.unlink()
    path.write_text("back\n")
    assert exchange(served, get("/static/css/site.css"))[0].endswith(b"\r\n\r\nback\n")
