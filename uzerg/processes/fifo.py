"""uWSGI's master fifo (--master-fifo PATH, repeatable): one-character commands written to a
named pipe. The first fifo is the active one; writing a digit 0-9 makes that fifo active.

Commands uzerg obeys: ``r``/``R`` reload, ``w``/``W``/``c`` reload the workers only, ``q``
graceful shutdown, ``Q`` fast shutdown, ``p`` pause/resume, ``s`` stats to the log, ``+``/``-``
one worker more/fewer, ``l`` reopen the log file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence

import structlog

from uzerg.processes.process import StartupError
from uzerg.processes.services import MasterService, MasterView, OnReadable

log = structlog.get_logger()


class MasterFifo:
    def __init__(self, paths: Sequence[str], on_command: Callable[[str], None]) -> None:
        self.paths = list(paths)
        self.on_command = on_command
        self.active = 0
        self.fd = -1
        self._open(0)

    def _open(self, index: int) -> None:
        path = self.paths[index]
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                os.unlink(path)  # ours from a previous run (uWSGI also recreates it)
        try:
            os.mkfifo(path, 0o600)
            # read-write: the fifo never reports EOF when the last writer goes away
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise StartupError(f"master-fifo: {path}: {exc.strerror}") from None
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        self.active = index
        log.info(f"active master fifo is now {path}", event_kind="master_fifo", path=path)

    def fileno(self) -> int:
        return self.fd

    def handle_readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        for char in data.decode("latin-1"):
            if char.isdigit():
                index = int(char)
                if index < len(self.paths) and index != self.active:
                    self._switch(index)
                    return
            elif not char.isspace():
                self.on_command(char)

    def _switch(self, index: int) -> None:
        old = self.paths[self.active]
        try:
            self._open(index)
        except StartupError as exc:
            log.error(str(exc), event_kind="master_fifo")
            return
        with contextlib.suppress(OSError):
            os.unlink(old)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.paths[self.active])


class FifoService(MasterService):
    """The master fifo as a master service: created when the master's loop starts; its
    commands go to ``master.fifo_command``."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths
        self.fifo: MasterFifo | None = None

    def start(self, master: MasterView) -> None:
        self.fifo = MasterFifo(self.paths, master.fifo_command)

    def watches(self) -> Mapping[int, OnReadable]:
        return {self.fifo.fd: self.fifo.handle_readable} if self.fifo else {}

    def close_in_worker(self) -> None:
        if self.fifo is not None:
            os.close(self.fifo.fd)

    def shutdown(self, vacuum: bool) -> None:
        if self.fifo is not None:
            self.fifo.close()
