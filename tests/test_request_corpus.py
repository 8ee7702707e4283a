"""The HTTP fixture corpus served by RequestHandler over a socketpair, whole, byte by byte and in
random pieces: each valid request reaches the app with the environ its fixture names, each
invalid one gets its exact status, and the app is called only when the fixture says so."""

from __future__ import annotations

from typing import Any

import pytest
from config_helpers import make_config
from fixture_corpus import check_served, chunkings, corpus, make_corpus_app, parse_responses
from request_helpers import exchange, logs_fixture  # noqa: F401

from uzerg.serve.request import RequestHandler

CASES = corpus("http", "valid", ".http") + corpus("http", "invalid", ".http")


@pytest.mark.parametrize("name,raw,expected", CASES, ids=[c[0] for c in CASES])
def test_corpus_case_served_in_any_chunking(logs: Any, name: str, raw: bytes, expected: Any):
    ways = [("http11", how, pieces) for how, pieces in chunkings(raw)]
    if not isinstance(expected, list) or len(expected) == 1:
        ways.append(("http", "whole", [raw]))  # --http-socket: one request per connection
    for protocol, how, pieces in ways:
        calls: list[str] = []
        handler = RequestHandler(make_corpus_app(calls.append), make_config(), 1)
        reply, _ = exchange(handler, pieces, protocol=protocol)
        try:
            check_served(expected, parse_responses(reply), len(calls))
        except AssertionError as exc:
            raise AssertionError(f"{protocol} {how}: {exc}") from None


def test_malformed_body_is_logged_once_without_a_traceback(logs: Any):
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabcdefgh\r\n0\r\n\r\n")
    handler = RequestHandler(make_corpus_app(lambda uri: None), make_config(), 1)
    reply, counts = exchange(handler, raw, protocol="http11")
    assert parse_responses(reply) == [(400, b"400 Bad Request\n")]
    assert counts.status == 400 and counts.exceptions == 0
    text = logs.getvalue()
    assert text.count("invalid HTTP request from 127.0.0.1: chunk data not followed by CRLF") == 1
    assert "Traceback" not in text and "body-read" not in text


def test_malformed_body_after_the_response_started_closes_the_connection(logs: Any):
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        environ["wsgi.input"].read()
        yield b"never"

    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a b\r\nabc\r\n"
           b"0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
    reply, counts = exchange(RequestHandler(app, make_config(), 1), raw, protocol="http11")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"never" not in reply
    assert reply.count(b"HTTP/1.1") == 1  # the pipelined request is not served
    assert logs.getvalue().count("invalid HTTP request from 127.0.0.1: invalid chunk size") == 1


def _swallowing_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    try:
        environ["wsgi.input"].read()
    except OSError:
        pass
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def _not_reading_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


@pytest.mark.parametrize("app,body,logged", [
    (_swallowing_app, b"zz\r\n\r\n", "invalid chunk size line"),
    (_not_reading_app, b"3\r\nabcX", "chunk data not followed by CRLF"),
], ids=["app-swallows-the-read-error", "app-never-reads"])
def test_malformed_body_not_failing_the_app_is_answered_then_closed(
    logs: Any, app: Any, body: bytes, logged: str
):
    raw = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body
           + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    reply, _ = exchange(RequestHandler(app, make_config(), 1), raw, protocol="http11")
    assert [status for status, _ in parse_responses(reply)] == [200]  # and nothing more
    assert logs.getvalue().count(logged) == 1


UWSGI_VALID = corpus("uwsgi", "valid", ".uwsgi")


@pytest.mark.parametrize("name,raw,expected", UWSGI_VALID, ids=[c[0] for c in UWSGI_VALID])
def test_uwsgi_corpus_through_the_request_path_in_any_chunking(
    logs: Any, name: str, raw: bytes, expected: Any
):
    """The request path reads packets with the reader test_protocol_uwsgi.py tests: every
    chunking gives the app the packet's vars."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    for how, pieces in chunkings(raw):
        seen.clear()
        _, counts = exchange(RequestHandler(app, make_config(), 1), pieces, protocol="uwsgi")
        assert counts.status == 200, how
        assert {key: seen.get(key) for key in expected["vars"]} == expected["vars"], how
