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

from uzerg.logs import get_logger
from uzerg.processes.guard import GUARD
from uzerg.processes.process import StartupError
from uzerg.processes.services import MasterService, OnReadable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()


class MasterFifo:
    def __init__(self, paths: Sequence[str], on_command: Callable[[str], None]) -> None:
        self.paths = list(paths)
        self.on_command = on_command
        self.active = 0
        self.fd = -1
        self._inode: tuple[int, int] | None = None  # of the fifo file we created and read
        self._previous_inode: tuple[int, int] | None = None
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
            info = os.fstat(fd)
        except OSError as exc:
            raise StartupError(f"master-fifo: {path}: {exc.strerror}") from None
        old_fd, old_path = self.fd, self.paths[self.active]
        self._previous_inode, self._inode = self._inode, (info.st_dev, info.st_ino)
        self.fd = fd
        self.active = index
        if old_fd >= 0:
            # unlink before closing: while our descriptor holds the old fifo's inode, its number
            # cannot be reused by a fifo another instance creates at that path meanwhile
            _unlink_if_same(old_path, self._previous_inode)
            os.close(old_fd)
        log.info(f"active master fifo is now {path}", event_kind="master_fifo", path=path)

    def fileno(self) -> int:
        return self.fd

    def handle_readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        # uWSGI obeys the rest of what was written after a slot digit ("2p": the zerg dance's
        # "become the sleeping one and pause"), so the commands after a switch run too; a
        # command that fails is logged and the next ones still run
        for char in data.decode("latin-1"):
            if "0" <= char <= "9":  # ASCII only: "²".isdigit() (b"\xb2") is not a slot
                index = int(char)
                if index < len(self.paths) and index != self.active:
                    self._switch(index)
            elif not char.isspace():
                GUARD.call(f"master fifo: command {char!r}", self.on_command, char)

    def _switch(self, index: int) -> None:
        try:
            self._open(index)
        except StartupError as exc:
            log.error(str(exc), event_kind="master_fifo")

    def close(self) -> None:
        if self.fd >= 0:
            _unlink_if_same(self.paths[self.active], self._inode)  # before close: see _open
            os.close(self.fd)
            self.fd = -1


def _unlink_if_same(path: str, inode: tuple[int, int] | None) -> None:
    """Remove our fifo file, unless another instance has created its own at that path since
    (the zerg dance: the new instance takes running.fifo while the old one leaves it).

    Checked on the file moved aside, not on the path: between an lstat() of the path and its
    unlink(), the new instance may replace the file, and the unlink would then remove the new
    instance's fifo (seen in the deploy recipe's test under load: the next step found no
    running.fifo). A rename is atomic; a file that turns out not to be ours goes back, unless
    an even newer one is there already."""
    aside = f"{path}.{os.getpid()}.old"
    try:
        os.rename(path, aside)
    except OSError:
        return  # gone already: the new instance unlinked it before making its own
    try:
        info = os.lstat(aside)
        if (info.st_dev, info.st_ino) != inode:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        os.unlink(aside)


class FifoService(MasterService):
    """The master fifo as a master service: created when the master's loop starts; its
    commands go to ``master.fifo_command``."""

    label = "master fifo"

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
