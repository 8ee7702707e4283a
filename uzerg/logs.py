"""structlog set-up. Plain mode prints each event's text as uWSGI would, one line per event;
``--log-json`` prints one JSON object per event with its key/value fields.

Convention for every module: ``log = structlog.get_logger()`` then
``log.info("*** Zerg server enabled on /tmp/z ***", event_kind="zerg_server", addr="/tmp/z")``:
the event text keeps uWSGI's wording, the keyword fields are for JSON consumers.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import structlog


def _plain_renderer(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
    return str(event_dict.get("event", ""))


def _dated_renderer(fmt: str) -> Any:
    """``log-date``: uWSGI's ``DATE - `` prefix of the server's own lines (strftime form)."""

    def render(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
        return f"{time.strftime(fmt)} - {event_dict.get('event', '')}"

    render.plain = True  # type: ignore[attr-defined]
    return render


# the stream configure_logging() last gave to plain mode (None: JSON mode)
_plain_stream: list[TextIO | None] = [None]
# req-logger: the descriptor request lines go to in a worker (the master's request log pipe)
_request_fd: list[int] = [-1]


def set_request_fd(fd: int) -> None:
    """Send request lines to ``fd`` (a worker, when the master runs request loggers)."""
    _request_fd[0] = fd


def request_fd() -> int:
    return _request_fd[0]


def plain_output() -> tuple[TextIO, list[Any]] | None:
    """For a writer that bypasses structlog (the request log: structlog costs ~20 us a line):
    the stream of plain-mode lines and structlog's live processor list. Write directly only
    while ``is_plain(processors)``: capture_logs() and reconfiguration change that list."""
    stream = _plain_stream[0]
    return None if stream is None else (stream, structlog.get_config()["processors"])


def is_plain(processors: list[Any]) -> bool:
    return bool(processors) and (processors[-1] is _plain_renderer
                                 or getattr(processors[-1], "plain", False))


def configure_logging(*, json: bool = False, stream: TextIO | None = None,
                      date_format: str | None = None) -> None:
    """(Re)configure structlog for this process. Safe to call again after fork or --logto.
    ``date_format`` (log-date): prefix each plain line with that strftime date and `` - ``."""
    out = stream if stream is not None else sys.stderr
    processors: list[Any] = [structlog.processors.add_log_level]
    if json:
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(_dated_renderer(date_format) if date_format else _plain_renderer)
    structlog.configure(
        processors=processors,
        # WriteLogger writes "line\n" in one call (print() writes the newline separately):
        # the master and the workers share the file, and their lines must not interleave
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _plain_stream[0] = None if json else out


configure_logging()
