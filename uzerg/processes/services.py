"""The one interface between the master's loop and everything it serves besides its children.

A service (the zerg server and pools, the stats server, the master fifo, a vassal's Emperor link,
the idle watch, the cheaper tick, daemons, cron, mules, the chain reload) subclasses
``MasterService`` and answers five questions:

- ``watches()``: which descriptors to watch right now, and what to call when one is readable.
  Asked again after every wake-up, so a service may stop watching a descriptor for a while
  (a listener out of descriptors backs off) or switch to another one (the fifo's ``0``-``9``).
  ``write_watches()`` (optional, none by default): the same for writability (a connection
  with an answer the kernel could not take yet).
- ``wake_at()`` and ``tick()``: a monotonic time at which the loop must wake up even if
  nothing is readable (the end of such a back-off, a periodic check), None for none; ``tick()``
  runs after every wake-up (at least once a second), for periodic work.
- ``handover()``: what survives a re-exec reload: descriptors, made inheritable by the master
  (and no longer if the exec fails), and JSON fields for the new master's state document.
- ``close_in_worker()``: what a freshly forked worker closes (a worker serves only sockets).
- ``shutdown(vacuum)``: close everything at exit; with ``vacuum``, remove the files it created.
- ``child_exited(pid, status)``: the master reaped a child that is not a worker; a service
  that forks (daemons, cron, mules) claims its own. A service that forks Python code (mules)
  calls the master's ``close_in_child()`` in the child, as a worker does.

``label`` names the service in the one line logged when one of its handlers fails: the loop
runs every handler through uzerg.processes.guard, so a failure costs that peer or command, and
a descriptor whose handler failed is not watched for ``COOL_DOWN`` seconds (no busy loop on a
handler that fails before it reads).

To plug a new one in: subclass, implement ``watches``, ``close_in_worker`` and ``shutdown``
(the others have defaults), and add an instance to the list that
``uzerg.processes.instance`` gives the master. ``start(master)`` runs once in the master's loop
after the first workers are spawned; it may raise StartupError.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from select import EPOLLIN, EPOLLOUT, epoll

from uzerg.processes.guard import GUARD, InstanceExit
from uzerg.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from uzerg.processes.scoreboard import Scoreboard
    from uzerg.sockets import Listener

    # (for type checkers only: typing is not imported at run time, a zerg's start-up time)
    class MasterView(Protocol):
        """What a service may use of the master."""

        scoreboard: Scoreboard
        listeners: list[Listener]
        desired: int  # the number of worker slots (in cheaper mode: processes)
        stopping: bool
        graceful_stop: bool  # while stopping: a graceful stop (SIGTERM), not a fast one
        cheap: bool  # idle/cheap mode: no workers until a connection arrives

        @property
        def wanted(self) -> int:
            """The number of workers wanted now (cheaper mode keeps some slots empty)."""
            ...

        def worker_records(self) -> Sequence[Any]: ...

        def cheap_records(self) -> Sequence[Any]: ...

        def fifo_command(self, char: str) -> None: ...

        def close_in_child(self) -> None:
            """In a process forked from the master (a mule): close what only the master uses."""
            ...

        def reload(self) -> None: ...

        def shutdown(self, graceful: bool) -> None: ...

        def enter_cheap(self) -> None: ...

        def leave_cheap(self) -> None: ...


OnReadable = Callable[[], object]
COOL_DOWN = 0.5  # seconds a descriptor whose handler failed is not watched


@record(frozen=True)
class Kept:
    """What a service keeps across a re-exec: ``fds`` stay open in the new program, ``state``
    (JSON values) joins the re-exec state document (uzerg.processes.reexec)."""

    fds: tuple[int, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)


class MasterService(ABC):
    label = "master service"  # names it in a handler failure's line

    def start(self, master: MasterView) -> None:  # noqa: B027 - optional hook
        """Bind or open what it serves (in the master's loop, after the first spawn)."""

    @abstractmethod
    def watches(self) -> Mapping[int, OnReadable]:
        """Descriptors to watch now → what to call when readable (never blocks)."""

    def write_watches(self) -> Mapping[int, OnReadable]:
        """Descriptors to watch now for writability → what to call when writable."""
        return {}

    def wake_at(self) -> float | None:
        return None

    def tick(self) -> None:  # noqa: B027 - optional hook
        """Periodic work, after every wake-up of the loop."""

    def handover(self) -> Kept:
        return Kept()

    def child_exited(self, pid: int, status: int) -> bool:
        """The master reaped ``pid`` (not a worker): True if it was this service's child."""
        return False

    def reopen_logs(self) -> None:  # noqa: B027 - optional hook
        """Reopen the log files it writes, by name (fifo ``l``: a rotating tool moved them)."""

    @abstractmethod
    def close_in_worker(self) -> None: ...

    @abstractmethod
    def shutdown(self, vacuum: bool) -> None: ...


@record(frozen=True)
class _Handlers:
    """What a registered descriptor calls: ``read`` when readable, ``write`` when writable."""

    read: OnReadable | None = None
    write: OnReadable | None = None

    @property
    def events(self) -> int:
        """The epoll event mask."""
        return (EPOLLIN if self.read else 0) | (EPOLLOUT if self.write else 0)


class Watches:
    """A loop's epoll: keeps it registered with exactly what the services watch, and calls the
    handlers of the readable (or writable) ones (each through the guard). Descriptors that
    no service owns (the signal wake-up pipe, the Emperor's vassal channels) are added with
    ``watch()``. The epoll is used directly, as selectors.EpollSelector uses it (importing
    selectors costs a zerg's start ~2.5M instructions, issue 13); ``close()`` closes it."""

    def __init__(self, label: str = "master") -> None:
        self.poller = epoll()  # close-on-exec
        self.label = label  # names a failure of a handler registered by others
        # every descriptor in the epoll → what it calls: a service's _Handlers (kept by sync()),
        # or a callable (watch())
        self.callbacks: dict[int, _Handlers | OnReadable] = {}
        self.labels: dict[int, str] = {}  # fd → the label of the service that watches it
        self.cooling: dict[int, float] = {}  # fd → monotonic time it is watched again

    def sync(self, services: Iterable[MasterService]) -> None:
        reads: dict[int, OnReadable] = {}
        writes: dict[int, OnReadable] = {}
        for service in services:
            for wanted_now, method in ((reads, service.watches),
                                       (writes, service.write_watches)):
                watched = GUARD.call(service.label, method)
                for fd, callback in (watched or {}).items():
                    wanted_now[fd] = callback
                    self.labels[fd] = service.label
        wanted = {fd: _Handlers(reads.get(fd), writes.get(fd)) for fd in reads.keys() | writes}
        if self.cooling:
            now = time.monotonic()
            for fd, until in list(self.cooling.items()):
                if until > now:
                    wanted.pop(fd, None)
                else:
                    del self.cooling[fd]
        for fd, data in list(self.callbacks.items()):
            if isinstance(data, _Handlers) and wanted.get(fd) != data:
                self.unwatch(fd)  # (no error if closed meanwhile: the fifo switched to another)
        for fd, handlers in wanted.items():
            if self.callbacks.get(fd) != handlers:  # (_add() refuses one watch() holds)
                self._add(fd, handlers.events, handlers)

    def watch(self, fd: int, on_readable: OnReadable) -> None:
        """Call ``on_readable`` whenever ``fd`` is readable (or hung up); KeyError if ``fd``
        is watched already."""
        self._add(fd, EPOLLIN, on_readable)

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``; KeyError if it is not watched."""
        del self.callbacks[fd]
        try:
            self.poller.unregister(fd)
        except OSError:
            pass  # closed since: the kernel has dropped it already

    def _add(self, fd: int, events: int, data: _Handlers | OnReadable) -> None:
        if fd in self.callbacks:
            raise KeyError(f"fd {fd} is already watched")
        self.poller.register(fd, events)
        self.callbacks[fd] = data

    def dispatch(self, timeout: float) -> None:
        """Wait up to ``timeout`` and call the handlers of what is readable or writable."""
        callbacks = self.callbacks
        try:
            # (epoll rounds a timeout up to whole milliseconds: it waits at least that long)
            events = self.poller.poll(timeout if timeout > 0 else 0, len(callbacks) or 1)
        except InterruptedError:  # as selectors (Python retries EINTR itself: PEP 475)
            return
        # all looked up first: a handler that unwatches another ready descriptor does not
        # cancel that one's call on this turn
        ready = [(fd, mask, callbacks[fd]) for fd, mask in events if fd in callbacks]
        for fd, mask, data in ready:
            try:
                if not isinstance(data, _Handlers):
                    data()
                elif mask & ~EPOLLOUT and data.read:  # readable, or hung up or in error
                    data.read()
                elif mask & ~EPOLLIN and data.write:  # writable, or hung up or in error
                    data.write()
            except InstanceExit:
                raise
            except Exception as exc:
                GUARD.failed(self.labels.get(fd, self.label), exc)
                if isinstance(self.callbacks.get(fd), _Handlers):  # a service's: cool it down
                    self.cooling[fd] = time.monotonic() + COOL_DOWN

    def close(self) -> None:
        self.poller.close()
        self.callbacks.clear()

    def timeout(self, services: Iterable[MasterService], longest: float) -> float:
        """``longest``, or less when a service wants to be woken up earlier."""
        times = [t for t in (GUARD.call(s.label, s.wake_at) for s in services) if t is not None]
        times += self.cooling.values()
        if not times:
            return longest
        return max(0.0, min(longest, min(times) - time.monotonic()))
