"""The per-request shortcuts of the worker's path (issue 13) give what the long way gives:
the last uwsgi packet compared instead of hashed, disable-write-exception set where each
Response is made, the core's counters kept as ints and stored as scoreboard items."""

from __future__ import annotations

import socket
from typing import Any

from config_helpers import make_config
from request_helpers import exchange, logs_fixture  # noqa: F401

from uzerg.processes.scoreboard import (
    READ_ERRORS,
    REQUESTS,
    RUNNING_TIME,
    TX,
    Scoreboard,
)
from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.serve.connection import Connection
from uzerg.serve.request import RequestHandler


def _recording_app(seen: list[dict[str, Any]]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        body = environ["wsgi.input"].read()
        environ["MUTATED"] = "yes"  # must not reach the next request's environ
        environ["PATH_INFO"] = "/changed"
        start_response("200 OK", [("Content-Length", str(2 + len(body)))])
        return [b"ok" + body]

    return app


def test_a_repeated_uwsgi_packet_gets_its_own_peer_and_a_private_environ(logs):
    seen: list[dict[str, Any]] = []
    handler = RequestHandler(_recording_app(seen), make_config(), 1)
    packet = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/a",
                                  "SERVER_PROTOCOL": "HTTP/1.1"})
    for port in (1001, 1002, 1003, 1004):
        reply, counts = exchange(handler, packet, "uwsgi", peer=("192.0.2.7", port))
        assert reply.endswith(b"\r\n\r\nok") and counts.requests == 1
    # from its second time the packet is kept whole, and compared (no lookup) after that
    assert handler._last_packet[0] == packet
    assert [env["REMOTE_PORT"] for env in seen] == ["1001", "1002", "1003", "1004"]
    assert all(env["REMOTE_ADDR"] == "192.0.2.7" for env in seen)
    assert all(env["PATH_INFO"] == "/a" and "MUTATED" not in env for env in seen)
    # another packet after it: its own environ, and it becomes the one compared
    other = encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/b",
                                 "REMOTE_ADDR": "198.51.100.1", "REMOTE_PORT": "9"})
    for _ in range(3):
        exchange(handler, other, "uwsgi", peer=("192.0.2.7", 5000))
    assert [env["PATH_INFO"] for env in seen[4:]] == ["/b"] * 3
    assert all(env["REMOTE_ADDR"] == "198.51.100.1" for env in seen[4:])
    assert handler._last_packet[0] == other
    exchange(handler, packet, "uwsgi", peer=("192.0.2.8", 7))
    assert seen[-1]["PATH_INFO"] == "/a" and seen[-1]["REMOTE_ADDR"] == "192.0.2.8"


def test_a_uwsgi_packet_with_body_bytes_is_not_kept_as_the_last_packet(logs):
    seen: list[dict[str, Any]] = []
    handler = RequestHandler(_recording_app(seen), make_config(), 1)
    packet = encode_uwsgi_packet({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5",
                                  "PATH_INFO": "/p"}, b"hello")
    for _ in range(3):
        reply, _ = exchange(handler, packet, "uwsgi")
        assert reply.endswith(b"\r\n\r\nokhello")
    assert handler._last_packet[0] is None
    assert [env["CONTENT_LENGTH"] for env in seen] == ["5"] * 3


def _write_name_app(names: list[str]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        names.append(start_response("200 OK", [("Content-Length", "2")]).__name__)
        return [b"ok"]

    return app


def test_disable_write_exception_reaches_every_response_path(logs):
    for disabled, expected in ((True, "write_quietly"), (False, "write")):
        names: list[str] = []
        handler = RequestHandler(_write_name_app(names),
                                 make_config(disable_write_exception=disabled), 1)
        exchange(handler, encode_uwsgi_packet({"PATH_INFO": "/"}), "uwsgi")
        exchange(handler, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # the head-only path
        # a body: the parser's path
        exchange(handler, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab")
        assert names == [expected] * 3


def test_a_plain_connection_has_no_tls_fields() -> None:
    left, right = socket.socketpair()
    try:
        assert Connection(left, 1.0).tls is None
    finally:
        left.close()
        right.close()


def test_a_core_tally_goes_on_from_the_slot_and_stores_what_it_counts() -> None:
    board = Scoreboard(2, 2)
    try:
        slot = board.core(2, 1)
        slot.requests, slot.tx, slot.running_time, slot.read_errors = 7, 700, 70, 1
        tally = board.core_tally(2, 1)
        assert (tally.requests, tally.tx, tally.running_time, tally.read_errors) == \
            (7, 700, 70, 1)
        assert tally.counters[REQUESTS] == 7 and tally.counters[TX] == 700
        assert tally.counters[RUNNING_TIME] == 70 and tally.counters[READ_ERRORS] == 1
        tally.requests += 2
        tally.exceptions += 1
        tally.static_requests += 3
        tally.write()
        assert (slot.requests, slot.exceptions, slot.static_requests, slot.tx) == (9, 1, 3, 700)
        tally.add_seldom(2, 0, 4)
        assert (slot.exceptions, slot.static_requests, slot.read_errors) == (3, 3, 5)
        assert (tally.exceptions, tally.static_requests, tally.read_errors) == (3, 3, 5)
        tally.request_start[0] = 12.5
        assert slot.request_start == 12.5 and board.busy_since(2) == 12.5
        # the other cores' slots are untouched
        assert board.core(2, 0).requests == 0 and board.core(1, 1).requests == 0
    finally:
        board.close()


def _cgi(environ: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in environ.items() if not key.startswith(("wsgi.", "uwsgi."))}


def test_a_packet_like_the_last_templates_but_for_its_port_is_that_template(logs):
    """A packet of the last template's size with its bytes around the REMOTE_PORT value is
    the template's environ with that value (compared in place, no hash); a byte changed
    anywhere else, or the header's modifier, is another packet: the reference reader's."""
    from uzerg.protocols.uwsgi import UwsgiProtocolError, parse_uwsgi_vars

    seen: list[dict[str, Any]] = []
    handler = RequestHandler(_recording_app(seen), make_config(), 1)
    items = [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/t"), ("SERVER_PROTOCOL", "HTTP/1.1"),
             ("REMOTE_ADDR", "192.0.2.1"), ("REMOTE_PORT", "50000"), ("HTTP_HOST", "h")]

    def packet(port: str) -> bytes:
        return encode_uwsgi_packet([(k, port if k == "REMOTE_PORT" else v) for k, v in items])

    exchange(handler, packet("50000"), "uwsgi")
    exchange(handler, packet("50001"), "uwsgi")
    assert handler._near_packet[0] == len(packet("50001"))  # the template is the near packet
    assert _cgi(seen[-1]) == dict(_cgi(seen[0]), REMOTE_PORT="50001")
    raw = packet("50002")
    value = raw.index(b"50002")
    for where in (0, 3, 6, value - 3, value - 2, value - 1, value + 5, len(raw) - 1):
        changed = raw[:where] + bytes([raw[where] ^ 0x21]) + raw[where + 1:]
        before = len(seen)
        reply, _ = exchange(handler, changed, "uwsgi", peer=("198.51.100.9", 9))
        try:
            if changed[0] != 0:
                raise UwsgiProtocolError("modifier1")
            expected, _count = parse_uwsgi_vars(changed[4:], {"SCRIPT_NAME": ""})
        except UwsgiProtocolError:
            assert len(seen) == before, where  # refused: the app did not run
            continue
        expected.setdefault("REMOTE_ADDR", "198.51.100.9")
        if expected["REMOTE_ADDR"] == "198.51.100.9":
            expected["REMOTE_PORT"] = "9"
        assert _cgi(seen[-1]) == expected, where
    # a changed byte inside the value is another port of the same template
    inside = raw[:value + 1] + b"7" + raw[value + 2:]
    exchange(handler, inside, "uwsgi")
    assert _cgi(seen[-1]) == dict(_cgi(seen[0]), REMOTE_PORT="57002")
    # the template's own packet, seen again, is kept whole and then compared whole
    exchange(handler, packet("50000"), "uwsgi")
    exchange(handler, packet("50000"), "uwsgi")
    exchange(handler, packet("50000"), "uwsgi")
    assert handler._last_packet[0] == packet("50000")
    assert _cgi(seen[-1]) == _cgi(seen[0]) and "MUTATED" not in seen[-1]


def test_packets_through_the_near_packet_give_the_reference_readers_environ(logs):
    """Random packets (a few shapes, REMOTE_PORT values of every length, bytes changed):
    what the app sees is parse_uwsgi_vars's, whichever shortcut served it."""
    import random

    from uzerg.protocols.uwsgi import UwsgiProtocolError, parse_uwsgi_vars

    rng = random.Random(11)
    seen: list[dict[str, Any]] = []
    handler = RequestHandler(_recording_app(seen), make_config(), 1)
    shapes = [[("REQUEST_METHOD", "GET"), ("PATH_INFO", p), ("REMOTE_ADDR", "192.0.2.1"),
               ("REMOTE_PORT", "1"), ("HTTP_X", x)] for p in ("/", "/a") for x in ("", "y")]
    shape = shapes[0]
    near_hits = 0
    for _ in range(400):
        if rng.random() < 0.3:
            shape = rng.choice(shapes)
        port = str(rng.choice((rng.randint(1000, 9999), rng.randint(0, 70000))))
        raw = encode_uwsgi_packet([(k, port if k == "REMOTE_PORT" else v) for k, v in shape])
        if rng.random() < 0.15:
            where = rng.randrange(len(raw))
            raw = raw[:where] + bytes([rng.randrange(256)]) + raw[where + 1:]
        near = handler._near_packet
        before = len(seen)
        exchange(handler, raw, "uwsgi", peer=("198.51.100.9", 9))
        try:
            end = 4 + (raw[1] | raw[2] << 8)  # (bytes after it: a body's, CONTENT_LENGTH's)
            if raw[0] != 0 or end > len(raw):
                raise UwsgiProtocolError("header")
            expected, _count = parse_uwsgi_vars(raw[4:end], {"SCRIPT_NAME": ""})
        except UwsgiProtocolError:
            assert len(seen) == before
            continue
        if "REMOTE_ADDR" not in expected:
            expected["REMOTE_ADDR"], expected["REMOTE_PORT"] = "198.51.100.9", "9"
        assert _cgi(seen[-1]) == expected
        near_hits += len(raw) == near[0] and raw.startswith(near[1]) and raw.endswith(near[2])
    assert near_hits > 100  # (the shortcut was taken)
