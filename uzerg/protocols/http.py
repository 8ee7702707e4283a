"""HTTP/1.0 and HTTP/1.1 request heads (SPEC §8), sans-I/O in the style of h11/waitress.

`parse_request_head(bytes)` returns a `RequestHead` (None while incomplete); the stream of a
connection (bodies, chunked framing, trailers, pipelining) is read by
`uzerg.protocols.http_stream.HttpRequestParser`. Malformed input raises `HttpError` carrying the
status to answer with (400, 431, 501, 505) and a short reason. Parsing is strict on purpose:
the ambiguities request smuggling feeds on (Content-Length with Transfer-Encoding, differing
duplicate Content-Length, obs-fold, bare CR/LF, whitespace before the colon, control
characters, duplicate singleton fields, framing fields in trailers) are all rejected.

Transfer codings (RFC 9112 §6): `chunked` must be the last coding (else 400) and appear once;
`identity` before it is ignored; any other coding before it (gzip, deflate...) is 501, since
uzerg decodes none of them. Request-targets (RFC 9112 §3.2): origin-form, absolute-form with an
http/https scheme, authority-form only with CONNECT and `*` only with OPTIONS; a fragment is
dropped.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
# the patterns of rare forms (any request line but origin-form, chunk extensions, absolute-
# and authority-form targets) are text, compiled by re (and cached) when first met: not at
# every start-up (issue 13); the common ones are compiled here
_REQUEST_LINE = b"(" + TOKEN + rb") (" + _VCHAR + rb"+) HTTP/(\d)\.(\d)"
# the common case, matched first: origin-form with no fragment, and not CONNECT (which needs
# authority-form); any other line is matched by _REQUEST_LINE and its target checked
_ORIGIN_REQUEST_LINE = re.compile(
    b"(?!CONNECT )(" + TOKEN + rb") (/[\x21\x22\x24-\x7e\x80-\xff]*) HTTP/(\d)\.(\d)"
)
HEADER_LINE = re.compile(
    b"(" + TOKEN + rb"):[ \t]*(" + _VCHAR + rb"(?:[ \t]*" + _VCHAR + rb")*)?[ \t]*"
)
# header fields in one head (and in one trailer section); uWSGI's only limit is its buffer
MAX_HEADER_FIELDS: Final = 100
_ABSOLUTE_FORM = r"(?s)[hH][tT][tT][pP][sS]?://([^/?@\s:][^/?@\s]*)([/?].*)?"
_AUTHORITY_FORM = r"[^/?#@\s]+:[0-9]{1,5}"


class HttpError(Exception):
    """A request that gets an error response (`status`), then the connection closes."""

    REASONS: Final = {
        400: "Bad Request",
        408: "Request Timeout",
        413: "Content Too Large",
        431: "Request Header Fields Too Large",
        501: "Not Implemented",
        505: "HTTP Version Not Supported",
    }

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reason(self) -> str:
        return self.REASONS.get(self.status, "Bad Request")


class RequestHead:
    """A parsed request line and header block."""

    __slots__ = (
        "method", "target", "version", "headers", "content_length", "chunked", "keep_alive",
        "expect_continue", "head_size", "has_body", "authority", "header_block",
    )

    def __init__(
        self, method: str, target: str, version: str, headers: list[tuple[str, str]],
        content_length: int | None = None, chunked: bool = False, keep_alive: bool = False,
        expect_continue: bool = False, head_size: int = 0,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version  # "HTTP/1.0" or "HTTP/1.1"
        self.headers = headers  # names as sent, values without surrounding whitespace
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive  # what the client asked for: 1.1 default, 1.0 keep-alive
        self.expect_continue = expect_continue
        self.head_size = head_size  # bytes of request line + headers + blank line
        self.has_body = chunked or bool(content_length)
        # the host[:port] of an absolute-form target, which replaces the Host field
        # (RFC 9112 §3.2.2); None for the other forms
        self.authority: str | None = None
        # the raw header block when parse_request_head cached its fields (a key for caches of
        # what is derived from the headers alone, e.g. the environ's CGI variables), else None.
        # `headers` is then shared by the heads of that block: never modify it
        self.header_block: bytes | None = None

    def __repr__(self) -> str:
        return (f"RequestHead({self.method} {self.target} {self.version}, {self.headers!r}, "
                f"content_length={self.content_length}, chunked={self.chunked})")


_new_object = object.__new__


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Marker("NEED_DATA")
END: Final = _Marker("END")
Event = RequestHead | bytes | _Marker


# validated header names: raw bytes -> (name, lowercase name); bounded, see _header_name()
_HEADER_NAMES: dict[bytes, tuple[str, str]] = {}
# parsed header lines (only ever filled from heads whose characters were checked first):
# b"Host: x" -> (("Host", "x"), "host"); bounded, see _header_line()
_HEADER_LINES: dict[bytes, tuple[tuple[str, str], str]] = {}
# whole header blocks (the head after the request line) -> _Fields, for clients that send the
# same headers again; only blocks whose lines were all checked go in; cleared when full
MAX_CACHED_BLOCK: Final = 1024
# (field count, headers, Content-Length, transfer codings, Host count, Connection tokens,
# Expect: 100-continue): shared by every head with the same block, so never modified
_Fields = tuple[int, list[tuple[str, str]], int | None, list[str], int, list[str], bool]
_HEADER_BLOCKS: dict[bytes, _Fields] = {}
# fields that cannot be lists (RFC 9110): a second line is an error, never joined. The list
# is the request fields RFC 9110 defines as one value, as nginx's "unique" request headers.
_SINGLETON_FIELDS = frozenset((
    "content-type", "authorization", "proxy-authorization", "if-modified-since",
    "if-unmodified-since", "if-range", "range", "content-range", "max-forwards", "referer",
    "user-agent", "from", "date", "content-location",
))
_SPECIAL_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "host", "connection", "expect")
) | _SINGLETON_FIELDS
# fields a trailer section must not carry (RFC 9110 §6.5.1): framing, routing, request
# modifiers, authentication and the fields that describe the content
FORBIDDEN_TRAILERS = frozenset((
    b"content-length", b"transfer-encoding", b"host", b"te", b"trailer", b"connection",
    b"keep-alive", b"upgrade", b"expect", b"max-forwards", b"cache-control", b"pragma",
    b"range", b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since",
    b"if-range", b"authorization", b"proxy-authorization", b"cookie", b"content-type",
    b"content-encoding", b"content-range", b"content-location",
))
# every byte that is not a control character; deleting them leaves the control characters,
# which in a valid head are only the CRLFs that end lines, and HTABs
_NOT_CONTROL = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


def _header_name(raw: bytes, line: bytes) -> tuple[str, str]:
    name = raw.decode("ascii") if re.fullmatch(TOKEN, raw) else None
    if name is None:
        raise HttpError(400, describe_bad_header(line))
    known = (name, name.lower())
    if len(_HEADER_NAMES) < 512:
        _HEADER_NAMES[raw] = known
    return known


def _header_line(line: bytes) -> tuple[tuple[str, str], str]:
    """((name, value), lowercase name) of a header line whose characters were checked."""
    raw_name, colon, raw_value = line.partition(b":")
    if not colon:
        raise HttpError(400, describe_bad_header(line))
    known = _HEADER_NAMES.get(raw_name)
    name, lname = known if known is not None else _header_name(raw_name, line)
    parsed = ((name, raw_value.strip(b" \t").decode("latin-1")), lname)
    if len(line) <= 256 and len(_HEADER_LINES) < 4096:
        _HEADER_LINES[line] = parsed  # Host, User-Agent, Accept...: the same lines return
    return parsed


def parse_request_head(
    data: bytes | bytearray, max_size: int, max_fields: int = MAX_HEADER_FIELDS
) -> RequestHead | None:
    """Parse the request line and headers at the start of `data` (no leading blank lines).

    Returns None when the head is not complete yet; raises HttpError when it never can be
    (431 above `max_size` bytes or `max_fields` header fields).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) >= max_size:
            raise HttpError(431, f"invalid HTTP request size (max {max_size})...skip")
        if data.find(b"\n\n") >= 0 or data.find(b"\n\r\n") >= 0:
            raise HttpError(400, "invalid HTTP request: bare LF line ending")
        return None
    if end + 4 > max_size:
        raise HttpError(431, f"invalid HTTP request size (max {max_size})...skip")
    head = bytes(data[:end])
    crlf = head.find(b"\r\n")
    if crlf < 0:
        request_line, block = head, b""
    else:
        request_line, block = head[:crlf], head[crlf + 2 :]
    # the header block's fields as parsed before (a client repeats its headers), else None
    known = _HEADER_BLOCKS.get(block)
    if known is None:
        header_lines = block.split(b"\r\n") if crlf >= 0 else []
        fields = len(header_lines)
    else:
        fields = known[0]
    if fields > max_fields:
        raise HttpError(431, f"too many header fields (max {max_fields})")
    match = _ORIGIN_REQUEST_LINE.fullmatch(request_line)
    origin_form = match is not None
    if not origin_form:
        match = re.fullmatch(_REQUEST_LINE, request_line)
        if match is None:
            raise HttpError(400, "invalid HTTP request line")
    if known is None:
        # the parsed form of each header line seen before (None: new). A head made of lines
        # seen before has no control characters to look for: those lines came from heads
        # that passed the check below, and the request line's pattern has none (saves ~2,000
        # instructions); a known block passed it too
        parsed = list(map(_HEADER_LINES.get, header_lines))
        if not all(parsed):
            _check_controls(head, header_lines)
    method_b, target_b, major, minor = match.groups()
    if major != b"1" or minor not in (b"0", b"1"):
        raise HttpError(505, f"unsupported HTTP version {major.decode()}.{minor.decode()}")
    http11 = minor == b"1"
    if known is None:
        known = _header_fields(header_lines, parsed)
        if len(block) <= MAX_CACHED_BLOCK:
            if len(_HEADER_BLOCKS) >= 256:
                _HEADER_BLOCKS.clear()  # bounded, and it follows the traffic
            _HEADER_BLOCKS[block] = known
        else:
            block = None
    _, headers, content_length, transfer_codings, hosts, connection_tokens, expect_continue \
        = known
    chunked = False
    if transfer_codings:
        if not http11:
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if transfer_codings != ["chunked"]:
            _check_transfer_codings(transfer_codings)
        chunked = True
    if http11 and hosts != 1:
        raise HttpError(400, "missing Host header" if hosts == 0 else "multiple Host headers")
    if hosts > 1:
        raise HttpError(400, "multiple Host headers")
    if http11:
        keep_alive = "close" not in connection_tokens
    else:
        keep_alive = "keep-alive" in connection_tokens and "close" not in connection_tokens
    # RequestHead(...) without its __init__ call (a Python frame per request): the same fields
    request = _new_object(RequestHead)
    request.method = method_b.decode("ascii")
    request.target = target_b.decode("latin-1")
    request.version = "HTTP/1.1" if http11 else "HTTP/1.0"
    request.headers = headers
    request.content_length = content_length
    request.chunked = chunked
    request.keep_alive = keep_alive
    request.expect_continue = expect_continue and http11
    request.head_size = end + 4
    request.has_body = chunked or bool(content_length)
    request.authority = None
    request.header_block = block
    if not origin_form:
        request.target, request.authority = _check_target(request.method, request.target)
    return request


def _check_controls(head: bytes, header_lines: list[bytes]) -> None:
    """400 for a control character in the head other than the CRLFs ending its lines and
    HTABs (the request line's pattern has none)."""
    fields = len(header_lines)
    controls = head.translate(None, _NOT_CONTROL)
    if controls != b"\r\n" * fields and controls.replace(b"\t", b"") != b"\r\n" * fields:
        for line in header_lines:
            if HEADER_LINE.fullmatch(line) is None:
                raise HttpError(400, describe_bad_header(line))
        raise HttpError(400, "invalid character in the request head")


def _header_fields(header_lines: list[bytes], parsed: list[Any]) -> _Fields:
    """The fields of a header block whose characters were checked (`parsed`: each line's
    cached parse or None); raises HttpError for a bad or conflicting field."""
    headers: list[tuple[str, str]] = []
    content_length: int | None = None
    transfer_codings: list[str] = []
    hosts = 0
    connection_tokens: list[str] = []
    expect_continue = False
    singletons: set[str] | None = None
    append = headers.append
    for line, known in zip(header_lines, parsed, strict=False):  # the same length
        pair, lname = known if known is not None else _header_line(line)
        append(pair)
        if lname not in _SPECIAL_HEADERS:
            continue
        if lname in _SINGLETON_FIELDS:
            if singletons is None:
                singletons = {lname}
            elif lname in singletons:
                raise HttpError(400, f"duplicate {pair[0]} header")
            else:
                singletons.add(lname)
            continue
        value = pair[1]
        if lname == "content-length":
            if not value.isdigit() or not value.isascii() or len(value) > 18:
                raise HttpError(400, "invalid Content-Length")
            if content_length is not None and int(value) != content_length:
                raise HttpError(400, "conflicting Content-Length headers")
            content_length = int(value)
        elif lname == "transfer-encoding":
            transfer_codings += [c.strip().lower() for c in value.split(",")]
        elif lname == "host":
            hosts += 1
        elif lname == "connection":
            connection_tokens += [c.strip().lower() for c in value.split(",")]
        else:  # expect
            expect_continue = value.lower() == "100-continue"
    return (len(header_lines), headers, content_length, transfer_codings, hosts,
            connection_tokens, expect_continue)


def _check_transfer_codings(codings: list[str]) -> None:
    """Refuse a Transfer-Encoding other than plain `chunked` (see the module docstring)."""
    if codings[-1] != "chunked":
        raise HttpError(400, "invalid Transfer-Encoding: chunked is not the last coding")
    for coding in codings[:-1]:
        name = coding.partition(";")[0].strip()
        if not name or re.fullmatch(TOKEN, name.encode("latin-1")) is None:
            raise HttpError(400, "invalid Transfer-Encoding")
        if name == "chunked":
            raise HttpError(400, "invalid Transfer-Encoding: chunked more than once")
        if name != "identity":
            raise HttpError(501, f"unsupported Transfer-Encoding {name}")


def _check_target(method: str, target: str) -> tuple[str, str | None]:
    """(target without its fragment, authority of an absolute-form target) of a request-target
    that is not a plain origin-form; raises HttpError 400 for one that is not allowed."""
    target = target.partition("#")[0]
    if target[:1] == "/":
        if method == "CONNECT":
            raise HttpError(400, "invalid request target for CONNECT")
        return target, None
    if target == "*":
        if method != "OPTIONS":
            raise HttpError(400, "asterisk request target without OPTIONS")
        return target, None
    if method == "CONNECT":
        if re.fullmatch(_AUTHORITY_FORM, target) is None:
            raise HttpError(400, "invalid request target for CONNECT")
        return target, None
    absolute = re.fullmatch(_ABSOLUTE_FORM, target)
    if absolute is None:
        if re.fullmatch(_AUTHORITY_FORM, target) is not None:
            raise HttpError(400, "authority-form request target without CONNECT")
        raise HttpError(400, "invalid request target")
    return target, absolute.group(1)


def describe_bad_header(line: bytes) -> str:
    if line[:1] in (b" ", b"\t"):
        return "obsolete header line folding"
    if b":" not in line:
        return "header line without a colon"
    name = line.split(b":", 1)[0]
    if not name or name.rstrip(b" \t") != name:
        return "whitespace before the colon of a header"
    if re.fullmatch(TOKEN, name) is None:
        return "invalid header name"
    return "invalid character in a header value"


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target the parser accepted: absolute-form (`http://host/p?q`)
    keeps its path and query, `*` is the path `*`, authority-form (CONNECT) has no path."""
    if target[0] != "/":
        if target == "*":
            return "*", ""
        absolute = re.fullmatch(_ABSOLUTE_FORM, target)
        if absolute is None:
            return "", ""
        target = absolute.group(2) or "/"
        if target[0] == "?":
            target = "/" + target
    path, _, query = target.partition("?")
    return path, query
