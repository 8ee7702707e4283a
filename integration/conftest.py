"""Fixtures shared by the integration tests.

``uzerg``: an InstanceStarter (integration/harness.py); every process it started, and every
child they had, is killed by pid at teardown, whatever the test did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import InstanceStarter, write_app


@pytest.fixture
def uzerg(tmp_path: Path) -> Iterator[InstanceStarter]:
    starter = InstanceStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.cleanup()


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    """A small WSGI app (see harness.write_app) in tmp_path."""
    return write_app(tmp_path / "app.py")
