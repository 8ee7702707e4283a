"""systemd integration: socket activation (LISTEN_FDS) and readiness (NOTIFY_SOCKET).

Socket activation, as uWSGI: when ``LISTEN_PID`` is our pid, descriptors 3 .. 3+LISTEN_FDS-1
are listening sockets bound by systemd. A configured socket, http-socket or zergpool socket
whose address matches one of them uses it instead of binding; ``fd://N`` and ``fd://NAME``
(a name of ``LISTEN_FDNAMES``, i.e. the socket unit's ``FileDescriptorName=``) name one
explicitly; the ones nothing claims are served too, with the default protocol (uWSGI does the
same). The variables are removed at once: the app and a re-executed master must not see them.

Readiness (``Type=notify``): datagrams of ``KEY=VALUE`` lines to ``NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). Sending never fails the instance: a lost notification is
logged once.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import MutableMapping

from uzerg.addresses import FD_SCHEME, AddressError, socket_key
from uzerg.logs import get_logger
from uzerg.record import record

log = get_logger()

FIRST_FD = 3  # SD_LISTEN_FDS_START


class ActivationError(ValueError):
    """A passed descriptor or an ``fd://`` reference is unusable (one line for the operator)."""


@record
class ActivatedSocket:
    sock: socket.socket
    name: str  # its LISTEN_FDNAMES entry ("" when none was given)


class ActivatedSockets:
    """The descriptors passed by systemd (or any activator), claimed one by one."""

    def __init__(self, sockets: list[ActivatedSocket]) -> None:
        self.unclaimed = list(sockets)

    def __bool__(self) -> bool:
        return bool(self.unclaimed)

    def claim_address(self, key: tuple[object, ...]) -> socket.socket | None:
        """The passed socket listening on the normalised address ``key``, if any."""
        for item in self.unclaimed:
            try:
                matches = socket_key(item.sock) == key
            except (AddressError, OSError):
                matches = False
            if matches:
                self.unclaimed.remove(item)
                return item.sock
        return None

    def claim_reference(self, text: str) -> socket.socket:
        """The socket ``fd://N`` or ``fd://NAME`` names. A number that systemd did not pass
        is still accepted if it is an open listening socket (uWSGI's fd://N: any inherited
        descriptor)."""
        reference = text[len(FD_SCHEME):].strip()
        if not reference:
            raise ActivationError(f"{text}: missing descriptor number or name")
        for item in self.unclaimed:
            if (reference.isdigit() and item.sock.fileno() == int(reference)) or (
                not reference.isdigit() and item.name == reference
            ):
                self.unclaimed.remove(item)
                return item.sock
        if not reference.isdigit():
            raise ActivationError(
                f"{text}: no socket named {reference!r} was passed (LISTEN_FDNAMES)"
            )
        return adopt_listening_socket(int(reference), text)

    def take_rest(self) -> list[socket.socket]:
        rest = [item.sock for item in self.unclaimed]
        self.unclaimed = []
        return rest


def take_activated_sockets(environ: MutableMapping[str, str]) -> ActivatedSockets:
    """Adopt the sockets passed through LISTEN_FDS (removing the variables); empty when the
    variables are absent or meant for another process."""
    pid_text = environ.pop("LISTEN_PID", None)
    count_text = environ.pop("LISTEN_FDS", None)
    names_text = environ.pop("LISTEN_FDNAMES", None)
    if pid_text is None or count_text is None:
        return ActivatedSockets([])
    if not pid_text.strip().isdigit() or int(pid_text) != os.getpid():
        return ActivatedSockets([])
    if not count_text.strip().isdigit():
        raise ActivationError(f"LISTEN_FDS: not a number: {count_text!r}")
    count = int(count_text)
    names = names_text.split(":") if names_text else []
    sockets: list[ActivatedSocket] = []
    try:
        for index in range(count):
            fd = FIRST_FD + index
            sock = adopt_listening_socket(fd, f"LISTEN_FDS descriptor {fd}")
            sockets.append(ActivatedSocket(sock, names[index] if index < len(names) else ""))
    except ActivationError:
        for item in sockets:
            item.sock.close()
        raise
    if sockets:
        log.info("- SystemD socket activation detected -", event_kind="socket_activation",
                 count=len(sockets))
    return ActivatedSockets(sockets)


def adopt_listening_socket(fd: int, what: str) -> socket.socket:
    """A socket object for an inherited descriptor that must be a listening stream socket;
    made close-on-exec and non-blocking (the binder's job, done here if it was not)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ActivationError(f"{what}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"{what}: not a socket")
    sock = socket.socket(fileno=fd)
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    except OSError as exc:
        sock.detach()
        raise ActivationError(f"{what}: {exc.strerror}") from None
    if kind != socket.SOCK_STREAM or not listening or sock.family not in (
        socket.AF_INET, socket.AF_INET6, socket.AF_UNIX
    ):
        sock.detach()  # not ours to close: the operator passed something else
        raise ActivationError(f"{what}: not a listening stream socket")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock


class Notifier:
    """sd_notify(): ``send("READY=1", "STATUS=...")``; a no-op without NOTIFY_SOCKET."""

    def __init__(self, address: str | None) -> None:
        self.address: str | bytes | None = None
        self.sock: socket.socket | None = None
        self._failed = False
        if not address:
            return
        self.address = b"\0" + address[1:].encode() if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str]) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET"))

    def send(self, *lines: str) -> None:
        if self.sock is None or self.address is None:
            return
        try:
            self.sock.sendto(("\n".join(lines) + "\n").encode(), self.address)
        except OSError as exc:
            if not self._failed:  # systemd gone or the path wrong: say it once
                self._failed = True
                log.warning(f"cannot notify systemd at NOTIFY_SOCKET: {exc.strerror or exc}",
                            event_kind="notify_failed")

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets Type=notify-reload units tell this reload from an older one
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
