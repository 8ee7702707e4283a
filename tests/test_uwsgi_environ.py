"""The environ of uwsgi requests, and its cache of vars blocks seen before."""

from __future__ import annotations

import pytest

from uzerg.protocols.uwsgi import UwsgiProtocolError, encode_uwsgi_packet
from uzerg.serve import uwsgi_environ
from uzerg.serve.uwsgi_environ import UwsgiEnvirons

BASE = {"wsgi.url_scheme": "http", "SCRIPT_NAME": ""}
PEER = ("10.0.0.9", 41000)


def block(*items: tuple[str, str]) -> bytes:
    return encode_uwsgi_packet(list(items))[4:]


def test_a_block_seen_again_gives_the_same_environ_and_a_private_copy():
    environs = UwsgiEnvirons(BASE)
    raw = block(("PATH_INFO", "/x"), ("A", "1"), ("A", "2"), ("HTTPS", "on"),
                ("CONTENT_LENGTH", "12"), ("REQUEST_METHOD", "HEAD"))
    expected = {"wsgi.url_scheme": "https", "SCRIPT_NAME": "", "PATH_INFO": "/x", "A": "2",
                "HTTPS": "on", "CONTENT_LENGTH": "12", "REQUEST_METHOD": "HEAD",
                "REMOTE_ADDR": "10.0.0.9", "REMOTE_PORT": "41000"}
    results = []
    for _ in range(4):  # decoded, decoded and kept, then from the cache twice
        env, count, length, protocol, is_head = environs.build(raw, PEER)
        assert (env, count, length, protocol, is_head) == (expected, 6, 12, "HTTP/1.0", True)
        results.append(env)
        env["PATH_INFO"] = "/changed by the app"
        env["wsgi.input"] = object()
    assert len(environs.cache) == 1
    assert len({id(env) for env in results}) == 4
    assert BASE == {"wsgi.url_scheme": "http", "SCRIPT_NAME": ""}
    # the peer is the connection's, not the one the block was first seen with
    assert environs.build(raw, ("10.0.0.7", 5))[0]["REMOTE_ADDR"] == "10.0.0.7"
    assert "REMOTE_ADDR" not in environs.build(raw, "/tmp/unix.sock")[0]


def test_the_packets_own_remote_addr_wins():
    environs = UwsgiEnvirons(BASE)
    raw = block(("REMOTE_ADDR", "1.2.3.4"), ("REMOTE_PORT", "80"), ("UWSGI_SCHEME", "https"))
    for _ in range(3):
        env = environs.build(raw, PEER)[0]
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["wsgi.url_scheme"]) == \
            ("1.2.3.4", "80", "https")


def test_the_cache_is_bounded_and_skips_large_blocks():
    environs = UwsgiEnvirons(BASE)
    large = block(("K", "v" * uwsgi_environ.CACHED_BLOCK_MAX))
    for _ in range(3):
        assert environs.build(large, PEER)[0]["K"] == "v" * uwsgi_environ.CACHED_BLOCK_MAX
    assert not environs.cache and not environs._seen
    for i in range(uwsgi_environ.CACHE_MAX + 10):
        for _ in range(2):
            assert environs.build(block(("N", str(i))), PEER)[0]["N"] == str(i)
        assert len(environs.cache) <= uwsgi_environ.CACHE_MAX
        assert len(environs._seen) <= uwsgi_environ.CACHE_MAX
    assert environs.cache


def test_a_bad_block_is_refused_every_time():
    environs = UwsgiEnvirons(BASE)
    raw = b"\x01\x00K\x09\x00"  # the value's length runs past the block
    for _ in range(3):
        with pytest.raises(UwsgiProtocolError, match="current strsize: 9"):
            environs.build(raw, PEER)
    assert not environs.cache


def test_items_shared_with_the_last_block_decode_as_the_reference_reader_does():
    """Blocks that differ from the one before in a few items (leading and trailing items are
    taken from the last block, not decoded again), mangled ones too: the same environ, count
    and error as parse_uwsgi_vars on the block alone."""
    import random

    from uzerg.protocols.uwsgi import parse_uwsgi_vars

    rng = random.Random(13)
    names = ["QUERY_STRING", "REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "REMOTE_ADDR",
             "REMOTE_PORT", "SERVER_NAME", "HTTP_HOST", "HTTP_COOKIE", "A", "A", ""]
    environs = UwsgiEnvirons(BASE)
    items = [(name, "v") for name in names[:8]]
    for _ in range(3000):
        items = list(items)
        for _ in range(rng.randint(1, 3)):  # a few changes: values, items added or dropped
            what = rng.random()
            where = rng.randrange(len(items) + 1)
            if what < 0.6 and items:
                where = min(where, len(items) - 1)
                items[where] = (items[where][0], rng.choice(["", "x", "1" * rng.randint(1, 300)]))
            elif what < 0.8 or not items:
                items.insert(where, (rng.choice(names), str(rng.randint(0, 99999))))
            else:
                del items[min(where, len(items) - 1)]
        raw = block(*items)
        if rng.random() < 0.1:  # mangled: cut short, or a byte changed
            cut = rng.randrange(len(raw) + 1)
            raw = raw[:cut] if rng.random() < 0.5 else \
                raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1 :]
        try:
            expected = parse_uwsgi_vars(raw, dict(BASE))
        except UwsgiProtocolError as exc:
            with pytest.raises(UwsgiProtocolError) as caught:
                environs._decode_vars(raw)
            assert str(caught.value) == str(exc)
            continue
        got = environs._decode_vars(raw)
        assert got == expected
        assert list(got[0]) == list(expected[0])  # the same order too
        if not raw or rng.random() < 0.05:
            items = [(name, "v") for name in names[:8]]


NGINX_ITEMS = [("QUERY_STRING", ""), ("REQUEST_METHOD", "GET"), ("CONTENT_TYPE", ""),
               ("CONTENT_LENGTH", ""), ("REQUEST_URI", "/"), ("PATH_INFO", "/"),
               ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "127.0.0.1"),
               ("REMOTE_PORT", "50000"), ("SERVER_PORT", "80"), ("HTTP_HOST", "h")]


def _with_port(port: str, items: list[tuple[str, str]] = NGINX_ITEMS) -> bytes:
    return block(*[(key, port if key == "REMOTE_PORT" and value == "50000" else value)
                   for key, value in items])


def test_blocks_that_differ_in_remote_port_only_come_from_a_template():
    environs = UwsgiEnvirons(BASE)
    first = environs.build(_with_port("50000"), PEER)
    assert len(environs.templates) == 1
    for port in ("50001", "1", "654321", ""):
        raw = _with_port(port)
        env, count, length, protocol, is_head = environs.build(raw, PEER)
        expected = dict(first[0], REMOTE_PORT=port)
        assert env == expected and list(env) == list(expected)  # the same order too
        assert (count, length, protocol, is_head) == (11, 0, "HTTP/1.1", False)
        env["REQUEST_URI"] = "/changed by the app"
    assert not environs.cache  # each seen once: none kept whole
    # the template gave them: it is still the first block's environ
    assert environs.templates[_with_port("")][0]["REQUEST_URI"] == "/"
    assert environs.build(_with_port("7"), PEER)[0]["REQUEST_URI"] == "/"


def test_no_template_where_the_bytes_are_not_the_only_remote_port_item():
    environs = UwsgiEnvirons(BASE)
    # inside a value, before the real item: the template would take the header's bytes
    inside = [("HTTP_X", "\x0b\x00REMOTE_PORT\x05\x0012345"), *NGINX_ITEMS]
    # a second REMOTE_PORT item after the first wins in the environ
    twice = [*NGINX_ITEMS, ("REMOTE_PORT", "9")]
    # no REMOTE_ADDR in the block: the connection's peer gives both
    no_addr = [item for item in NGINX_ITEMS if item[0] != "REMOTE_ADDR"]
    for items in (inside, twice, no_addr):
        environs.build(_with_port("50000", items), PEER)
        assert not environs.templates
    assert environs.build(_with_port("50001", inside), PEER)[0]["REMOTE_PORT"] == "50001"
    assert environs.build(_with_port("50001", twice), PEER)[0]["REMOTE_PORT"] == "9"
    assert environs.build(_with_port("50001", no_addr), PEER)[0]["REMOTE_PORT"] == "41000"


def test_templates_give_what_the_reference_reader_gives():
    """Random blocks around a few templates (the REMOTE_PORT item moved, repeated, inside
    values, blocks cut short or with a byte changed): each build() is parse_uwsgi_vars's
    environ (or error), whatever the templates held."""
    import random

    from uzerg.protocols.uwsgi import parse_uwsgi_vars

    rng = random.Random(7)
    port_bytes = "\x0b\x00REMOTE_PORT"
    values = ["", "1", "50000", "127.0.0.1", port_bytes + "\x02\x00", port_bytes + "\x05\x00abc"]
    names = ["REMOTE_PORT", "REMOTE_ADDR", "A", "HTTP_X", "REQUEST_METHOD", "REQUEST_URI"]
    shapes = [NGINX_ITEMS] + [
        [(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(1, 6))]
        for _ in range(30)
    ]
    environs = UwsgiEnvirons(BASE)
    hits = 0
    shape = shapes[0]
    for _ in range(6000):
        if rng.random() < 0.5:  # else the same shape again: the last template's turn
            shape = rng.choice(shapes)
        items = [(key, str(rng.randint(0, 70000)) if key == "REMOTE_PORT" and rng.random() < 0.7
                  else value) for key, value in shape]
        raw = block(*items)
        if rng.random() < 0.1:
            cut = rng.randrange(len(raw) + 1)
            raw = raw[:cut] if rng.random() < 0.5 else \
                raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1 :]
        last = environs._last  # the block decoded last: unchanged when none is decoded
        try:
            env, count = parse_uwsgi_vars(raw, dict(BASE))
        except UwsgiProtocolError as exc:
            with pytest.raises(UwsgiProtocolError) as caught:
                environs.build(raw, PEER)
            assert str(caught.value) == str(exc)
            continue
        if "REMOTE_ADDR" not in env:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = PEER[0], str(PEER[1])
        got = environs.build(raw, PEER)
        assert got[0] == env and list(got[0]) == list(env)
        assert got[1] == count
        hits += environs._last is last and raw not in environs.cache
        assert len(environs.templates) <= uwsgi_environ.CACHE_MAX
    assert hits > 300  # (the templates were used)
