"""RequestHandler end to end over real sockets (socketpairs and loopback TCP), no subprocesses."""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from typing import Any

import pytest
from config_helpers import make_config
from request_helpers import exchange, hello_app, logs_fixture, read_all  # noqa: F401

from uzerg.protocols.http import parse_request_head
from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.request import RequestHandler

GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def handler_for(app: Any, **config: Any) -> RequestHandler:
    return RequestHandler(app, make_config(**config), 1)


# -- HTTP basics ------------------------------------------------------------------------------


def test_http_hello_world_closes_after_the_response(logs):
    reply, counts = exchange(handler_for(hello_app), GET, half_close=False)
    assert reply == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nHello World"
    )
    assert counts.requests == 1 and counts.exceptions == 0 and counts.status == 200
    assert counts.tx == len(reply)


def test_request_line_has_uwsgi_shape(logs):
    exchange(handler_for(hello_app), b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    line = logs.getvalue().strip().splitlines()[-1]
    assert re.fullmatch(
        rf"\[pid: {os.getpid()}\|app: 0\|req: 1/1\] 127\.0\.0\.1 \(\) \{{\d+ vars in \d+ bytes\}} "
        r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] GET /a\?b=1 => generated 11 bytes in \d+ "
        r"msecs \(HTTP/1\.1 200\) 1 headers in 64 bytes \(1 switches on core 0\)",
        line,
    ), line


def test_http10_response_uses_http10_and_no_connection_header(logs):
    reply, _ = exchange(handler_for(hello_app), b"GET / HTTP/1.0\r\n\r\n")
    assert reply == b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nHello World"


def test_environ_of_an_http_request(logs):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    raw = (b"POST /a%20b/c?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 0\r\nX-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: evil\r\n"
           b"Accept: a\r\nAccept: b\r\n\r\n")
    exchange(handler_for(app), raw, peer=("10.0.0.9", 5555))
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["PATH_INFO"] == "/a b/c"
    assert seen["QUERY_STRING"] == "x=1"
    assert seen["REQUEST_URI"] == "/a%20b/c?x=1"
    assert seen["SCRIPT_NAME"] == ""
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["REMOTE_ADDR"] == "10.0.0.9" and seen["REMOTE_PORT"] == "5555"
    assert seen["CONTENT_TYPE"] == "text/plain" and seen["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in seen and "HTTP_CONTENT_LENGTH" not in seen
    assert seen["HTTP_HOST"] == "example.com:8080"
    assert seen["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"  # the underscore twin was dropped
    assert seen["HTTP_ACCEPT"] == "a, b"  # joined as uWSGI's http parser joins them
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.multithread"] is False and seen["wsgi.run_once"] is False


def test_multithread_and_multiprocess_flags_follow_the_config(logs):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    exchange(handler_for(app, threads=4, processes=2), GET)
    assert seen["wsgi.multithread"] is True and seen["wsgi.multiprocess"] is True


def test_tcp_connection_sets_server_port_and_remote_addr(logs):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    handler = handler_for(app)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client_port = client.getsockname()[1]
    try:
        conn, peer = listener.accept()
        thread = threading.Thread(target=handler.handle, args=(conn, peer, "http"), daemon=True)
        thread.start()
        client.sendall(GET)
        reply = read_all(client)
        thread.join(10)
    finally:
        client.close()
        listener.close()
    assert reply.endswith(b"\r\n\r\nok")
    assert seen["SERVER_PORT"] == str(port)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["REMOTE_PORT"] == str(client_port)


def test_head_request_gets_headers_but_no_body(logs):
    reply, counts = exchange(handler_for(hello_app), b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert reply == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    assert counts.status == 200


def test_bad_request_gets_400_and_a_log_line(logs):
    reply, counts = exchange(handler_for(hello_app), b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert reply.endswith(b"\r\n\r\n400 Bad Request\n")
    assert counts.status == 400
    assert "invalid HTTP request from 127.0.0.1: whitespace before the colon" in logs.getvalue()


def test_oversized_head_gets_431(logs):
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    reply, counts = exchange(handler_for(hello_app), raw)
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert "invalid HTTP request size (max 4096)...skip" in logs.getvalue()


def test_bigger_buffer_size_accepts_bigger_heads(logs):
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    reply, _ = exchange(handler_for(hello_app, buffer_size=8192), raw)
    assert reply.endswith(b"Hello World")


def test_client_closing_without_a_request_is_quiet(logs):
    reply, counts = exchange(handler_for(hello_app), b"")
    assert reply == b"" and counts.requests == 0
    assert logs.getvalue() == ""


def test_an_incomplete_head_gets_408_at_the_socket_timeout(logs):
    handler = handler_for(hello_app, socket_timeout=0.3)
    started = time.monotonic()
    reply, counts = exchange(handler, b"GET / HTTP/1.1\r\nHost:", half_close=False)
    assert time.monotonic() - started < 5
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert counts.requests == 1 and counts.status == 408
    assert "timeout: request head incomplete after 0.3 s" in logs.getvalue()


def test_the_head_deadline_is_http_headers_timeout_when_set(logs):
    handler = handler_for(hello_app, socket_timeout=30, http_headers_timeout=0.3)
    started = time.monotonic()
    reply, _ = exchange(handler, b"GET / HTTP/1.1\r\nHost:", half_close=False)
    assert time.monotonic() - started < 5
    assert reply.startswith(b"HTTP/1.1 408 ")


def test_a_silent_connection_is_closed_quietly_at_the_deadline(logs):
    reply, counts = exchange(handler_for(hello_app, socket_timeout=0.3), b"", half_close=False)
    assert reply == b"" and counts.requests == 0


def test_an_incomplete_uwsgi_packet_is_dropped_at_the_deadline(logs):
    packet = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/"})
    reply, counts = exchange(handler_for(hello_app, socket_timeout=0.3), packet[:-3], "uwsgi",
                             half_close=False)
    assert reply == b"" and counts.requests == 0
    assert "timeout: request head incomplete after 0.3 s" in logs.getvalue()


# -- keep-alive -------------------------------------------------------------------------------


def test_keepalive_serves_several_requests_with_framing(logs):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/gen":
            return (part for part in [b"a", b"", b"bc"])
        return [b"list"]

    raw = (b"GET /list HTTP/1.1\r\nHost: h\r\n\r\n"
           b"GET /gen HTTP/1.1\r\nHost: h\r\n\r\n"
           b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    reply, counts = exchange(handler_for(app), raw, protocol="http11")
    assert reply == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nlist"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n2\r\nbc\r\n0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nlist"
    )
    assert counts.requests == 3


def test_http_keepalive_option_enables_keepalive_on_http_sockets(logs):
    reply, counts = exchange(handler_for(hello_app, http_keepalive=True), GET + GET)
    assert reply.count(b"Hello World") == 2 and counts.requests == 2


def test_default_http_socket_closes_after_one_response(logs):
    reply, counts = exchange(handler_for(hello_app), GET + GET, half_close=False)
    assert reply.count(b"Hello World") == 1 and counts.requests == 1


def test_http10_keepalive_when_asked(logs):
    raw = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"
    reply, counts = exchange(handler_for(hello_app), raw, protocol="http11")
    assert reply == (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
        b"Connection: keep-alive\r\n\r\nHello World"
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nHello World"
    )


def test_keepalive_drains_an_unread_body(logs):
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
           b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
           + GET)
    reply, counts = exchange(handler_for(hello_app), raw, protocol="http11")
    assert reply.count(b"Hello World") == 3 and counts.requests == 3


def test_keepalive_idle_connection_closes_quietly(logs):
    handler = handler_for(hello_app, http_timeout=0.3)
    reply, counts = exchange(handler, GET, protocol="http11", half_close=False)
    assert reply.count(b"Hello World") == 1
    assert "timeout" not in logs.getvalue()


def test_shutting_down_closes_keepalive_connections_after_the_response(logs):
    handler = handler_for(hello_app)
    handler.shutting_down = True
    reply, counts = exchange(handler, GET + GET, protocol="http11", half_close=False)
    assert counts.requests == 1 and b"Connection: close" in reply


def test_short_body_from_the_app_closes_a_keepalive_connection(logs):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc"]

    reply, counts = exchange(handler_for(app), GET + GET, protocol="http11", half_close=False)
    assert counts.requests == 1 and reply.endswith(b"abc")


def test_app_connection_close_header_ends_keepalive(logs):
    def app(environ, start_response):
        start_response("200 OK", [("Connection", "close")])
        return [b"x"]

    reply, counts = exchange(handler_for(app), GET + GET, protocol="http11", half_close=False)
    assert counts.requests == 1 and reply.count(b"Connection: close") == 1


# -- request bodies ---------------------------------------------------------------------------


def echo_app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def test_chunked_request_body_is_decoded(logs):
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n")
    reply, _ = exchange(handler_for(echo_app), [raw[i : i + 7] for i in range(0, len(raw), 7)])
    assert reply.endswith(b"\r\n\r\nhello world")


def test_large_body_streams_through_wsgi_input(logs):
    body = os.urandom(300_000)

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        parts = []
        while chunk := stream.read(10_000):
            parts.append(chunk)
        start_response("200 OK", [])
        return [str(len(b"".join(parts))).encode(), b":", b"ok" if b"".join(parts) == body else b""]

    raw = b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    reply, _ = exchange(handler_for(app), raw)
    assert reply.endswith(b"300000:ok")


def test_wsgi_input_file_api(logs):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        seen["read3"] = stream.read(3)
        seen["readline"] = stream.readline()
        seen["readline_limited"] = stream.readline(2)
        seen["readlines"] = stream.readlines()
        seen["after"] = stream.read()
        seen["after_n"] = stream.read(10)
        seen["after_line"] = stream.readline()
        start_response("200 OK", [])
        return []

    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 21\r\n\r\nabcdef\nghijk\nlm\nno\npq"
    exchange(handler_for(app), [raw[:60], raw[60:]])
    assert seen == {
        "read3": b"abc", "readline": b"def\n", "readline_limited": b"gh",
        "readlines": [b"ijk\n", b"lm\n", b"no\n", b"pq"], "after": b"", "after_n": b"",
        "after_line": b"",
    }


def test_wsgi_input_iteration(logs):
    lines: list[bytes] = []

    def app(environ, start_response):
        lines.extend(environ["wsgi.input"])
        start_response("200 OK", [])
        return []

    body = b"one\ntwo\nthree"
    exchange(handler_for(app), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\n\r\n" + body)
    assert lines == [b"one\n", b"two\n", b"three"]


def test_expect_100_continue_is_sent_when_the_app_reads(logs):
    handler = handler_for(echo_app)
    server, client = socket.socketpair()
    thread = threading.Thread(target=handler.handle, args=(server, ("::1", 1), "http"), daemon=True)
    thread.start()
    try:
        client.settimeout(10)
        client.sendall(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                       b"Content-Length: 4\r\n\r\n")
        assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.sendall(b"data")
        reply = read_all(client)
    finally:
        client.close()
        thread.join(10)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"data")


def test_no_100_continue_when_the_app_does_not_read(logs):
    reply, _ = exchange(
        handler_for(hello_app),
        b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    assert b"100 Continue" not in reply


def test_client_vanishing_in_the_body_fails_the_apps_read_as_in_uwsgi(logs):
    # uWSGI 2.0.31 logs the [uwsgi-body-read] line, the app's read raises OSError, the worker
    # counts an exception and the request line says 500 (nothing is sent: the client is gone)
    reply, counts = exchange(
        handler_for(echo_app), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc"
    )
    assert counts.exceptions == 1 and counts.status == 500
    text = logs.getvalue()
    assert ("[uwsgi-body-read] Error reading 97 bytes. Content-Length: 100 consumed: 3 left: 97 "
            "message: Client closed connection") in text
    assert "BodyReadError: error during read(" in text and " on wsgi.input" in text
    assert "(HTTP/1.1 500)" in text


def test_client_vanishing_in_an_unread_body_is_quiet(logs):
    reply, counts = exchange(
        handler_for(hello_app), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc"
    )
    assert reply.startswith(b"HTTP/1.1 200 OK") and counts.exceptions == 0
    assert "uwsgi-body-read" not in logs.getvalue()


# -- application errors -----------------------------------------------------------------------


def test_app_exception_gives_500_and_a_traceback(logs):
    def app(environ, start_response):
        raise RuntimeError("boom")

    handler = handler_for(app)
    reply, counts = exchange(handler, GET)
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert reply.endswith(b"Internal Server Error")
    assert counts.exceptions == 1 and counts.status == 500
    text = logs.getvalue()
    assert "Traceback (most recent call last):" in text and "RuntimeError: boom" in text
    assert "(HTTP/1.1 500)" in text
    # the handler survives and serves the next connection
    handler.app = hello_app
    assert exchange(handler, GET)[0].endswith(b"Hello World")


def test_exception_after_headers_sent_truncates_and_closes(logs):
    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"partial"
            raise RuntimeError("mid-body")

        return body()

    reply, counts = exchange(handler_for(app), GET, protocol="http11")
    assert reply.endswith(b"7\r\npartial\r\n")  # no terminating chunk: the client sees the cut
    assert counts.exceptions == 1


@pytest.mark.parametrize(
    "status,headers",
    [
        ("abc", []),
        ("200", []),
        (b"200 OK", []),
        ("200 OK", [("X-Bad", "a\r\nInjected: 1")]),
        ("200 OK", [("Bad Name", "x")]),
        ("200 OK", [("X", 1)]),
        ("200 OK", (("X", "y"),)),
        ("200 OK", [("X-Uni", "\u20ac")]),
    ],
)
def test_bad_status_or_headers_from_the_app_give_500(logs, status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"x"]

    reply, counts = exchange(handler_for(app), GET)
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"Injected" not in reply
    assert counts.exceptions == 1


def test_str_body_is_an_app_error(logs):
    def app(environ, start_response):
        start_response("200 OK", [])
        return ["text"]

    reply, counts = exchange(handler_for(app), GET)
    assert reply.startswith(b"HTTP/1.1 500") and counts.exceptions == 1


def test_start_response_twice_without_exc_info_is_an_error(logs):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"x"]

    reply, _ = exchange(handler_for(app), GET)
    assert reply.startswith(b"HTTP/1.1 500")


def test_exc_info_before_headers_replaces_the_response(logs):
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            import sys

            start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
        return [b"sorry"]

    reply, _ = exchange(handler_for(app), GET)
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\nX-Second: 1\r\n")
    assert b"X-First" not in reply


def test_exc_info_after_headers_reraises(logs):
    raised: list[BaseException] = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"sent")
        try:
            raise KeyError("original")
        except KeyError:
            import sys

            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError as exc:
                raised.append(exc)
                raise
        return []

    reply, counts = exchange(handler_for(app), GET)
    assert raised and reply.endswith(b"sent") and counts.exceptions == 1


def test_write_callable(logs):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"abc")
        write(b"")
        write(b"def")
        return [b"ghi"]

    reply, _ = exchange(handler_for(app), GET + GET, protocol="http11")
    assert reply.count(b"3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n") == 2


def test_close_is_called_on_success_error_and_disconnect(logs):
    closed: list[str] = []

    class Body:
        def __init__(self, name: str, fail: bool) -> None:
            self.name, self.fail = name, fail

        def __iter__(self):
            yield b"x" * 100_000
            if self.fail:
                raise RuntimeError("fail")
            yield b"y"

        def close(self) -> None:
            closed.append(self.name)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body(environ["PATH_INFO"], environ["PATH_INFO"] == "/fail")

    handler = handler_for(app)
    exchange(handler, b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
    exchange(handler, b"GET /fail HTTP/1.1\r\nHost: h\r\n\r\n")
    # a client that goes away without reading: the send fails, close() still runs
    server, client = socket.socketpair()
    client.sendall(b"GET /gone HTTP/1.1\r\nHost: h\r\n\r\n")
    client.close()
    counts = handler.handle(server, ("127.0.0.1", 1), "http")
    assert closed == ["/ok", "/fail", "/gone"]
    assert counts.exceptions == 0


def test_file_wrapper_uses_sendfile_for_real_files(logs, tmp_path):
    payload = os.urandom(200_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    closed: list[bool] = []

    def app(environ, start_response):
        f = open(path, "rb")
        f.seek(1000)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper = environ["wsgi.file_wrapper"](f)
        original = f.close
        f.close = lambda: (closed.append(True), original())  # type: ignore[method-assign]
        wrapper.close = f.close
        return wrapper

    reply, counts = exchange(handler_for(app), GET + GET, protocol="http11")
    first = reply.split(b"HTTP/1.1 200 OK")[1]
    assert b"Content-Length: 199000\r\n" in first
    assert first.split(b"\r\n\r\n", 1)[1] == payload[1000:]
    assert closed == [True, True]
    assert counts.tx == len(reply)


def test_file_wrapper_over_a_non_file_iterates(logs):
    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"), 4)

    reply, _ = exchange(handler_for(app), GET)
    assert reply.endswith(b"\r\n\r\nin memory")


def test_wsgi_errors_go_to_the_log(logs):
    def app(environ, start_response):
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["part\n"])
        errors.write("tail")
        errors.flush()
        start_response("200 OK", [])
        return []

    exchange(handler_for(app), GET)
    lines = logs.getvalue().splitlines()
    assert lines[:3] == ["first line", "second part", "tail"]


def test_concurrent_handles_from_threads(logs):
    handler = handler_for(hello_app, threads=8)
    results: list[bytes] = []

    def one() -> None:
        results.append(exchange(handler, GET)[0])

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 16 and all(r.endswith(b"Hello World") for r in results)
    numbers = sorted(int(m) for m in re.findall(r"req: (\d+)/", logs.getvalue()))
    assert numbers == list(range(1, 17))


def test_total_requests_callback_feeds_the_log(logs):
    total = iter(range(100, 200))
    handler = RequestHandler(hello_app, make_config(), 1, total_requests=lambda: next(total))
    exchange(handler, GET)
    assert "req: 1/100]" in logs.getvalue()


def test_total_view_is_bumped_for_the_log(logs):
    """The worker's way: the scoreboard's instance-wide count as a memoryview item, bumped by
    the handler for each request it logs (other workers bump it too)."""
    import array

    count = memoryview(array.array("Q", [41]))
    handler = RequestHandler(hello_app, make_config(), 1, total_view=count)
    exchange(handler, GET)
    count[0] = 99  # another worker's requests
    exchange(handler, GET)
    assert "req: 1/42]" in logs.getvalue() and "req: 2/100]" in logs.getvalue()
    assert count[0] == 100
    quiet = RequestHandler(hello_app, make_config(disable_logging=True), 1, total_view=count)
    exchange(quiet, GET)
    assert count[0] == 100  # only a logged request needs the count


# -- uwsgi protocol ---------------------------------------------------------------------------


def uwsgi_request(**env: str) -> bytes:
    body = env.pop("body", "").encode()
    base = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/",
            "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
            "REMOTE_ADDR": "192.0.2.1"}
    base.update(env)
    return encode_uwsgi_packet(base, body)


def test_uwsgi_request_answers_raw_http_and_closes(logs):
    reply, counts = exchange(handler_for(hello_app), uwsgi_request(), protocol="uwsgi",
                             half_close=False)
    assert reply == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nHello World"
    assert counts.requests == 1
    assert "{14 vars in " in logs.getvalue() and "] 192.0.2.1 () {" in logs.getvalue()


def test_uwsgi_without_server_protocol_answers_http10(logs):
    reply, _ = exchange(handler_for(hello_app), encode_uwsgi_packet({"PATH_INFO": "/"}), "uwsgi")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")


def test_uwsgi_body_split_over_many_sends(logs):
    raw = uwsgi_request(REQUEST_METHOD="POST", CONTENT_LENGTH="11", body="hello world")
    reply, _ = exchange(handler_for(echo_app), [raw[i : i + 5] for i in range(0, len(raw), 5)],
                        protocol="uwsgi")
    assert reply.endswith(b"\r\n\r\nhello world")


@pytest.mark.parametrize(
    "extra,scheme",
    [({}, "http"), ({"HTTPS": "on"}, "https"), ({"UWSGI_SCHEME": "https"}, "https")],
)
def test_uwsgi_url_scheme(logs, extra, scheme):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return []

    exchange(handler_for(app), uwsgi_request(**extra), protocol="uwsgi")
    assert seen["wsgi.url_scheme"] == scheme
    assert seen["REMOTE_ADDR"] == "192.0.2.1"


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"\x05\x00\x00\x00", "-- unavailable modifier requested: 5 --"),
        (b"\x00\xff\xff\x00", "invalid request block size: 65535 (max 4096)...skip"),
        (b"\x00\x05\x00\x00\x00\x00abc", "uwsgi key cannot be null. skip this var."),
    ],
)
def test_uwsgi_bad_packets_close_without_response(logs, raw, message):
    reply, counts = exchange(handler_for(hello_app), raw, protocol="uwsgi")
    assert reply == b"" and counts.requests == 0
    assert message in logs.getvalue()


def test_uwsgi_app_exception_is_500(logs):
    def app(environ, start_response):
        raise ValueError("bad")

    reply, counts = exchange(handler_for(app), uwsgi_request(), protocol="uwsgi")
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert counts.exceptions == 1


# -- logging switches -------------------------------------------------------------------------


def status_app(environ, start_response):
    code = environ["PATH_INFO"][1:]
    start_response(f"{code} Whatever", [])
    return [b""]


@pytest.mark.parametrize(
    "config,logged",
    [
        ({}, ["200", "404", "500"]),
        ({"disable_logging": True}, []),
        ({"disable_logging": True, "log_4xx": True}, ["404"]),
        ({"disable_logging": True, "log_5xx": True}, ["500"]),
    ],
)
def test_disable_logging_and_log_4xx_5xx(logs, config, logged):
    handler = handler_for(status_app, **config)
    for code in ("200", "404", "500"):
        exchange(handler, f"GET /{code} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert re.findall(r"\(HTTP/1\.1 (\d+)\)", logs.getvalue()) == logged


def test_log_format(logs):
    handler = handler_for(hello_app, log_format="%(addr) %(method) %(uri) %(status) %(size) %(x)")
    exchange(handler, GET)
    assert logs.getvalue().strip() == "127.0.0.1 GET / 200 75 -"


# -- big and multi-part bodies ----------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 70_000, 3_000_000])
def test_single_body_of_any_size_arrives_whole(logs, size):
    body = os.urandom(size)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]

    for protocol in ("http", "http11", "uwsgi"):
        raw = GET if protocol != "uwsgi" else encode_uwsgi_packet(
            {"PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET"})
        reply, counts = exchange(handler_for(app), raw, protocol=protocol)
        assert reply.split(b"\r\n\r\n", 1)[1] == body, protocol
        assert counts.tx == len(reply)


def test_list_of_chunks_is_sent_with_a_content_length_on_keepalive(logs):
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"a", b"bc", b"", b"def"]

    reply, _ = exchange(handler_for(app), GET, protocol="http11")
    assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef"


def test_sigpipe_default_does_not_kill_the_worker(logs):
    import signal

    previous = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        test_close_is_called_on_success_error_and_disconnect(logs)
    finally:
        signal.signal(signal.SIGPIPE, previous)


def test_client_that_never_reads_is_cut_at_the_socket_timeout(logs):
    body = b"x" * 5_000_000

    def app(environ, start_response):
        start_response("200 OK", [])
        return [body]

    handler = handler_for(app, socket_timeout=0.3)
    server, client = socket.socketpair()
    try:
        client.sendall(GET)
        started = time.monotonic()
        counts = handler.handle(server, ("127.0.0.1", 1), "http")
        assert time.monotonic() - started < 5
    finally:
        client.close()
    assert counts.exceptions == 0 and counts.tx < len(body)
    assert "timeout writing the response" in logs.getvalue()


@pytest.mark.parametrize("protocol", ["http", "uwsgi"])
def test_unread_small_body_is_drained_so_the_client_gets_no_reset(logs, protocol):
    body = b"z" * 50_000
    if protocol == "http":
        raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    else:
        raw = encode_uwsgi_packet({"REQUEST_METHOD": "POST", "PATH_INFO": "/",
                                   "CONTENT_LENGTH": str(len(body))}, body)
    server, client = socket.socketpair()
    try:
        client.sendall(raw)
        handler_for(hello_app).handle(server, ("127.0.0.1", 1), protocol)
        reply = b""
        while data := client.recv(65536):  # a reset would raise ConnectionResetError here
            reply += data
    finally:
        client.close()
    assert reply.endswith(b"Hello World")


def test_expect_continue_request_is_not_kept_alive_when_the_body_was_not_read(logs):
    raw = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    reply, counts = exchange(handler_for(hello_app), raw, protocol="http11")
    assert b"Connection: close\r\n" in reply and b"100 Continue" not in reply


def test_real_config_object_drives_the_handler(logs, tmp_path):
    from uzerg.config.load import load_config

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "f.txt").write_text("file")
    config = load_config(
        ["--http-socket", "127.0.0.1:0", "--wsgi-file", "app.py", "--http-keepalive",
         "--static-map", f"/s={tmp_path / 's'}", "--log-format", "%(method) %(uri) %(status)"],
        {},
    )
    handler = RequestHandler(hello_app, config, 1)
    reply, counts = exchange(handler, b"GET /s/f.txt HTTP/1.1\r\nHost: h\r\n\r\n" + GET, "http")
    assert counts.requests == 2 and reply.endswith(b"Hello World") and b"\r\n\r\nfile" in reply
    assert logs.getvalue().splitlines() == ["GET /s/f.txt 200", "GET / 200"]


def test_server_port_hint_and_core_number(logs):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    handler = handler_for(app)
    server, client = socket.socketpair()
    try:
        client.sendall(GET)
        client.shutdown(socket.SHUT_WR)
        handler.handle(server, ("127.0.0.1", 1), "http", core=3, server_port="8443")
    finally:
        client.close()
    assert seen["SERVER_PORT"] == "8443"
    assert logs.getvalue().rstrip().endswith("(1 switches on core 3)")


def test_error_response_survives_a_client_still_sending(logs):
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    server, client = socket.socketpair()
    thread = threading.Thread(target=handler_for(hello_app).handle,
                              args=(server, ("127.0.0.1", 1), "http"), daemon=True)
    thread.start()
    try:
        client.settimeout(10)
        client.sendall(raw)
        reply = b""
        while data := client.recv(65536):  # a reset would raise ConnectionResetError here
            reply += data
    finally:
        client.close()
        thread.join(10)
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_repeated_head_gets_a_fresh_environ_with_its_own_peer_and_port(logs):
    """The same head again comes from the handler's cache of heads: its own REMOTE_ADDR,
    REMOTE_PORT and SERVER_PORT, nothing the app changed before, the same log counts."""
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append({key: environ.get(key) for key in
                     ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT", "PATH_INFO", "HTTP_X")})
        environ["PATH_INFO"] = "/changed"
        environ["HTTP_X"] = "added by the app"
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    handler = handler_for(app)
    head = b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\n"
    calls = [(("10.0.0.1", 1), "80"), (("10.0.0.123", 2222), "80"), (("10.0.0.3", 3), "81"),
             (("10.0.0.4", 4), "80"), (("10.0.0.5", 5), "80")]
    for peer, port in calls:
        server, client = socket.socketpair()
        client.sendall(head)
        client.shutdown(socket.SHUT_WR)
        handler.handle(server, peer, "http", server_port=port)
        assert read_all(client).startswith(b"HTTP/1.1 200 OK")
        client.close()
    assert seen == [{"REMOTE_ADDR": peer[0], "REMOTE_PORT": str(peer[1]), "SERVER_PORT": port,
                     "PATH_INFO": "/p", "HTTP_X": None} for peer, port in calls]
    sizes = [int(size) for size in re.findall(r"\{\d+ vars in (\d+) bytes\}", logs.getvalue())]
    assert len(sizes) == len(calls)
    # each line as for a head parsed afresh: the address's and the port's lengths differ
    expected = [handler._http_environ(parse_request_head(head, 4096), peer, port)[2]
                for peer, port in calls]
    assert sizes == expected and sizes[1] == sizes[0] + 2
