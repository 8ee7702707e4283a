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
