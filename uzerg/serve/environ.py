"""The environ of an HTTP request: the fixed variables of its listening port, the request
line's, the client's, the headers' (as CGI variables) and, over HTTPS, the connection's.

`HttpEnvirons.build()` also counts the CGI variables and their uwsgi-encoded size, as uWSGI's
http-socket does, for the request log line. (The request handler calls it once per request:
keep it lean.)
"""

from __future__ import annotations

from uzerg.protocols.http import split_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# b"2f" -> b"/" for every pair of hex digits (either case), as urllib.parse's table
_HEX_DIGITS = "0123456789ABCDEFabcdef"
_HEX_TO_BYTE = {(a + b).encode(): bytes.fromhex(a + b) for a in _HEX_DIGITS for b in _HEX_DIGITS}


def unquote_to_bytes(data: bytes) -> bytes:
    """``urllib.parse.unquote_to_bytes`` for bytes: each %XX becomes its byte, a ``%`` not
    followed by two hex digits stays. (urllib.parse imports ipaddress: ~3 ms of a zerg's
    start-up, issue 13, for these few lines.)"""
    parts = data.split(b"%")
    if len(parts) == 1:
        return data
    out = [parts[0]]
    append = out.append
    table = _HEX_TO_BYTE
    for item in parts[1:]:
        byte = table.get(item[:2])
        if byte is None:
            append(b"%")
            append(item)
        else:
            append(byte)
            append(item[2:])
    return b"".join(out)


_HEADER_KEYS: dict[str, str | None] = {}  # "User-Agent" -> "HTTP_USER_AGENT"; None: dropped
_UNSEEN = object()
# SCRIPT_NAME REQUEST_METHOD REQUEST_URI PATH_INFO QUERY_STRING SERVER_PROTOCOL SERVER_NAME
# SERVER_PORT REMOTE_ADDR: the keys every HTTP environ has
_FIXED_KEY_BYTES = 11 + 14 + 11 + 9 + 12 + 15 + 11 + 11 + 11


def _environ_key(name: str) -> str | None:
    key = _HEADER_KEYS.get(name)
    if key is None and name not in _HEADER_KEYS:
        upper = name.upper()
        if "_" in name:
            key = None  # `X_Forwarded_For` would impersonate `X-Forwarded-For`: drop it
        elif upper == "CONTENT-TYPE" or upper == "CONTENT-LENGTH":
            key = upper.replace("-", "_")
        else:
            key = "HTTP_" + upper.replace("-", "_")
        if len(_HEADER_KEYS) < 1024:
            _HEADER_KEYS[name] = key
    return key


def _header_vars(headers: list[tuple[str, str]]) -> tuple[dict[str, str], int, int]:
    """The CGI variables of the headers, their count (the fixed ones included) and their size
    as uwsgi vars (2+key+2+value each)."""
    result: dict[str, str] = {}
    count = 9
    size = 0
    keys = _HEADER_KEYS
    for name, value in headers:
        key = keys.get(name, _UNSEEN)
        if key is _UNSEEN:
            key = _environ_key(name)
        if key is None:
            continue
        if key in result:
            # a field that is a list (the parser refused repeated singletons): joined as
            # uWSGI's http parser joins them
            result[key] += ", " + value
            size += len(value) + 2
        else:
            result[key] = value
            count += 1
            size += 4 + len(key) + len(value)
    return result, count, size


class HttpEnvirons:
    def __init__(self, common: dict[str, Any], hostname: str, count_vars: bool) -> None:
        """`common`: the variables of every request (wsgi.*, SCRIPT_NAME); `count_vars`:
        whether the log line needs the count and size of the CGI variables."""
        self._common = common
        self.hostname = hostname  # SERVER_NAME
        self.count_vars = count_vars
        self._bases: dict[str, dict[str, Any]] = {}  # server port -> its fixed variables
        # a parsed head's header block -> its CGI variables, their count and uwsgi size
        self._header_vars: dict[bytes, tuple[dict[str, str], int, int]] = {}

    def build(
        self, head: Any, peer: Any, server_port: str, tls: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], int, int]:
        """The environ, and the count and uwsgi-encoded size of its CGI variables (for the log;
        0, 0 when no request line can be logged). `tls`: an HTTPS connection's variables."""
        base = self._bases.get(server_port)
        if base is None:
            base = self._base_for(server_port)
        env = base.copy()
        if tls is not None:
            env.update(tls)
        target = head.target
        if target[0] == "/":
            path, _, query = target.partition("?")
        else:
            path, query = split_target(target)
        if "%" in path:
            # the target was decoded as latin-1: encoding it back gives the bytes that came, so
            # raw non-ASCII bytes beside %-escapes are not UTF-8 encoded twice (PEP 3333)
            path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
        env["REQUEST_METHOD"] = head.method
        env["REQUEST_URI"] = target
        env["PATH_INFO"] = path
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = head.version
        if type(peer) is tuple:
            env["REMOTE_ADDR"] = peer[0]
            env["REMOTE_PORT"] = str(peer[1])
        else:
            env["REMOTE_ADDR"] = ""
        # the headers' CGI variables (no other variable is HTTP_* or CONTENT_*), with their
        # count and size as uwsgi vars for the log line: made once per header block
        block = head.header_block
        cached = self._header_vars.get(block) if block is not None else None
        if cached is None:
            cached = _header_vars(head.headers)
            if block is not None:
                if len(self._header_vars) >= 256:
                    self._header_vars.clear()  # bounded, and it follows the traffic
                self._header_vars[block] = cached
        header_vars, count, size = cached
        env.update(header_vars)
        counting = self.count_vars  # (skipped when no request line can be logged)
        if head.authority is not None:
            env["HTTP_HOST"] = head.authority  # absolute-form: its host wins (RFC 9112 §3.2.2)
        if not counting:
            return env, 0, 0
        # and the fixed ones; REMOTE_PORT is left out, so the numbers equal uWSGI's, whose
        # http-socket lacks it
        size += (9 * 4 + _FIXED_KEY_BYTES + len(head.method) + len(target) + len(path)
                 + len(query) + 8 + len(self.hostname) + len(server_port)
                 + len(env["REMOTE_ADDR"]))
        return env, count * 2, size

    def _base_for(self, server_port: str) -> dict[str, Any]:
        """The fixed part of the HTTP environs of one listening port."""
        base = self._common.copy()
        base["SERVER_NAME"] = self.hostname
        base["SERVER_PORT"] = server_port
        if len(self._bases) < 256:
            self._bases[server_port] = base
        return base
