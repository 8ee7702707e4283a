"""A small fake systemd for the integration tests: socket activation and NOTIFY_SOCKET.

``Activator`` binds listening sockets the way a socket unit does, and starts a command with
them as descriptors 3, 4, ... and ``LISTEN_FDS``/``LISTEN_FDNAMES``; ``LISTEN_PID`` must be the
pid of the process that reads them, so a tiny exec wrapper moves the descriptors into place,
sets ``LISTEN_PID`` to its own pid and execs the command (same pid). ``NotifyListener`` is the
datagram socket systemd listens on for ``sd_notify()`` messages.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

# argv: wrapper CMD...: the descriptors listed in UZERG_TEST_FDS become 3, 4, ... and CMD is
# exec()ed in place
EXEC_WRAPPER = (
    "import fcntl, os, sys\n"
    "fds = [int(x) for x in os.environ.pop('UZERG_TEST_FDS').split(',') if x]\n"
    "high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]\n"
    "for fd in fds: os.close(fd)\n"
    "for index, fd in enumerate(high):\n"
    "    os.dup2(fd, 3 + index, inheritable=True)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.environ['LISTEN_FDS'] = str(len(fds))\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


class Activator:
    """Listening sockets bound as a socket unit would, named (FileDescriptorName=)."""

    def __init__(self) -> None:
        self.sockets: list[tuple[str, socket.socket]] = []

    def bind_tcp(self, name: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.sockets.append((name, sock))
        return sock

    def bind_unix(self, name: str, path: Path) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(64)
        self.sockets.append((name, sock))
        return sock

    def inodes(self) -> set[int]:
        return {os.fstat(sock.fileno()).st_ino for _, sock in self.sockets}

    def prefix(self) -> list[str]:
        """The command prefix (before ``-m uzerg ...``) that execs with the sockets."""
        return [sys.executable, "-c", EXEC_WRAPPER]

    def environ(self) -> dict[str, str]:
        return {
            "UZERG_TEST_FDS": ",".join(str(sock.fileno()) for _, sock in self.sockets),
            "LISTEN_FDNAMES": ":".join(name for name, _ in self.sockets),
        }

    def pass_fds(self) -> list[int]:
        return [sock.fileno() for _, sock in self.sockets]

    def close(self) -> None:
        for _, sock in self.sockets:
            sock.close()


class NotifyListener:
    """The NOTIFY_SOCKET end: a datagram socket at a path or an abstract ``@name``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[dict[str, str]] = []

    def collect(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append(fields)

    def wait_for(self, key: str, count: int = 1, timeout: float = 20) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while sum(key in m for m in self.collect()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {key} notifications: {self.messages}")
        return self.messages

    def close(self) -> None:
        self.sock.close()
