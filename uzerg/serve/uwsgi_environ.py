"""The environ of a uwsgi protocol request: the fixed variables, the packet's, and what
follows from them (wsgi.url_scheme from UWSGI_SCHEME/HTTPS, the body's length, the response's
protocol and HEAD-ness).

A proxy sends the same vars block for repeated requests (nginx: the same client connection and
URI). Decoding it is the protocol's hottest loop (~65 bytecodes a variable), so a block seen
twice keeps its finished environ: a request with it costs a lookup and a dict copy. A block is
kept from its second time only (`_seen` holds the hashes of blocks seen once): traffic where no
block repeats pays one hash and a set lookup. Bounded: blocks up to `CACHED_BLOCK_MAX` bytes,
`CACHE_MAX` of them, cleared when full (it follows the traffic): at most ~256 * (2 kB + the
variables) per handler.

Behind nginx every connection a client makes has its own REMOTE_PORT, so from clients that
connect again (or many clients) blocks seldom repeat. A block whose REMOTE_PORT item was
decoded where the bytes of one are first found is also kept as a template, keyed by its bytes
with that value cut out: a block with the same bytes around it and the item at the same place
is the same walk of items with another value, so it costs the cut, a lookup, a dict copy and
the value put in. Bounded as the cache (`CACHE_MAX` templates of up to `CACHED_BLOCK_MAX`
bytes). The template used or made last is `recent`: the request handler compares a packet's
bytes around the value with its own in place (uzerg.serve.request): a proxy's next
connection is most often its last one's again (the same client, or clients of the same
page), and that costs neither a hash, nor the search for the item, nor a call.
"""

from __future__ import annotations

from uzerg.protocols.uwsgi import parse_uwsgi_vars

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from typing import Any

    # an environ, the block's item count (a repeated key counts each time), the body's length
    # (0: none), SERVER_PROTOCOL (HTTP/1.0 when missing) and whether the method is HEAD
    UwsgiRequest = tuple[dict[str, Any], int, int, str, bool]

CACHE_MAX = 256
CACHED_BLOCK_MAX = 2048
# the first bytes of a REMOTE_PORT item (the key's length, the key); the value's length and
# the value follow
_PORT_ITEM = b"\x0b\x00REMOTE_PORT"



class UwsgiEnvirons:
    def __init__(self, common: dict[str, Any]) -> None:
        """`common`: the variables of every request (wsgi.*, SCRIPT_NAME)."""
        self._common = common
        # (the request handler looks blocks up here directly: never replaced, only cleared)
        self.cache: dict[bytes, UwsgiRequest] = {}
        self._seen: set[int] = set()
        # a block with its REMOTE_PORT value cut out -> the block's request (_client_block)
        self.templates: dict[bytes, UwsgiRequest] = {}
        # the last block decoded: its bytes, its items' offsets (and its end), keys, values
        self._last: tuple[bytes, list[int], list[str], list[str]] | None = None
        # the template used or made last: the bytes before its REMOTE_PORT value (the value's
        # length included), those after it, where the value ends, the block's length, request
        # (its environ has the value of the block that made the template)
        self.recent: tuple[bytes, bytes, int, int, UwsgiRequest] | None = None

    def build(self, block: bytes, peer: Any) -> UwsgiRequest:
        """The environ (a private copy) and the rest of a vars block (bytes: hashable);
        `peer`: the client's address, for REMOTE_ADDR/REMOTE_PORT when the packet has none.
        Raises UwsgiProtocolError for a bad block."""
        cached = self.cache.get(block)
        if cached is None:
            return self.build_new(block, peer)
        env = cached[0].copy()
        if "REMOTE_ADDR" not in env and type(peer) is tuple:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = peer[0], str(peer[1])
        return env, cached[1], cached[2], cached[3], cached[4]

    def build_new(self, block: bytes, peer: Any) -> UwsgiRequest:
        """build() of a block not in `cache` (the request handler looked it up already): from
        a template when it is a block seen before but for its REMOTE_PORT value, else decoded
        (and kept as a template when it can be one); kept whole from its second time."""
        if len(block) > CACHED_BLOCK_MAX:
            return self._decode(block, peer)
        seen = self._seen
        hashed = hash(block)
        again = hashed in seen
        if not again:
            if len(seen) >= CACHE_MAX:
                seen.clear()
            seen.add(hashed)
        port = block.find(_PORT_ITEM)
        value = port + 15
        if port < 0 or value > len(block):  # none, or no room for the value's length
            request = self._decode(block, None if again else peer)
        else:
            value_end = value + block[port + 13] + (block[port + 14] << 8)
            key = block[:value] + block[value_end:]
            request = self.templates.get(key)  # type: ignore[assignment]
            if request is not None and value_end <= len(block):
                # the same bytes but the value, and the item at the same place (the first
                # bytes of a REMOTE_PORT item in the key are where they are in its block: an
                # earlier match in the key would be one in the block): the same items
                self.recent = (block[:value], block[value_end:], value_end, len(block),
                               request)  # type: ignore[assignment]
                env = request[0].copy()
                env["REMOTE_PORT"] = block[value:value_end].decode("latin-1")
                request = (env, request[1], request[2], request[3], request[4])
            else:
                request = self._decode(block, None if again else peer)
                self._keep_template(block, key, port, value, value_end, request)
        if not again:
            return request
        # its second time: kept whole (without the peer: a copy gets it per request)
        if len(self.cache) >= CACHE_MAX:
            self.cache.clear()
        self.cache[block] = request
        env = request[0].copy()
        if "REMOTE_ADDR" not in env and type(peer) is tuple:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = peer[0], str(peer[1])
        return env, request[1], request[2], request[3], request[4]

    def _keep_template(self, block: bytes, key: bytes, port: int, value: int, value_end: int,
                       request: UwsgiRequest) -> None:
        """Keep the request of a block just decoded as the template for `key` (the block but
        its REMOTE_PORT value, whose item the first match at `port` may be) when the match is
        that item, as the decode walked it: at an item boundary, the block's only REMOTE_PORT
        (its value is the environ's), and REMOTE_ADDR from the block (not the peer's)."""
        last = self._last
        if last is None or last[0] is not block:  # (another thread decoded meanwhile)
            return
        offsets, keys = last[1], last[2]
        if port in offsets and keys.count("REMOTE_PORT") == 1 and "REMOTE_ADDR" in keys:
            if len(self.templates) >= CACHE_MAX:
                self.templates.clear()
            template = (request[0].copy(), *request[1:])
            self.templates[key] = template  # type: ignore[assignment]
            self.recent = (block[:value], block[value_end:], value_end, len(block),
                           template)  # type: ignore[assignment]

    def _decode(self, block: bytes, peer: Any) -> UwsgiRequest:
        env, count = self._decode_vars(block)
        # (SCRIPT_NAME is in the fixed part: a packet's own value replaced it)
        scheme = env.get("UWSGI_SCHEME")
        if scheme:
            env["wsgi.url_scheme"] = scheme
        else:
            https = env.get("HTTPS")
            if https and https.lower() in ("on", "1"):
                env["wsgi.url_scheme"] = "https"
        if peer is not None and "REMOTE_ADDR" not in env and type(peer) is tuple:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = peer[0], str(peer[1])
        declared = env.get("CONTENT_LENGTH")  # nginx sends it empty for a GET
        return (env, count, _content_length(declared) if declared else 0,
                env.get("SERVER_PROTOCOL") or "HTTP/1.0", env.get("REQUEST_METHOD") == "HEAD")


    def _decode_vars(self, block: bytes) -> tuple[dict[str, Any], int]:
        """parse_uwsgi_vars(block, <the fixed part>), with the leading and trailing items that
        are byte for byte the last block's taken from it, not decoded again: the block of the
        next client differs from the last one in a few variables (REMOTE_PORT, the URI...), so
        only the items from the first to the last of those are walked. Anything bad: the
        reference reader's error."""
        last = self._last
        end = len(block)
        pos = 0
        stop = end  # where the trailing items in common begin
        if last is None:
            keys: list[str] = []
            values: list[str] = []
            offsets: list[int] = []
        else:
            last_block, last_offsets, last_keys, last_values = last
            count = len(last_keys)
            # the most leading items in common (binary searches on item boundaries)
            low, high = 0, count
            while low < high:
                middle = (low + high + 1) >> 1
                if block.startswith(last_block[: last_offsets[middle]]):
                    low = middle
                else:
                    high = middle - 1
            keys, values, offsets = last_keys[:low], last_values[:low], last_offsets[:low]
            pos = last_offsets[low]
            # then the most trailing ones, after those
            first, high = count, low + 1
            while high < first:
                middle = (high + first) >> 1
                if block.endswith(last_block[last_offsets[middle] :]):
                    first = middle
                else:
                    high = middle + 1
            if first < count:
                stop = end - (len(last_block) - last_offsets[first])
                if stop < pos:
                    stop = end
        text = block.decode("latin-1")
        add_key, add_value, add_offset = keys.append, values.append, offsets.append
        try:
            while True:
                while pos < stop:
                    add_offset(pos)
                    key = pos + 2
                    vpos = key + block[pos] + (block[pos + 1] << 8)
                    pos = vpos + 2 + block[vpos] + (block[vpos + 1] << 8)
                    add_key(text[key:vpos])
                    add_value(text[vpos + 2 : pos])
                if pos == stop < end:  # the last block's trailing items follow: take them
                    keys += last_keys[first:]  # type: ignore[possibly-undefined]
                    values += last_values[first:]
                    shift = stop - last_offsets[first]
                    offsets += [offset + shift for offset in last_offsets[first:-1]]
                    pos = end
                if pos >= end:
                    break
                stop = end  # the walk went past their start: on to the end
        except IndexError:
            pos = -1
        env = self._common.copy()
        env.update(zip(keys, values, strict=True))
        if pos != end or "" in env:
            return parse_uwsgi_vars(block, self._common.copy())  # raises the first item's error
        offsets.append(end)
        self._last = (block, offsets, keys, values)
        return env, len(keys)


# a near_packet() that no packet matches
NO_NEAR_PACKET = (-1, b"", b"", 0, 0, "", None, None)


def near_packet(head: bytes, recent: tuple[bytes, bytes, int, int, UwsgiRequest]
                ) -> tuple[Any, ...]:
    """What the request handler compares a packet with, for UwsgiEnvirons.recent (a template)
    and the 4 bytes of a packet's header (with its length: the same for the template's
    packets): the packet's size, its bytes before the REMOTE_PORT value (the value's length
    included) and after it, where the value starts and ends, the template's own value, the
    template, and `recent`. A packet of that size with those bytes around the value has the
    template's items with another value. The template's own value again is not matched: it
    takes the long way, where a block seen twice is kept whole (then compared whole)."""
    before, after, value_end, size, template = recent
    return (4 + size, head + before, after, 4 + len(before), 4 + value_end,
            template[0]["REMOTE_PORT"], template, recent)


def _content_length(text: str) -> int:
    try:
        return max(int(text), 0)
    except ValueError:
        return 0
