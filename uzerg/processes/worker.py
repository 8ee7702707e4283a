"""A worker process: the accept loop over every listening socket, calling the request handler.

Each thread ("core") has its own epoll with every listener registered EPOLLIN|EPOLLEXCLUSIVE:
one sleeping core is woken per connection (no thundering herd, across any number of sockets and
processes, zergs included), and nothing is changed on the shared listening sockets. Listeners
are non-blocking, so a core that loses the race to accept() gets BlockingIOError and polls again.

A connection whose request head has not all come with the first recv() is not waited on: it
is parked in the same epoll (processes/parked.py) and served when its head is complete, dropped
at its deadline (http-headers-timeout) or to make room beyond max-pending-heads (the oldest
goes), so slow clients cannot pin the worker. On a graceful stop, heads already begun are
finished (or time out), fresh ones too; idle keep-alive connections are closed. The price:
a parked head that completes while its worker runs another request waits for that request
(no other worker can take it), so a fresh connection with no bytes yet is waited on up to
request.FIRST_BYTES_WAIT_MS before it is parked: a client that just connected is about to
send (TCP sockets defer accept() until the first bytes anyway).

Control: signals only set flags and wake the loops through ``signal.set_wakeup_fd`` (a pipe
registered in the epoll). TERM/HUP: stop accepting, finish the connection in hand, exit.
INT/QUIT: exit now. Pause: the master sets ``paused`` in the scoreboard and sends SIGUSR2 (or
SIGTSTP); the cores unregister their listeners until the flag is cleared.
"""

from __future__ import annotations

import _signal  # not signal: its IntEnums cost ~3M instructions to import
import _socket
import os
import select
import sys
import time
from collections.abc import Callable, Sequence

from uzerg.addresses import ACCEPT_BACKOFF, ACCEPT_RESOURCE_ERRNOS
from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.hook_phases import HookExit, HookFailed, run_phase
from uzerg.processes.parked import ParkedConnections
from uzerg.processes.process import set_process_title
from uzerg.processes.scoreboard import REQUESTS, RUNNING_TIME, TX, CoreTally, Scoreboard
from uzerg.serve.pending import PendingHead, add_counts
from uzerg.serve.preload import speaks_http
from uzerg.serve.pyoptions import ModuleWatcher
from uzerg.serve.request import RequestHandler  # imported by the master: shared, and before setuid
from uzerg.sockets import Listener

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()

EXIT_RECYCLE = 0  # max-requests / reload-on-rss / graceful stop: respawn without a DAMN
EXIT_NEED_APP = 22  # lazy-apps + need-app: the app failed to load, the instance must stop
EXIT_HOOK_FAILED = 23  # a fatal hook failed in the worker: the instance must stop (status 1)

IDLE_POLL = 1.0  # seconds: how often an idle core checks its master and stray connections
_LISTEN_EVENTS = select.EPOLLIN | select.EPOLLEXCLUSIVE
# Blocked by the master around fork() until the worker has its own handlers: a SIGTERM sent
# to a brand-new worker must stop it, not run the master's handler copy and be lost.
FORK_BLOCKED_SIGNALS = frozenset({
    _signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGUSR1,
    _signal.SIGUSR2, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU,
})


class Worker:
    def __init__(
        self,
        worker_id: int,
        listeners: Sequence[Listener],
        config: Config,
        scoreboard: Scoreboard,
        app_factory: Callable[[], Callable[..., Any]],
        master_pid: int | None = None,
        first_spawn: bool = True,
    ) -> None:
        """``master_pid``: the master's pid, read before the fork. os.getppid() in the child is
        racy: a master killed just after forking leaves a child whose parent is already init,
        and that worker would never notice its master is gone."""
        self.worker_id = worker_id
        self.listeners = list(listeners)
        self.config = config
        self.scoreboard = scoreboard
        self.app_factory = app_factory
        self.master_pid = master_pid if master_pid is not None else os.getppid()
        self.first_spawn = first_spawn  # the accepting-once hooks run on the first spawn only
        self.stopping = False
        self.exit_status = EXIT_RECYCLE
        self.threads = config.threads
        self.max_requests = config.max_requests
        self.reload_on_rss = config.reload_on_rss * 1024 * 1024
        # each parked head holds a descriptor: never more than half of them (sysconf: the soft
        # RLIMIT_NOFILE, -1 for unlimited, without loading the resource module)
        soft_nofile = os.sysconf("SC_OPEN_MAX")
        if soft_nofile < 0:
            soft_nofile = 1 << 20
        self.pending_limit = max(
            1, min(config.max_pending_heads, soft_nofile // 2) // self.threads
        )
        self.handler: Any = None
        self._wakeup_r = -1
        self._core_pipes: list[int] = []
        self._resource_logged = 0.0
        self._statm = -1
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._slot = scoreboard.worker(worker_id)  # a view: building one per request costs
        self._delta_requests = scoreboard.delta_requests_view(worker_id)

    # -- start-up ------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until told to stop; returns the exit status for os._exit()."""
        self._install_signals()
        set_process_title(self.config, f"uzerg worker {self.worker_id}")
        try:
            run_phase(self.config, "post-fork")
            app = self.app_factory()  # with lazy-apps, the pre-app/post-app hooks run here
            self.handler = RequestHandler(
                app, self.config, self.worker_id, total_view=self.scoreboard.total_view,
                http=speaks_http(self.listeners),  # (the master loaded it if so)
            )
            self.handler.preset_timeouts(self.listeners)
            if self.config.py_autoreload:
                ModuleWatcher(self.config.py_autoreload, self.master_pid).start()
            for phase in self._accepting_phases():
                run_phase(self.config, phase)
        except HookFailed as exc:
            # uWSGI: a worker's fatal hook destroys the instance (it sends the master SIGINT;
            # a status of its own lets the master exit non-zero)
            log.error(str(exc), event_kind="hook_failed", worker=self.worker_id)
            return EXIT_HOOK_FAILED
        except HookExit as exc:
            return exc.code
        if self.reload_on_rss:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        if self.threads == 1:
            self._serve(0, self._wakeup_r)
        else:
            self._run_threads()
        return self.exit_status

    def _accepting_phases(self) -> list[str]:
        phases = ["accepting", "accepting-once"] if self.first_spawn else ["accepting"]
        if self.worker_id == 1:
            phases += ["accepting1", "accepting1-once"] if self.first_spawn else ["accepting1"]
        return phases

    def _install_signals(self) -> None:
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup_r = read_fd
        _signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in (_signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(signum, self._on_graceful)
        # A zerg shares its sockets with other holders, and is stopped to hand the traffic to
        # them: a fast stop must not cut a request it accepted (SPEC §4.4), so it finishes the
        # one in hand; the master's fast-stop mercy (SIGKILL after 5 s) bounds the wait.
        shared = any(item.origin == "received" for item in self.listeners)
        for signum in (_signal.SIGINT, _signal.SIGQUIT):
            _signal.signal(signum, self._on_graceful if shared else self._on_fast)
        for signum in (_signal.SIGUSR2, _signal.SIGTSTP):
            _signal.signal(signum, _nothing)  # the wakeup fd does the work: cores re-read state
        for signum in (_signal.SIGUSR1, _signal.SIGTTIN, _signal.SIGTTOU):
            # meant for the master; a terminal sends them to the whole process group
            _signal.signal(signum, _signal.SIG_IGN)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        # the master forks with these blocked: one sent meanwhile is delivered now, to us
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORK_BLOCKED_SIGNALS)

    def _on_graceful(self, _signum: int, _frame: Any) -> None:
        self.stop()

    def _on_fast(self, _signum: int, _frame: Any) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def stop(self) -> None:
        """Stop accepting; connections in hand are finished first."""
        self.stopping = True
        if self.handler is not None:
            self.handler.shutting_down = True

    # -- threads -------------------------------------------------------------------------------

    def _run_threads(self) -> None:
        import threading  # loaded by the master before the fork (load_thread_support)

        threads = []
        for core_id in range(self.threads):
            read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._core_pipes.append(write_fd)
            thread = threading.Thread(
                target=self._serve, args=(core_id, read_fd), name=f"core {core_id}", daemon=True
            )
            threads.append(thread)
            thread.start()
        # the main thread receives the signals; it relays each wake-up to every core
        while any(t.is_alive() for t in threads):
            ready, _, _ = select.select([self._wakeup_r], [], [], IDLE_POLL)
            if ready:
                _drain(self._wakeup_r)
            self._check_master()
            self._wake_cores()
        for thread in threads:
            thread.join()

    def _wake_cores(self) -> None:
        for fd in self._core_pipes:
            try:
                os.write(fd, b"\0")
            except BlockingIOError:
                pass  # already has a pending wake-up

    # -- the accept loop -----------------------------------------------------------------------

    def _serve(self, core_id: int, control_fd: int) -> None:
        poller = select.epoll()
        poller.register(control_fd, select.EPOLLIN)
        listeners = self.listeners
        # fd -> listener._accept (the raw accept4(): socket.accept() converts the family and
        # type to enums on every call), the accepted sockets' family, type and proto, and what
        # the request handler is given
        entries = {item.fd: (item.sock._accept, int(item.sock.family), int(item.sock.type),
                             item.sock.proto, item.protocol, item.server_port, _extra(item))
                   for item in listeners}
        # the accepted socket: the C ``_socket.socket`` (what socket.socket extends) has every
        # method the request path uses, and creating and closing it runs no Python code
        new_socket = _socket.socket
        paused = self.scoreboard.paused_view  # header.paused, as an item: read every turn
        # this core's counters (their values kept as ints, stored as memoryview items) and
        # its request start (an item)
        core = self.scoreboard.core_tally(self.worker_id, core_id)
        parked = ParkedConnections(poller, self.pending_limit)
        waiting = parked.waiting
        idle_poll = IDLE_POLL
        serve_one = self._serve_one
        # what _serve_one() does, inlined below for a plain new connection (a frame less)
        counters, request_start = core.counters, core.request_start
        start = self.handler.start
        # (nanoseconds: the µs of running_time by an integer division, no float to convert)
        wall, perf_ns = time.time, time.perf_counter_ns
        max_requests = self.max_requests
        delta = self._delta_requests  # the worker slot's delta_requests
        poll = poller.poll
        # room for the listeners and some parked connections at once; the default (1023)
        # makes each poll() allocate a 12 KB event array
        max_events = len(entries) + 32
        accepting: bool | None = None  # None: listeners not registered yet
        watch_master = core_id == 0 and self.threads == 1  # else the main thread does it
        clock = time.monotonic
        next_master_check = clock() + IDLE_POLL
        try:
            while True:
                if self.stopping:
                    if accepting:
                        for item in listeners:
                            poller.unregister(item.fd)
                        accepting = False
                        if core_id == 0:
                            self._slot.accepting = 0
                    for pending in parked.idle():  # between keep-alive requests: none owed
                        self._drop(core, parked, pending, "shutting down")
                    if not waiting:
                        break
                else:
                    wanted = not paused[0]
                    if wanted is not accepting:
                        accepting = self._set_accepting(poller, wanted, accepting, core_id)
                now = clock()  # (one reading for both)
                if watch_master and now >= next_master_check:  # busy cores too
                    next_master_check = now + IDLE_POLL
                    self._check_master()
                timeout = idle_poll
                if waiting:
                    if now >= parked.next_deadline:
                        for pending in parked.due(now):
                            self._drop(core, parked, pending, "timeout")
                    timeout = parked.next_deadline - now
                    if timeout > idle_poll:
                        timeout = idle_poll
                    elif timeout < 0.0:
                        timeout = 0.0
                events = poll(timeout, max_events)
                if not events:
                    if timeout == idle_poll and not self.stopping:
                        self._on_idle(accepting, entries, core, core_id, parked)
                    continue
                for fd, _mask in events:
                    entry = entries.get(fd)
                    if entry is None:
                        pending = waiting.pop(fd, None)  # parked.take(fd), inlined
                        if pending is not None:
                            serve_one(core, None, None, "", "", core_id, parked, None, pending)
                        elif fd == control_fd:
                            _drain(fd)
                        else:
                            parked.unregister_stale(fd)
                        continue
                    accept, family, kind, proto, protocol, port, extra = entry
                    try:
                        conn_fd, peer = accept()
                    except BlockingIOError:
                        continue  # another core or process took it
                    except OSError as exc:
                        self._accept_error(exc)
                        continue
                    if extra is not None:  # HTTPS, http-to-https
                        serve_one(core, new_socket(family, kind, proto, conn_fd), peer,
                                  protocol, port, core_id, parked, extra)
                        continue
                    # _serve_one(core, conn, peer, protocol, port, core_id, parked) inlined:
                    # the same steps, keep both in step (no TLS here: nothing is buffered)
                    request_start[0] = wall()  # harakiri watches this
                    started = perf_ns()
                    counts = start(new_socket(family, kind, proto, conn_fd), peer, protocol,
                                   core_id, port)
                    core.running_time = counters[RUNNING_TIME] = \
                        core.running_time + (perf_ns() - started) // 1000
                    request_start[0] = 0.0
                    requests, exceptions, tx, _, static_requests, read_errors, left = counts
                    if requests or left is None:  # (a head parked before any: none)
                        core.requests = counters[REQUESTS] = core.requests + requests
                        if tx:
                            core.tx = counters[TX] = core.tx + tx
                        if exceptions or static_requests or read_errors:
                            core.add_seldom(exceptions, static_requests, read_errors)
                    if left is not None:
                        oldest = parked.park(left)
                        if oldest is not None:
                            self._drop(core, parked, oldest, "too many pending heads")
                        if not requests:
                            continue
                    delta[0] += requests
                    if max_requests and delta[0] >= max_requests:
                        self._recycle()
                    elif self.reload_on_rss and self._rss() >= self.reload_on_rss:
                        self._recycle()
        finally:
            for pending in parked:
                pending.conn.close()
            poller.close()
            self._wake_cores()  # a core that stops (max-requests) stops its siblings

    def _serve_one(
        self, core: CoreTally, conn: Any, peer: Any, protocol: str,
        port: str, core_id: int, parked: ParkedConnections, extra: dict[str, Any] | None = None,
        pending: PendingHead | None = None,
    ) -> None:
        """Serve a new connection, or go on with a `pending` one that became readable."""
        counters, request_start = core.counters, core.request_start
        request_start[0] = time.time()  # harakiri watches this
        started = time.perf_counter_ns()
        if pending is not None:
            counts = self.handler.resume(pending, core_id)
            if counts.pending is None:
                parked.forget(pending.fd)  # closed
        elif extra is None:
            counts = self.handler.start(conn, peer, protocol, core_id, port)
        else:  # an HTTPS or http-to-https socket
            counts = self.handler.start(conn, peer, protocol, core_id, port, **extra)
        while (waiting := counts.pending) is not None and waiting.conn.tls is not None \
                and waiting.conn.buffered():
            # TLS: the next bytes are decrypted already, inside the SSL object: the fd may
            # never wake the epoll, so go on now
            counts = add_counts(counts, self.handler.resume(waiting, core=core_id))
            if counts.pending is None:
                parked.forget(waiting.fd)  # closed
        core.running_time = counters[RUNNING_TIME] = \
            core.running_time + (time.perf_counter_ns() - started) // 1000
        request_start[0] = 0.0
        # (one unpacking, not a field lookup each)
        requests, exceptions, tx, _, static_requests, read_errors, waiting = counts
        if requests or waiting is None:  # (a head parked before any request: none)
            core.requests = counters[REQUESTS] = core.requests + requests
            if tx:
                core.tx = counters[TX] = core.tx + tx
            if exceptions or static_requests or read_errors:
                core.add_seldom(exceptions, static_requests, read_errors)
        if waiting is not None:
            oldest = parked.park(waiting)
            if oldest is not None:
                self._drop(core, parked, oldest, "too many pending heads")
            if not requests:
                return
        delta = self._delta_requests  # the worker slot's delta_requests
        delta[0] += requests
        if self.max_requests and delta[0] >= self.max_requests:
            self._recycle()
        elif self.reload_on_rss and self._rss() >= self.reload_on_rss:
            self._recycle()

    def _drop(
        self, core: CoreTally, parked: ParkedConnections,
        pending: PendingHead, why: str,
    ) -> None:
        counts = self.handler.expire(pending, why)
        parked.forget(pending.fd)
        core.requests += counts.requests
        core.tx += counts.tx
        core.write()

    def _set_accepting(
        self, poller: select.epoll, accepting: bool, before: bool | None, core_id: int
    ) -> bool:
        for item in self.listeners:
            if accepting:
                poller.register(item.fd, _LISTEN_EVENTS)
            elif before:
                poller.unregister(item.fd)
        if core_id == 0:
            slot = self.scoreboard.worker(self.worker_id)
            slot.accepting = int(accepting)
            slot.ready = 1  # the app is loaded and the listeners are (or can be) registered
        if core_id == 0 and (before is not None or not accepting):
            word = "resumed" if accepting else "suspended"
            log.info(f"*** worker {self.worker_id} {word} ***", event_kind="worker_" + word,
                     worker=self.worker_id)
        return accepting

    def _on_idle(
        self, accepting: bool, entries: dict[int, Any], core: CoreTally,
        core_id: int, parked: ParkedConnections,
    ) -> None:
        if not accepting:
            return
        # An exclusive wake-up can be spent on a process that then exited without accepting;
        # a stray connection would wait for the next arrival. Look once a second.
        for accept, family, kind, proto, protocol, port, extra in entries.values():
            try:
                conn_fd, peer = accept()
            except OSError:
                continue
            conn = _socket.socket(family, kind, proto, conn_fd)
            self._serve_one(core, conn, peer, protocol, port, core_id, parked, extra)
            if self.stopping:
                return

    def _check_master(self) -> None:
        if os.getppid() != self.master_pid and not self.stopping:
            log.error(
                f"uWSGI worker {self.worker_id} error: the master disconnected from this "
                "worker. Shutting down the worker.",
                event_kind="master_gone", worker=self.worker_id,
            )
            self.stop()

    def _recycle(self) -> None:
        if not self.stopping:
            log.info(f"...The work of process {os.getpid()} is done. Seeya!",
                     event_kind="worker_recycle", worker=self.worker_id)
            self.stop()

    def _rss(self) -> int:
        try:
            return int(os.pread(self._statm, 64, 0).split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return 0

    def _accept_error(self, exc: OSError) -> None:
        if exc.errno in ACCEPT_RESOURCE_ERRNOS:
            now = time.monotonic()
            if now - self._resource_logged > 10:
                self._resource_logged = now
                log.error(f"accept(): {exc.strerror}: retrying", event_kind="accept_resources",
                          worker=self.worker_id)
            time.sleep(ACCEPT_BACKOFF)  # out of descriptors/memory: let in-flight work release some


def load_thread_support(config: Config) -> None:
    """Import threading in the master, before the fork, when workers run threads (threads > 1,
    py-autoreload): loaded once and shared, not in every worker. Otherwise it is not loaded at
    all (a zerg's start-up time, issue 13)."""
    if config.threads > 1 or config.py_autoreload:
        import threading  # noqa: F401 - loaded for the workers


def _extra(listener: Listener) -> dict[str, Any] | None:
    """What the request handler needs beyond the protocol for this listener, or None."""
    if listener.tls is None and not listener.redirect_port:
        return None
    return {"tls": listener.tls, "redirect_port": listener.redirect_port}


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _nothing(_signum: int, _frame: Any) -> None:
    pass
