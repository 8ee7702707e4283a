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


configure_logging()
