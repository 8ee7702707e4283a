"""One way for unit tests to build a Config: uzerg's defaults plus the fields a test sets."""

from __future__ import annotations

import dataclasses
from typing import Any

from uzerg.config.load import load_config
from uzerg.config.model import Config


def make_config(*argv: str, **overrides: Any) -> Config:
    """``load_config(argv)`` (no environment), then ``overrides`` (typed values) replaced."""
    return dataclasses.replace(load_config(list(argv), {}), **overrides)
