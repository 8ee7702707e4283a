"""Reading the raw request corpora in tests/fixtures/ (gunicorn-style: raw bytes + expected parse).

A `.http`/`.uwsgi` file is text with escapes: real newlines are layout only and are dropped;
`\\r`, `\\n`, `\\t`, `\\xNN` and `\\\\` stand for the bytes. The `.json` next to it holds the
expected parse (valid/) or the expected error (invalid/). An HTTP case may also say what the
environ holds (valid: `environ` in a request) and whether the app is called (invalid:
`app_called`, for a malformed body after a good head); `check_served` asserts those from what
a real server answered, for the unit tests (RequestHandler over a socketpair) and integration.
"""

from __future__ import annotations

import codecs
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def load_raw(path: Path) -> bytes:
    text = path.read_bytes().replace(b"\n", b"")
    return codecs.escape_decode(text)[0]


def corpus(kind: str, validity: str, suffix: str) -> list[tuple[str, bytes, Any]]:
    items = []
    for raw_path in sorted((FIXTURES / kind / validity).glob(f"*{suffix}")):
        expected = json.loads(raw_path.with_suffix(".json").read_text())
        items.append((raw_path.stem, load_raw(raw_path), expected))
    return items


def chunkings(data: bytes, seed: int = 1234) -> Iterator[tuple[str, list[bytes]]]:
    """The same bytes whole, byte by byte and in random pieces."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    for n in range(3):
        pieces, pos = [], 0
        while pos < len(data):
            size = rng.randint(1, 17)
            pieces.append(data[pos : pos + size])
            pos += size
        yield f"random{n}", pieces


# -- the HTTP corpus served for real: an app that answers what it saw, and its answers read back

# what the corpus app reports of each environ (and the body it read)
ENVIRON_KEYS = ("REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "HTTP_HOST",
                "CONTENT_TYPE", "HTTP_TRANSFER_ENCODING", "HTTP_ACCEPT", "HTTP_CACHE_CONTROL",
                "HTTP_X_FORWARDED_FOR")


def make_corpus_app(record: Callable[[str], None]) -> Callable[..., list[bytes]]:
    """A WSGI app that calls `record(REQUEST_URI)`, reads the whole body (a malformed one fails
    the read, and uzerg answers for it) and answers 200 with a JSON of ENVIRON_KEYS + body."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        record(environ.get("REQUEST_URI", ""))
        body = environ["wsgi.input"].read()
        seen = {key: environ[key] for key in ENVIRON_KEYS if key in environ}
        seen["body"] = body.decode("latin-1")
        data = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(data)))])
        return [data]

    return app


def parse_responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each final response in `data` (1xx are skipped); the body is the
    Content-Length bytes, or the rest when there is none."""
    responses = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {head[:200]!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        if 100 <= status < 200:
            continue
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            body, data = data, b""
        else:
            body, data = data[:length], data[length:]
        responses.append((status, body))
    return responses


def check_served(
    expected: Any, responses: list[tuple[int, bytes]], calls: int
) -> None:
    """Assert what a server answered for one corpus case: a valid case's requests each reached
    the app and saw the environ its fixture names; an invalid case got its status, and reached
    the app only when its fixture says so (a malformed body: the head was fine)."""
    if isinstance(expected, list):
        assert [status for status, _ in responses] == [200] * len(expected), responses
        assert calls == len(expected)
        for request, (_, body) in zip(expected, responses, strict=True):
            seen = json.loads(body)
            assert seen["body"] == request["body"]
            assert seen["REQUEST_METHOD"] == request["method"]
            for key, value in request.get("environ", {}).items():
                assert seen.get(key) == value, (key, seen)
    else:
        assert responses and responses[-1][0] == expected["status"], responses
        assert [status for status, _ in responses[:-1]] == [200] * (len(responses) - 1)
        assert calls == len(responses) - 1 + bool(expected.get("app_called"))


def without_environ(expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A valid case's expected parse without the environ part (the parser has no environ)."""
    return [{k: v for k, v in request.items() if k != "environ"} for request in expected]
