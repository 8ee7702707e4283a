"""Logging set-up. Plain mode prints each event's text as uWSGI would, one line per event
(``log-date``: after a date); ``--log-json`` prints one JSON object per event with its
key/value fields (structlog).

Convention for every module: ``log = get_logger()`` (from here) then
``log.info("*** Zerg server enabled on /tmp/z ***", event_kind="zerg_server", addr="/tmp/z")``:
the event text keeps uWSGI's wording, the keyword fields are for JSON consumers.

structlog (and the asyncio it imports: ~30 ms, a third of a zerg's start-up) is imported only
when it is needed: JSON mode, or once something else loaded it (tests' capture_logs, an app
that logs with it); from then on every event goes through it. Until then a plain event is
written here, the same bytes in one write() as structlog's plain set-up below.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from uzerg.config.model import Config
    from uzerg.serve.requestlog import RequestLogger


def _plain_renderer(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
    return str(event_dict.get("event", ""))


def _dated_renderer(fmt: str) -> Any:
    """``log-date``: uWSGI's ``DATE - `` prefix of the server's own lines (strftime form)."""

    def render(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
        return f"{time.strftime(fmt)} - {event_dict.get('event', '')}"

    render.plain = True  # type: ignore[attr-defined]
    return render


# the stream configure_logging() last gave to plain mode (None: JSON mode), and the settings
# structlog gets when it is first needed: [json, stream, plain renderer]
_plain_stream: list[TextIO | None] = [None]
_settings: list[Any] = [False, None, _plain_renderer]
# req-logger: the descriptor request lines go to in a worker (the master's request log pipe)
_request_fd: list[int] = [-1]


def set_request_fd(fd: int) -> None:
    """Send request lines to ``fd`` (a worker, when the master runs request loggers)."""
    _request_fd[0] = fd


def request_fd() -> int:
    return _request_fd[0]


def logs_requests(config: Config) -> bool:
    """A request line can be written (RequestLogger.may_log, from the configuration): request
    logging on, or one of uWSGI's conditional logs."""
    return bool(not config.disable_logging or config.log_4xx or config.log_5xx
                or config.log_slow or config.log_big or config.log_zero or config.log_sendfile
                or config.log_ioerror)


def request_logger(config: Config, worker_id: int) -> RequestLogger | None:
    """A worker's request logger; None when no line can be written: uzerg.serve.requestlog is
    not loaded then (the master loads it before the fork otherwise)."""
    if not logs_requests(config):
        return None
    from uzerg.serve.requestlog import RequestLogger

    return RequestLogger(config, worker_id)


def _structlog() -> Any:
    """structlog, configured by configure_logging()'s settings unless someone configured it."""
    import structlog

    if not structlog.is_configured():
        _configure_structlog(structlog)
    return structlog


def _configure_structlog(structlog: Any) -> None:
    json, stream, renderer = _settings
    processors: list[Any] = [structlog.processors.add_log_level]
    if json:
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(renderer)
    structlog.configure(
        processors=processors,
        # WriteLogger writes "line\n" in one call (print() writes the newline separately):
        # the master and the workers share the file, and their lines must not interleave
        logger_factory=structlog.WriteLoggerFactory(stream if stream is not None else sys.stderr),
        cache_logger_on_first_use=False,
    )


class Logger:
    """structlog's logger calls that uzerg uses: info/warning/error(event, **fields)."""

    __slots__ = ()

    def debug(self, event: str, **fields: Any) -> None:
        """Written only with ``UZERG_DEBUG=1`` in the environment (tracebacks of handled
        failures: the operator gets one line without it)."""
        if debug_enabled():
            self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    @staticmethod
    def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
        stream = _plain_stream[0]
        if stream is not None and "structlog" not in sys.modules:
            stream.write(f"{_settings[2](None, level, {'event': event})}\n")
            stream.flush()
            return
        getattr(_structlog().get_logger(), level)(event, **fields)


_LOGGER = Logger()


def debug_enabled() -> bool:
    return os.environ.get("UZERG_DEBUG", "") not in ("", "0")


def get_logger() -> Logger:
    return _LOGGER


def plain_output() -> tuple[TextIO, list[Any]] | None:
    """For a writer that bypasses structlog (the request log: structlog costs ~20 us a line):
    the stream of plain-mode lines and structlog's live processor list. Write directly only
    while ``is_plain(processors)``: capture_logs() and reconfiguration change that list."""
    stream = _plain_stream[0]
    if stream is None:
        return None
    if "structlog" not in sys.modules:
        return stream, [_settings[2]]
    return stream, _structlog().get_config()["processors"]


def is_plain(processors: list[Any]) -> bool:
    return bool(processors) and (processors[-1] is _plain_renderer
                                 or getattr(processors[-1], "plain", False))


def configure_logging(*, json: bool = False, stream: TextIO | None = None,
                      date_format: str | None = None) -> None:
    """(Re)configure logging for this process. Safe to call again after fork or --logto.
    ``date_format`` (log-date): prefix each plain line with that strftime date and `` - ``."""
    out = stream if stream is not None else sys.stderr
    renderer = _dated_renderer(date_format) if date_format else _plain_renderer
    _settings[:] = [json, out, renderer]
    _plain_stream[0] = None if json else out
    if json or "structlog" in sys.modules:
        import structlog

        _configure_structlog(structlog)


configure_logging()
