"""The master fifo's file is removed only while it is this instance's own (uzerg.processes.fifo):
the old instance of the zerg dance leaves a path that the new one may have just taken."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from uzerg.processes.fifo import _unlink_if_same


def _inode(path: Path) -> tuple[int, int]:
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def test_our_own_fifo_is_removed_and_nothing_is_left_beside_it(tmp_path: Path) -> None:
    fifo = tmp_path / "running.fifo"
    os.mkfifo(fifo)
    _unlink_if_same(str(fifo), _inode(fifo))
    assert list(tmp_path.iterdir()) == []


def test_another_instances_fifo_at_the_path_stays_and_is_the_same_file(tmp_path: Path) -> None:
    fifo = tmp_path / "running.fifo"
    os.mkfifo(fifo)
    ours = _inode(fifo)
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # keeps our inode from being reused
    try:
        os.unlink(fifo)
        os.mkfifo(fifo)  # the new instance's
        theirs = _inode(fifo)
        _unlink_if_same(str(fifo), ours)
        assert _inode(fifo) == theirs
        assert sorted(p.name for p in tmp_path.iterdir()) == ["running.fifo"]
    finally:
        os.close(reader)


def test_a_path_already_gone_is_no_error(tmp_path: Path) -> None:
    _unlink_if_same(str(tmp_path / "running.fifo"), (1, 2))
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_made_while_we_look_at_the_path_is_not_removed(tmp_path: Path,
                                                              monkeypatch) -> None:  # noqa: ANN001
    """The new instance replaces the file right after our look at it (its `_open`: unlink,
    mkfifo): an lstat-then-unlink of the path removed the new one. The interleaving is forced
    by running the new instance's two calls inside our first lstat."""
    fifo = tmp_path / "running.fifo"
    os.mkfifo(fifo)
    ours = _inode(fifo)
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    real_lstat = os.lstat
    made: list[tuple[int, int]] = []

    def lstat_then_the_new_instance_moves_in(path: str, *args: object) -> os.stat_result:
        result = real_lstat(path, *args)
        if not made:
            made.append((0, 0))  # before the calls below, which may look again
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fifo)
            os.mkfifo(fifo)
            info = real_lstat(fifo)
            made[0] = (info.st_dev, info.st_ino)
        return result

    try:
        monkeypatch.setattr(os, "lstat", lstat_then_the_new_instance_moves_in)
        _unlink_if_same(str(fifo), ours)
        monkeypatch.undo()
        assert made and os.path.exists(fifo) and _inode(fifo) == made[0]
    finally:
        os.close(reader)
