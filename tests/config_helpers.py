"""One way for unit tests to build a Config: uzerg's defaults plus the fields a test sets."""

from __future__ import annotations

from typing import Any

from uzerg import record
from uzerg.config.load import load_config
from uzerg.config.model import Config


def make_config(*argv: str, **overrides: Any) -> Config:
    """``load_config(argv)`` (no environment), then ``overrides`` (typed values) replaced."""
    return record.replace(load_config(list(argv), {}), **overrides)
