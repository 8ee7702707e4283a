"""uwsgi protocol packet reader (SPEC §7), sans-I/O: bytes in, a parsed packet or an error out.

A packet is a 4-byte header (modifier1 u8, datasize u16 LE, modifier2 u8), then `datasize` bytes
of vars (`[u16 LE keylen][key][u16 LE vallen][val]` repeated), then the body (CONTENT_LENGTH
bytes) on the same stream. Error messages keep uWSGI 2.0's wording.
"""

from __future__ import annotations

from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER_SIZE = 4
MAX_BLOCK_SIZE = 65535


class UwsgiProtocolError(Exception):
    """A packet that must be dropped: the message is the log line; no response is sent."""


@record(slots=True)
class UwsgiPacket:
    modifier1: int
    modifier2: int
    datasize: int
    # CGI variables, decoded as latin-1 (PEP 3333 "native strings"); a repeated key: last wins.
    vars: dict[str, Any]
    var_count: int
    # bytes that followed the vars block in the input: the start of the body
    body_prefix: bytes

    # one per request: written out, as dataclass compiles it (record's is generic, slower)
    def __init__(self, modifier1: int, modifier2: int, datasize: int, vars: dict[str, Any],  # noqa: A002
                 var_count: int, body_prefix: bytes) -> None:
        self.modifier1 = modifier1
        self.modifier2 = modifier2
        self.datasize = datasize
        self.vars = vars
        self.var_count = var_count
        self.body_prefix = body_prefix


def parse_uwsgi_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(modifier1, datasize, modifier2) of the first 4 bytes."""
    return data[0], data[1] | (data[2] << 8), data[3]


def parse_uwsgi_vars(
    block: bytes, into: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    """Decode a vars block into (dict, number of items); `into`: a dict to add them to (a
    copy of the environ's fixed part saves building and merging a second one). Raises
    UwsgiProtocolError."""
    return _decode_vars(block, {} if into is None else into)


def _decode_vars(block: bytes, result: dict[str, Any]) -> tuple[dict[str, Any], int]:
    # one latin-1 decode of the whole block, then str slices: a byte is a character, so the
    # offsets are the same, and it saves two decode() calls per variable. No check per item:
    # a length past the block raises IndexError or ends the loop past its end, a null key
    # leaves "" in the dict; a bad block is walked again by _first_error for the message.
    text = block.decode("latin-1")
    count = 0
    pos = 0
    end = len(block)
    try:
        while pos < end:
            key = pos + 2
            vpos = key + block[pos] + (block[pos + 1] << 8)
            pos = vpos + 2 + block[vpos] + (block[vpos + 1] << 8)
            result[text[key:vpos]] = text[vpos + 2 : pos]
            count += 1
    except IndexError:
        pos = -1
    if pos != end or "" in result:
        raise _first_error(block)
    return result, count


def _first_error(block: bytes) -> UwsgiProtocolError:
    """The error for the first bad item of a block (the one uWSGI stops at)."""
    pos = 0
    end = len(block)
    while pos < end:
        key = pos + 2
        try:
            vpos = key + block[pos] + (block[pos + 1] << 8)
            next_pos = vpos + 2 + block[vpos] + (block[vpos + 1] << 8)
        except IndexError:
            break
        if next_pos > end or vpos == key:
            break
        pos = next_pos
    return _vars_error(block, pos)


def _vars_error(block: bytes, pos: int) -> UwsgiProtocolError:
    """The error for the bad item at `pos` (uWSGI 2.0's wording)."""
    end = len(block)
    if pos + 2 > end:
        return UwsgiProtocolError(f"invalid uwsgi request (current strsize: {end - pos}). skip.")
    keylen = block[pos] | (block[pos + 1] << 8)
    if keylen == 0:
        return UwsgiProtocolError("uwsgi key cannot be null. skip this var.")
    vpos = pos + 2 + keylen
    if vpos + 2 > end:
        size = keylen if vpos > end else end - vpos
        return UwsgiProtocolError(f"invalid uwsgi request (current strsize: {size}). skip.")
    vallen = block[vpos] | (block[vpos + 1] << 8)
    return UwsgiProtocolError(f"invalid uwsgi request (current strsize: {vallen}). skip.")


def parse_uwsgi_packet(
    data: bytes | bytearray, max_block: int, into: dict[str, Any] | None = None
) -> UwsgiPacket | None:
    """Parse a packet from the start of `data`; None when more bytes are needed. The vars go
    into `into` when given (see parse_uwsgi_vars); it is left alone until the packet is whole.

    Raises UwsgiProtocolError for a packet to drop (oversized block, bad modifier, bad vars).
    """
    end = uwsgi_vars_end(data, max_block)
    if end < 0:
        return None
    env, count = parse_uwsgi_vars(bytes(data[HEADER_SIZE:end]), into)
    return UwsgiPacket(data[0], data[3], end - HEADER_SIZE, env, count, bytes(data[end:]))


def uwsgi_vars_end(data: bytes | bytearray, max_block: int) -> int:
    """Where the vars block of the packet at the start of `data` ends (it starts at 4); -1
    when more bytes are needed. Raises UwsgiProtocolError for an oversized block or a bad
    modifier1 (the vars are not checked: parse_uwsgi_vars does)."""
    if len(data) < HEADER_SIZE:
        return -1
    datasize = data[1] | (data[2] << 8)
    if datasize > max_block:
        raise UwsgiProtocolError(
            f"invalid request block size: {datasize} (max {max_block})...skip"
        )
    end = HEADER_SIZE + datasize
    if len(data) < end:
        return -1
    # 30 (MANAGE_PATH_INFO, nginx `uwsgi_modifier1 30;` in old recipes) is served as WSGI by
    # uWSGI 2.0 on Python 3, with PATH_INFO left as sent: do the same
    modifier1 = data[0]
    if modifier1 != 0 and modifier1 != 30:
        raise UwsgiProtocolError(f"-- unavailable modifier requested: {modifier1} --")
    return end


class UwsgiPacketReader:
    """Incremental reader (the request path's): `feed()` bytes as they arrive; returns the
    packet once complete, None until then. What it holds is bounded by the header plus
    `max_block`: a larger block is refused from its 4-byte header. The vars go into `into`
    when given (see parse_uwsgi_vars), only once the packet is complete."""

    __slots__ = ("max_block", "_buf")

    def __init__(self, max_block: int = 4096) -> None:
        self.max_block = max_block if max_block < MAX_BLOCK_SIZE else MAX_BLOCK_SIZE
        self._buf = b""

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet (at most 4 + max_block)."""
        return len(self._buf)

    def feed(self, data: bytes, into: dict[str, Any] | None = None) -> UwsgiPacket | None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        packet = parse_uwsgi_packet(data, self.max_block, into)
        if packet is None:
            self._buf = data
        return packet


def encode_uwsgi_packet(
    env: dict[str, str] | list[tuple[str, str]], body: bytes = b"", modifier1: int = 0,
    modifier2: int = 0,
) -> bytes:
    """Build a request packet (for clients and tests)."""
    items = env.items() if isinstance(env, dict) else env
    block = bytearray()
    for key, value in items:
        kb, vb = key.encode("latin-1"), value.encode("latin-1")
        if len(kb) > MAX_BLOCK_SIZE or len(vb) > MAX_BLOCK_SIZE:
            raise ValueError(f"uwsgi var {key!r} too large")
        block += len(kb).to_bytes(2, "little") + kb + len(vb).to_bytes(2, "little") + vb
    if len(block) > MAX_BLOCK_SIZE:
        raise ValueError(f"uwsgi vars block too large: {len(block)} bytes")
    return bytes([modifier1]) + len(block).to_bytes(2, "little") + bytes([modifier2]) + block + body
