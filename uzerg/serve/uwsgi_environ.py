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
"""

from __future__ import annotations

from typing import Any

from uzerg.protocols.uwsgi import parse_uwsgi_vars

CACHE_MAX = 256
CACHED_BLOCK_MAX = 2048


# an environ, the block's item count (a repeated key counts each time), the body's length (0:
# none), SERVER_PROTOCOL (HTTP/1.0 when missing) and whether the method is HEAD
UwsgiRequest = tuple[dict[str, Any], int, int, str, bool]


class UwsgiEnvirons:
    def __init__(self, common: dict[str, Any]) -> None:
        """`common`: the variables of every request (wsgi.*, SCRIPT_NAME)."""
        self._common = common
        # (the request handler looks blocks up here directly: never replaced, only cleared)
        self.cache: dict[bytes, UwsgiRequest] = {}
        self._seen: set[int] = set()

    def build(self, block: bytes, peer: Any) -> UwsgiRequest:
        """The environ (a private copy) and the rest of a vars block (bytes: hashable);
        `peer`: the client's address, for REMOTE_ADDR/REMOTE_PORT when the packet has none.
        Raises UwsgiProtocolError for a bad block."""
        cached = self.cache.get(block)
        if cached is None:
            if len(block) > CACHED_BLOCK_MAX:
                return self._decode(block, peer)
            seen = self._seen
            key = hash(block)
            if key not in seen:
                if len(seen) >= CACHE_MAX:
                    seen.clear()
                seen.add(key)
                return self._decode(block, peer)
            cached = self._decode(block, None)  # its second time: kept
            if len(self.cache) >= CACHE_MAX:
                self.cache.clear()
            self.cache[block] = cached
        env = cached[0].copy()
        if "REMOTE_ADDR" not in env and type(peer) is tuple:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = peer[0], str(peer[1])
        return env, cached[1], cached[2], cached[3], cached[4]

    def _decode(self, block: bytes, peer: Any) -> UwsgiRequest:
        env, count = parse_uwsgi_vars(block, self._common.copy())
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


def _content_length(text: str) -> int:
    try:
        return max(int(text), 0)
    except ValueError:
        return 0
