"""Reading the raw request corpora in tests/fixtures/ (gunicorn-style: raw bytes + expected parse).

A `.http`/`.uwsgi` file is text with escapes: real newlines are layout only and are dropped;
`\\r`, `\\n`, `\\t`, `\\xNN` and `\\\\` stand for the bytes. The `.json` next to it holds the
expected parse (valid/) or the expected error (invalid/).
"""

from __future__ import annotations

import codecs
import json
import random
from collections.abc import Iterator
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
