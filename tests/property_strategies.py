"""Hypothesis strategies that build near-valid inputs for the readers (a random byte string
rarely gets past a request line): requests, uwsgi packets, INI files and zerg handshakes, with
mutations. Each returns the bytes that tests/fuzz_targets.py's targets take."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from uzerg.zerg.handshake import MAGIC

_METHODS = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "CONNECT", "DELETE", "G T", "", "GET\x00"]
_TARGETS = ["/", "/a/b?x=1", "*", "http://h/p?q", "HTTPS://h:1", "h:443", "foo/bar", "/p#frag",
            "#f", "/\xc3\xa0%20k", "/%zz%", "http://u@h/", "http:///", "/a b", "?q"]
_VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.", ""]
_FIELDS = ["Host: h", "Host: h2", "Content-Length: 3", "Content-Length: 03",
           "Content-Length: -1", "Content-Length: 99999999999999999999",
           "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked",
           "Transfer-Encoding: chunked, gzip", "Transfer-Encoding: identity",
           "Transfer-Encoding: ,", "Content-Type: a", "Authorization: x", "Connection: close",
           "Connection: keep-alive", "Expect: 100-continue", "X-A: b", "X-A:", " folded",
           "Bad Name: v", "X-C: \x01", "X-D: \xff\xfe", ": empty", "X_E: under"]
_CHUNKS = ["3\r\nabc\r\n", "0\r\n\r\n", "0\r\nX-T: 1\r\n\r\n", "0\r\nContent-Length: 1\r\n\r\n",
           "5;a=b\r\nhello\r\n", "5;\r\nhello\r\n", "zz\r\n", "3\r\nabcdefgh\r\n", "8\r\nabc\r\n",
           "FFFFFFFFFFFFFFFFF\r\n", "3\nabc\n", "a\r\n0123456789\r\n", "abc", "\r\n"]


@st.composite
def http_streams(draw: st.DrawFn) -> bytes:
    """A control byte, then one to three requests (heads from tricky parts, bodies from chunk
    frames or raw bytes), sometimes with LF line ends, sometimes with a few bytes changed."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 3))):
        eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n", "\r"]))
        # mostly well-formed parts, so that the bodies and later requests get reached
        line = " ".join((draw(st.sampled_from(["GET", "POST"] * 4 + _METHODS)),
                         draw(st.sampled_from(["/"] * 8 + _TARGETS)),
                         draw(st.sampled_from(["HTTP/1.1"] * 12 + _VERSIONS))))
        fields = draw(st.lists(st.sampled_from(["X-A: b"] * 6 + _FIELDS), max_size=6))
        fields.insert(draw(st.integers(0, len(fields))), "Host: h")
        head = eol.join([line, *fields]) + eol + eol
        body = "".join(draw(st.lists(st.sampled_from(_CHUNKS), max_size=5)))
        out += (head + body).encode("latin-1") + draw(st.binary(max_size=8))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if out:
            pos = draw(st.integers(0, len(out) - 1))
            out[pos] = draw(st.integers(0, 255))
    return bytes([draw(st.integers(0, 255))]) + bytes(out)


@st.composite
def uwsgi_streams(draw: st.DrawFn) -> bytes:
    """A control byte, then a uwsgi packet: vars (sometimes with lying sizes), a header that
    may lie about the block size or modifier, then body bytes."""
    block = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.binary(min_size=1, max_size=12))
        value = draw(st.binary(max_size=24))
        key_size = draw(st.sampled_from([len(key)] * 20 + [0, len(key) + 3, 65535]))
        value_size = draw(st.sampled_from([len(value)] * 20 + [len(value) + 1, 65535]))
        block += struct.pack("<H", key_size) + key + struct.pack("<H", value_size) + value
        # (mostly honest sizes: a lie is found at once, honest packets reach the vars loop)
    size = draw(st.sampled_from([len(block)] * 4 + [len(block) + 2, max(len(block) - 1, 0),
                                                   65535, 4097]))
    modifier1 = draw(st.sampled_from([0, 0, 0, 30, 5, 255]))
    packet = bytes([modifier1]) + struct.pack("<H", size) + bytes([0]) + bytes(block)
    return bytes([draw(st.integers(0, 255))]) + packet + draw(st.binary(max_size=16))


_INI_LINES = ["[uwsgi]", "[other]", "[", "]", "socket = :3031", "key=value", "= no key",
              "processes = %k", "x = %(unknown)", "a = %", "b = %%", "c = %d%n%x%p%s%0",
              "d = $(HOME)", "e = @(/nonexistent)", "; comment", "# comment", "  indented = 1",
              "\ufeffbom = 1", "e = \udcff", "f = caf\u00e9", "g = %\\", "include = x.ini"]


@st.composite
def ini_files(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(_INI_LINES) | st.text(max_size=20), max_size=12))
    text = draw(st.sampled_from(["\n", "\r\n", "%\n"])).join(lines)
    data = text.encode("utf-8", "surrogateescape")
    return data + draw(st.binary(max_size=6))


@st.composite
def zerg_handshakes(draw: st.DrawFn) -> bytes:
    """Messages for fuzz_targets.zerg_receiver: a descriptor kind byte, then a header (right,
    lying or garbled), sometimes a hint line."""
    messages = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 4))
        count = draw(st.sampled_from([1, 2, 0, -1, 65537, 3]))
        magic = draw(st.sampled_from([MAGIC] * 4 + [b"uwsgi-zerX", b""]))
        header = (magic + struct.pack("=i", count))[: draw(st.sampled_from([14, 14, 14, 3]))]
        hint = draw(st.sampled_from([b"", b"", b'{"uzerg":1,"protocols":["http"]}\n',
                                     b'{"uzerg":1,"protocols":[1]}\n', b"[[[[\n", b"{"]))
        messages.append(bytes([kind]) + header + hint)
    return b"\xff\xfe".join(messages)
