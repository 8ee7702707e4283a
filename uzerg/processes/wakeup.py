"""Signals and children for an epoll loop (the master's, the Emperor's): handlers only
enqueue, a self-pipe given to ``signal.set_wakeup_fd`` wakes the loop so that it
dispatches them, and exited children are reaped without blocking."""

from __future__ import annotations

import _signal  # not signal: its IntEnums cost ~3M instructions to import
import os
from collections.abc import Callable, Iterable, Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from uzerg.processes.services import Watches


def install_signal_wakeup(watches: Watches, names: Iterable[str],
                          handler: Callable[[int, Any], None]) -> tuple[int, int]:
    """Route the signals ``names`` ("HUP", ...) to ``handler`` and wake the loop of
    ``watches`` on each; returns the pipe's (read, write) descriptors, for the caller to close."""
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for name in names:  # explicitly: a background start may inherit INT/QUIT ignored
        _signal.signal(getattr(_signal, "SIG" + name), handler)
    watches.watch(read_fd, lambda: drain(read_fd))
    return read_fd, write_fd


def signal_name(signum: int) -> str:
    """``signal.Signals(signum).name`` without importing signal (its IntEnums cost ~3M
    instructions): of aliases (SIGCHLD/SIGCLD, SIGABRT/SIGIOT...) the enum keeps the first by
    name; ValueError for a number it has no member for (SIGRTMIN+1...), as the enum does."""
    names = [name for name, value in vars(_signal).items()
             if value == signum and name.isupper() and name.startswith("SIG")
             and not name.startswith("SIG_")]
    if not names:
        raise ValueError(f"{signum!r} is not a valid Signals")
    return min(names)


def drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def reap_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of every child that has exited, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status
