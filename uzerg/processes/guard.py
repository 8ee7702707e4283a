"""One failing handler costs its own peer or command, never the instance.

The master's loop (and the Emperor's) calls many handlers: a stats request, a fifo command, a
zerg handshake, a message from the Emperor, a service's periodic tick. An exception escaping
one of them used to unwind through the loop and end the process, taking every worker with it.
``Guard.call`` runs a handler; an ``Exception`` is logged as one line (where, which peer when
known, the exception in one line: its traceback only with ``UZERG_DEBUG=1``) and the loop goes
on. What is raised on purpose to end the instance (``InstanceExit``: an ``exit:`` hook) and
what is not an ``Exception`` (SystemExit, KeyboardInterrupt) goes through.

The same line repeated within ``QUIET_SECONDS`` is counted instead of written again, so a
handler failing on every wake-up cannot flood the log. A try block costs nothing until it
raises: the loop pays nothing more when nothing fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from uzerg.logs import debug_enabled, get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from typing import TypeVar

    T = TypeVar("T")

log = get_logger()

QUIET_SECONDS = 10.0
MAX_TEXT = 300  # characters of the exception's message in the line


class InstanceExit(Exception):  # noqa: N818 - not an error: it ends the instance on purpose
    """Raised inside the master's loop to end the instance (an ``exit:`` hook): the guard
    lets it through."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most MAX_TEXT characters of message."""
    text = " ".join(str(exc).split())
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class Guard:
    def __init__(self) -> None:
        self._recent: dict[str, tuple[float, int]] = {}  # line → (last written, repeats since)

    def call(self, where: str, handler: Callable[..., T], *args: object) -> T | None:
        """``handler(*args)``; None after logging a failure."""
        try:
            return handler(*args)
        except InstanceExit:
            raise
        except Exception as exc:
            self.failed(where, exc)
            return None

    def failed(self, where: str, exc: Exception, peer: str | None = None,
               then: str = "the master goes on") -> None:
        """Log a handler's failure: ``where`` (a service), ``peer`` (who sent it), ``then``
        (what was done about it)."""
        who = f" ({peer})" if peer else ""
        line = f"{where}{who}: {one_line(exc)}"
        now = time.monotonic()
        last, repeats = self._recent.get(line, (0.0, 0))
        if last and now - last < QUIET_SECONDS:
            self._recent[line] = (last, repeats + 1)
            return
        if len(self._recent) > 256:
            self._recent.clear()
        self._recent[line] = (now, 0)
        again = f" (and {repeats} more times in {QUIET_SECONDS:g} s)" if repeats else ""
        log.error(f"{line}; {then}{again}", event_kind="handler_failed", where=where,
                  peer=peer, error=type(exc).__name__)
        if debug_enabled():
            import traceback

            for text in traceback.format_exception(exc):
                for part in text.rstrip("\n").split("\n"):
                    log.debug(part, event_kind="handler_traceback", where=where)


GUARD = Guard()
