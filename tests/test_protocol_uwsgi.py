"""The sans-I/O uwsgi packet reader against the fixture corpus, in any chunking."""

from __future__ import annotations

from typing import Any

import pytest
from fixture_corpus import chunkings, corpus

from uzerg.protocols.uwsgi import (
    UwsgiPacket,
    UwsgiPacketReader,
    UwsgiProtocolError,
    encode_uwsgi_packet,
    parse_uwsgi_header,
    parse_uwsgi_packet,
)

VALID = corpus("uwsgi", "valid", ".uwsgi")
INVALID = corpus("uwsgi", "invalid", ".uwsgi")


def read_packet(pieces: list[bytes], max_block: int = 4096) -> UwsgiPacket:
    reader = UwsgiPacketReader(max_block)
    packet = None
    for i, piece in enumerate(pieces):
        packet = reader.feed(piece)
        if packet is not None:
            rest = b"".join(pieces[i + 1 :])
            return UwsgiPacket(packet.modifier1, packet.modifier2, packet.datasize, packet.vars,
                               packet.var_count, packet.body_prefix + rest)
    raise AssertionError("packet never completed")


@pytest.mark.parametrize("name,raw,expected", VALID, ids=[v[0] for v in VALID])
def test_valid_packets(name: str, raw: bytes, expected: Any):
    for how, pieces in chunkings(raw):
        packet = read_packet(pieces)
        assert packet.modifier1 == 0, how
        assert packet.vars == expected["vars"], how
        assert packet.modifier2 == expected["modifier2"], how
        assert packet.body_prefix.decode("latin-1") == expected["body_prefix"], how
        assert packet.datasize == len(raw) - 4 - len(packet.body_prefix)


@pytest.mark.parametrize("name,raw,expected", INVALID, ids=[v[0] for v in INVALID])
def test_invalid_packets(name: str, raw: bytes, expected: Any):
    for how, pieces in chunkings(raw):
        with pytest.raises(UwsgiProtocolError) as info:
            read_packet(pieces, expected["max_block"])
        assert str(info.value) == expected["message"], how


def test_corpus_is_not_empty():
    assert len(VALID) >= 8 and len(INVALID) >= 7


def test_header_fields():
    assert parse_uwsgi_header(b"\x00\x34\x12\x07") == (0, 0x1234, 7)


def test_incomplete_packets_need_more_bytes():
    raw = encode_uwsgi_packet({"PATH_INFO": "/x"})
    for cut in range(len(raw)):
        assert parse_uwsgi_packet(raw[:cut], 4096) is None


def test_var_count_counts_items():
    packet = parse_uwsgi_packet(encode_uwsgi_packet([("A", "1"), ("B", "2"), ("A", "3")]), 4096)
    assert packet is not None
    assert packet.var_count == 3
    assert packet.vars == {"A": "3", "B": "2"}


def test_block_at_the_limit_is_accepted():
    raw = encode_uwsgi_packet({"K": "v" * 95})  # 2+1+2+95 = 100 bytes of vars
    assert parse_uwsgi_packet(raw, 100) is not None
    with pytest.raises(UwsgiProtocolError, match=r"invalid request block size: 100 \(max 99\)"):
        parse_uwsgi_packet(raw, 99)


def test_reader_caps_the_block_at_65535():
    assert UwsgiPacketReader(100000).max_block == 65535


def test_encode_refuses_oversized_blocks():
    with pytest.raises(ValueError):
        encode_uwsgi_packet({"K": "v" * 70000})


def test_a_bad_block_is_refused_every_time():
    raw = b"\x00\x05\x00\x00" + b"\x01\x00K\x09\x00"  # the value's length runs past the block
    for _ in range(3):
        with pytest.raises(UwsgiProtocolError, match="current strsize: 9"):
            parse_uwsgi_packet(raw, 4096)


def _reference_vars(block: bytes) -> tuple[dict[str, str], int] | str:
    """A plain item-by-item reader with every check in place: the vars, or the error."""
    result: dict[str, str] = {}
    pos = count = 0
    while pos < len(block):
        if pos + 2 > len(block):
            return f"invalid uwsgi request (current strsize: {len(block) - pos}). skip."
        keylen = int.from_bytes(block[pos : pos + 2], "little")
        if keylen == 0:
            return "uwsgi key cannot be null. skip this var."
        vpos = pos + 2 + keylen
        if vpos + 2 > len(block):
            size = keylen if vpos > len(block) else len(block) - vpos
            return f"invalid uwsgi request (current strsize: {size}). skip."
        vallen = int.from_bytes(block[vpos : vpos + 2], "little")
        if vpos + 2 + vallen > len(block):
            return f"invalid uwsgi request (current strsize: {vallen}). skip."
        result[block[pos + 2 : vpos].decode("latin-1")] = \
            block[vpos + 2 : vpos + 2 + vallen].decode("latin-1")
        pos = vpos + 2 + vallen
        count += 1
    return result, count


def test_mangled_blocks_give_the_first_bad_items_error():
    import random

    from uzerg.protocols.uwsgi import parse_uwsgi_vars

    good = encode_uwsgi_packet([("QUERY_STRING", ""), ("REQUEST_METHOD", "GET"),
                                ("A", "\xe9t\xe9"), ("PATH_INFO", "/x"), ("B", "")])[4:]
    rng = random.Random(13)
    blocks = [good[:cut] for cut in range(len(good))]
    blocks += [b"\x00\x00\x01\x00" + good, good + b"\x00\x00\x05\x00abc", good + b"\x01"]
    for _ in range(3000):
        block = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            block[rng.randrange(len(block))] = rng.choice((0, 1, 2, 255, rng.randrange(256)))
        blocks.append(bytes(block))
    for block in blocks:
        try:
            got: Any = parse_uwsgi_vars(block)
        except UwsgiProtocolError as exc:
            got = str(exc)
        assert got == _reference_vars(block), block
