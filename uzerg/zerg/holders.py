"""Which zergs still hold a server's sockets: the live side of the stats ``zerg`` entries.

A zerg server only sees a zerg once, at its handshake. Whether that process still serves
the sockets is read from ``/proc/PID/fd`` (the links name ``socket:[INODE]``), which the
same user (or root) may read; for another user's zerg the answer is "unknown" (None).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def socket_inodes(sockets: Sequence[socket.socket]) -> dict[int, int]:
    """inode → index in ``sockets`` (closed sockets are left out)."""
    inodes: dict[int, int] = {}
    for index, sock in enumerate(sockets):
        if sock.fileno() >= 0:
            inodes.setdefault(os.fstat(sock.fileno()).st_ino, index)
    return inodes


def held_sockets(pid: int, inodes: dict[int, int], proc: str = "/proc") -> list[int] | None:
    """Indexes of the sockets ``pid`` holds, sorted; [] when it is gone or holds none;
    None when its descriptors cannot be read (another user's process)."""
    fd_dir = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        return []
    except PermissionError:
        return None
    held: set[int] = set()
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            index = inodes.get(int(target[8:-1]))
            if index is not None:
                held.add(index)
    return sorted(held)


def live_zergs(
    attachments: Iterable[Any], sockets: Sequence[socket.socket]
) -> list[dict[str, Any]]:
    """One entry per attached pid that still holds (or may hold) the sockets, with the time
    of its first attach: ``{"pid", "uid", "gid", "since", "sockets"}``."""
    inodes = socket_inodes(sockets)
    first: dict[int, Any] = {}
    for item in attachments:
        first.setdefault(item.pid, item)
    zergs = []
    for pid, item in first.items():
        held = held_sockets(pid, inodes)
        if held == []:
            continue  # gone, or a pid reused by a process that holds none of them
        zergs.append({"pid": pid, "uid": item.uid, "gid": item.gid, "since": int(item.time),
                      "sockets": held})
    return zergs
