"""The sans-I/O HTTP reader against the fixture corpus: whole, byte by byte, random chunks."""

from __future__ import annotations

from typing import Any

import pytest
from fixture_corpus import chunkings, corpus, without_environ

from uzerg.protocols.http import (
    END,
    NEED_DATA,
    HttpError,
    RequestHead,
    parse_request_head,
    split_target,
)
from uzerg.protocols.http_stream import HttpRequestParser

VALID = corpus("http", "valid", ".http")
INVALID = corpus("http", "invalid", ".http")


def run_parser(
    pieces: list[bytes], max_head: int = 4096, fast_body: bool = False
) -> list[dict[str, Any]]:
    """Feed pieces; collect every complete request as a dict like the fixtures'.
    `fast_body`: offer each piece to feed_body() first, as serve/body.py does."""
    parser = HttpRequestParser(max_head)
    requests: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for piece in pieces:
        body = parser.feed_body(piece) if fast_body else None
        if body is None:
            parser.feed(piece)
        elif body:
            assert current is not None
            current["body"] += body.decode("latin-1")
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, RequestHead):
                current = {
                    "method": event.method, "target": event.target, "version": event.version,
                    "headers": [list(h) for h in event.headers], "body": "",
                    "keep_alive": event.keep_alive, "expect_continue": event.expect_continue,
                }
            elif event is END:
                assert current is not None
                requests.append(current)
                current = None
                parser.start_next_request()
            else:
                assert isinstance(event, bytes) and event, "data events are never empty"
                assert current is not None
                current["body"] += event.decode("latin-1")
    assert current is None, "a request was left incomplete"
    assert not parser.buffer
    return requests


@pytest.mark.parametrize("name,raw,expected", VALID, ids=[v[0] for v in VALID])
def test_valid_requests_parse_the_same_in_any_chunking(name: str, raw: bytes, expected: Any):
    for how, pieces in chunkings(raw):
        assert run_parser(pieces) == without_environ(expected), how


@pytest.mark.parametrize("name,raw,expected", INVALID, ids=[v[0] for v in INVALID])
def test_invalid_requests_are_rejected_in_any_chunking(name: str, raw: bytes, expected: Any):
    for how, pieces in chunkings(raw):
        with pytest.raises(HttpError) as info:
            run_parser(pieces)
        assert info.value.status == expected["status"], how
        assert expected["message"] in info.value.message, how


def test_corpus_is_not_empty():
    assert len(VALID) >= 15 and len(INVALID) >= 25


def test_head_larger_than_buffer_size_is_431():
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    with pytest.raises(HttpError) as info:
        run_parser([raw], max_head=4096)
    assert info.value.status == 431
    assert info.value.message == "invalid HTTP request size (max 4096)...skip"
    # and the same head fits a bigger buffer
    assert run_parser([raw], max_head=8192)[0]["headers"][1][0] == "X-Big"


def test_unterminated_head_over_the_limit_fails_before_the_end_arrives():
    parser = HttpRequestParser(100)
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 100)
    with pytest.raises(HttpError) as info:
        parser.next_event()
    assert info.value.status == 431


def test_head_exactly_at_limit_is_accepted():
    head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert parse_request_head(head, len(head)) is not None
    with pytest.raises(HttpError):
        parse_request_head(head, len(head) - 1)


def test_incomplete_head_needs_data():
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: h\r\n", 4096) is None


def test_huge_trailer_section_is_rejected():
    parser = HttpRequestParser(64)
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    parser.feed(b"0\r\n" + b"X-T: aaaaaaaaaaaa\r\n" * 10)
    with pytest.raises(HttpError) as info:
        while parser.next_event() is not NEED_DATA:
            pass
    assert info.value.status == 431


def test_overlong_chunk_size_line_is_rejected():
    parser = HttpRequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    parser.next_event()
    parser.feed(b"5;" + b"x" * 5000)
    with pytest.raises(HttpError, match="too long"):
        parser.next_event()


@pytest.mark.parametrize("name,raw,expected", VALID, ids=[v[0] for v in VALID])
def test_body_fast_path_parses_the_same_in_any_chunking(name: str, raw: bytes, expected: Any):
    for how, pieces in chunkings(raw):
        assert run_parser(pieces, fast_body=True) == without_environ(expected), how


def test_feed_body_hands_out_body_bytes_and_buffers_what_follows():
    parser = HttpRequestParser()
    assert parser.feed_body(b"GET") is None  # no body yet: the head goes through feed()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() is NEED_DATA
    assert parser.feed_body(b"abc") == b"abc"
    assert parser.feed_body(b"deGET / HTTP/1.1\r\n") == b"de"
    assert parser.next_event() is END
    assert parser.buffer == b"GET / HTTP/1.1\r\n"
    assert parser.feed_body(b"more") is None  # the body is complete


def test_start_next_request_refuses_an_unread_body():
    parser = HttpRequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    parser.next_event()
    with pytest.raises(RuntimeError):
        parser.start_next_request()


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/", ("/", "")),
        ("/a/b?x=1&y", ("/a/b", "x=1&y")),
        ("/a?", ("/a", "")),
        ("http://host:8080/p?q", ("/p", "q")),
        ("http://host", ("/", "")),
        ("*", ("*", "")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str]):
    assert split_target(target) == expected


def test_parsed_head_has_every_field_of_the_constructor() -> None:
    # parse_request_head fills a RequestHead without calling __init__: the two must agree
    data = b"POST /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    parsed = parse_request_head(data, 4096)
    assert parsed is not None
    built = RequestHead("POST", "/p?q", "HTTP/1.1", [("Host", "h"), ("Content-Length", "3"),
                        ("Expect", "100-continue")], 3, False, True, True, len(data))
    assert parsed.header_block == data[data.index(b"\r\n") + 2 : -4]  # (a cache key)
    for name in RequestHead.__slots__:
        if name != "header_block":
            assert getattr(parsed, name) == getattr(built, name), name
    assert parse_request_head(data, 4096).headers is parsed.headers  # the block was cached


def test_a_cached_header_block_gets_the_same_checks() -> None:
    # the block's fields are cached, what depends on the request line is checked every time
    block = b"Host: h\r\nTransfer-Encoding: chunked\r\nX-Seen: twice\r\n\r\n"
    head = parse_request_head(b"POST / HTTP/1.1\r\n" + block, 4096)
    assert head is not None and head.chunked
    with pytest.raises(HttpError, match="Transfer-Encoding in an HTTP/1.0 request"):
        parse_request_head(b"POST / HTTP/1.0\r\n" + block, 4096)
    with pytest.raises(HttpError, match="too many header fields"):
        parse_request_head(b"POST / HTTP/1.1\r\n" + block, 4096, max_fields=2)
    with pytest.raises(HttpError) as caught:
        parse_request_head(b"POST / HTTP/2.0\r\n" + block, 4096)
    assert caught.value.status == 505
