"""structlog set-up. Plain mode prints each event's text as uWSGI would, one line per event;
``--log-json`` prints one JSON object per event with its key/value fields.

Convention for every module: ``log = structlog.get_logger()`` then
``log.info("*** Zerg server enabled on /tmp/z ***", event_kind="zerg_server", addr="/tmp/z")``:
the event text keeps uWSGI's wording, the keyword fields are for JSON consumers.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog


def _plain_renderer(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
    return str(event_dict.get("event", ""))


# the stream configure_logging() last gave to plain mode (None: JSON mode)
_plain_stream: list[TextIO | None] = [None]


def plain_output() -> tuple[TextIO, list[Any]] | None:
    """For a writer that bypasses structlog (the request log: structlog costs ~20 us a line):
    the stream of plain-mode lines and structlog's live processor list. Write directly only
    while ``is_plain(processors)``: capture_logs() and reconfiguration change that list."""
    stream = _plain_stream[0]
    return None if stream is None else (stream, structlog.get_config()["processors"])


def is_plain(processors: list[Any]) -> bool:
    return bool(processors) and processors[-1] is _plain_renderer


def configure_logging(*, json: bool = False, stream: TextIO | None = None) -> None:
    """(Re)configure structlog for this process. Safe to call again after fork or --logto."""
    out = stream if stream is not None else sys.stderr
    processors: list[Any] = [structlog.processors.add_log_level]
    if json:
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(_plain_renderer)
    structlog.configure(
        processors=processors,
        # WriteLogger writes "line\n" in one call (print() writes the newline separately):
        # the master and the workers share the file, and their lines must not interleave
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _plain_stream[0] = None if json else out


configure_logging()
