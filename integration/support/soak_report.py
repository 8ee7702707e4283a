"""The measuring side of the churn soak (integration/soak.py): client threads that count every
request and classify every failure, the churn log and the attribution of each failure to the
action before it, descriptor and RSS snapshots of the long-lived processes, every pid the soak
ever started, and the printed table."""

from __future__ import annotations

import errno
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from support.clients import get
from support.processes import Instance, InstanceStarter

__all__ = [
    "Action", "Attribution", "Failure", "PidTracker", "Report", "Snapshot", "Traffic",
    "attribute", "leftovers",
]

CLIENT_TIMEOUT = 30.0  # a connection queued while nobody accepts is not a failure if served
SLOW_PATH = "/?ms=15"  # support.processes.write_version_app sleeps that long
FD_TOLERANCE = 2  # descriptors a process may differ by at the end without being a leak


@dataclass(frozen=True)
class Action:
    """One churn action: when (monotonic, at the signal or the start), what, on which process
    (role: main, pool, server-zerg, pool-zerg; label: main, pool, zergN; pid: the master's or
    the killed worker's)."""

    when: float
    kind: str
    role: str
    label: str
    pid: int
    detail: str = ""


@dataclass(frozen=True)
class Failure:
    address: str  # "PROTOCOL ADDRESS"
    started: float
    ended: float
    cause: str
    detail: str


@dataclass(frozen=True)
class Attribution:
    failure: Failure
    action: Action | None
    explained: bool  # a worker serving the address was SIGKILLed while the request was in flight
    how: str


def attribute(failure: Failure, actions: Iterable[Action],
              served_by: dict[str, frozenset[str]]) -> Attribution:
    """The action before a failure: a SIGKILL of a worker serving the address during the
    request if there was one (that explains it), else the latest action on a process serving
    the address during the request, else the action nearest in time."""
    actions = list(actions)
    roles = served_by[failure.address]
    during = [a for a in actions
              if failure.started <= a.when <= failure.ended and a.role in roles]
    kills = [a for a in during if a.kind == "kill-worker"]
    if kills:
        return Attribution(failure, kills[-1], True, "SIGKILL in flight")
    if during:
        return Attribution(failure, during[-1], False, "during the request, same sockets")
    if not actions:
        return Attribution(failure, None, False, "no action at all")
    nearest = min(actions, key=lambda a: abs(a.when - failure.ended))
    return Attribution(failure, nearest, False, "nearest in time")


def classify(exc: BaseException) -> str:
    """A short cause for a failed request."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, FileNotFoundError):
        return "socket file missing"
    if isinstance(exc, ConnectionError):  # support.clients: closed with no (full) response
        return "closed without response"
    if isinstance(exc, AssertionError):  # support.clients.get: a status other than 200
        return str(exc).split(" from ", 1)[0]
    if isinstance(exc, OSError):
        return f"OSError {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    if isinstance(exc, (ValueError, IndexError)):
        return "malformed response"
    return type(exc).__name__


class Traffic:
    """``clients`` threads doing one request per connection back to back, each through the
    ``addresses`` ("http ADDR" or "uwsgi ADDR") in turn, until ``stop()``."""

    def __init__(self, addresses: list[str], clients: int) -> None:
        self.addresses = addresses
        self.sent: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.failures: list[Failure] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self, offset: int) -> None:
        sent: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        number = offset
        chance = random.Random(offset)
        while not self._stop.is_set():
            target = self.addresses[number % len(self.addresses)]
            number += 1
            protocol, address = target.split(" ", 1)
            sent[target] += 1
            started = time.monotonic()
            # one request in ten takes a while in the app: graceful stops and reloads find
            # requests in hand, and a SIGKILL can find one in flight
            path = SLOW_PATH if chance.random() < 0.1 else "/"
            try:
                body = get(address, protocol, path, timeout=CLIENT_TIMEOUT)
            except Exception as exc:  # every failure is counted, whatever it is
                failure = Failure(target, started, time.monotonic(), classify(exc), repr(exc))
                with self._lock:
                    self.failures.append(failure)
                continue
            if body.startswith("soak "):
                answered[target] += 1
            else:
                with self._lock:
                    self.failures.append(Failure(target, started, time.monotonic(),
                                                 "wrong body", body[:80]))
        with self._lock:
            self.sent.update(sent)
            self.answered.update(answered)

    def stop(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT + 10)
        if any(thread.is_alive() for thread in self.threads):
            raise RuntimeError("client threads did not finish")


class PidTracker:
    """Every process the soak started and every child they had: (pid, create time), looked at
    every 0.1 s and on demand (before a SIGKILL or a stop), so none is missed."""

    def __init__(self, starter: InstanceStarter) -> None:
        self.starter = starter
        self.seen: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.snapshot()

    def snapshot(self) -> None:
        found: dict[int, float] = {}
        for instance in list(self.starter.instances):
            try:
                master = psutil.Process(instance.pid)
                for process in [master, *master.children(recursive=True)]:
                    found[process.pid] = process.create_time()
            except psutil.Error:
                continue
        with self._lock:
            self.seen.update(found)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _alive(pid: int, created: float) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        if process.create_time() != created or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def leftovers(tracker: PidTracker, marker: str, timeout: float = 15) -> list[str]:
    """Processes still alive after every instance stopped: those tracked, and any other whose
    command line holds ``marker`` (the soak's directory). Waits ``timeout`` for stragglers (a
    worker notices its master is gone within a second), then SIGKILLs and names the rest."""
    def remaining() -> list[psutil.Process]:
        alive = [p for pid, created in tracker.seen.items() if (p := _alive(pid, created))]
        # the soak itself and what started it (a shell, `timeout`) may name the directory too
        pids = {p.pid for p in alive} | {os.getpid()} | {p.pid for p in psutil.Process().parents()}
        for process in psutil.process_iter(["pid", "cmdline", "status"]):
            if process.pid in pids:
                continue
            cmdline = process.info["cmdline"] or []
            if process.info["status"] != psutil.STATUS_ZOMBIE and \
                    any(marker in part for part in cmdline):
                alive.append(process)
        return alive

    deadline = time.monotonic() + timeout
    while (left := remaining()) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the stragglers to exit, with the deadline above
    names = []
    for process in left:
        try:
            names.append(f"{process.pid} {' '.join(process.cmdline())[:100]}")
            os.kill(process.pid, signal.SIGKILL)
        except (psutil.Error, OSError):
            pass
    return names


@dataclass
class Usage:
    fds: int
    rss: int


@dataclass
class Snapshot:
    """Descriptors and RSS of the long-lived processes: the main master, each of its workers,
    the pool master."""

    main: Usage
    workers: list[Usage]
    pool: Usage

    @staticmethod
    def measure(main: Instance, pool: Instance) -> Snapshot:
        def usage(pid: int) -> Usage:
            process = psutil.Process(pid)
            return Usage(process.num_fds(), process.memory_info().rss)
        return Snapshot(usage(main.pid), [usage(pid) for pid in main.worker_pids()],
                        usage(pool.pid))

    @staticmethod
    def take(main: Instance, pool: Instance, workers: int,
             settle_like: Snapshot | None = None, timeout: float = 10) -> Snapshot:
        """Measure once ``workers`` workers run; with ``settle_like``, measure again for up to
        ``timeout`` while the descriptor counts are above it (a connection being closed)."""
        main.worker_pids(workers, timeout=30)
        snapshot = Snapshot.measure(main, pool)
        deadline = time.monotonic() + timeout
        while settle_like and snapshot.leaks(settle_like) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the counts to settle, with the deadline above
            snapshot = Snapshot.measure(main, pool)
        return snapshot

    def leaks(self, start: Snapshot) -> list[str]:
        found = []
        if self.main.fds > start.main.fds + FD_TOLERANCE:
            found.append(f"main master {start.main.fds} -> {self.main.fds} fds")
        base = max(w.fds for w in start.workers)
        found += [f"a main worker {base} -> {w.fds} fds" for w in self.workers
                  if w.fds > base + FD_TOLERANCE]
        if self.pool.fds > start.pool.fds + FD_TOLERANCE:
            found.append(f"pool master {start.pool.fds} -> {self.pool.fds} fds")
        return found


def _mb(value: int) -> str:
    return f"{value / 1048576:.1f} MB"


@dataclass
class Report:
    seconds: float
    seed: int
    clients: int
    workdir: str = ""  # shown once; addresses under it are shown relative to it
    start: Snapshot | None = None
    end: Snapshot | None = None
    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    attributions: list[Attribution] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    churn_errors: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    pids_seen: int = 0
    began: float = 0.0

    @property
    def unexplained(self) -> list[Attribution]:
        return [a for a in self.attributions if not a.explained]

    @property
    def leaks(self) -> list[str]:
        if self.start is None or self.end is None:
            return ["not measured"]
        return self.end.leaks(self.start)

    @property
    def ok(self) -> bool:
        return not (self.unexplained or self.leaks or self.left_behind or self.churn_errors) \
            and sum(self.answered.values()) > 0

    def short(self, address: str) -> str:
        return address.replace(self.workdir + "/", "") if self.workdir else address

    def table(self) -> str:
        lines = [f"uzerg churn soak: {self.seconds:g} s, seed {self.seed}, "
                 f"{self.clients} client threads, {len(self.actions)} churn actions, "
                 f"unix sockets in {self.workdir}"]
        width = max([len(self.short(address)) for address in self.sent] + [10])
        lines.append(f"{'requests to':{width + 2}} {'sent':>9} {'answered':>9} {'failed':>7}")
        for address in sorted(self.sent):
            sent, answered = self.sent[address], self.answered[address]
            lines.append(f"  {self.short(address):{width}} {sent:9} {answered:9} "
                         f"{sent - answered:7}")
        total_sent, total_answered = sum(self.sent.values()), sum(self.answered.values())
        lines.append(f"  {'total':{width}} {total_sent:9} {total_answered:9} "
                     f"{total_sent - total_answered:7}")
        causes = Counter((a.failure.cause, a.explained) for a in self.attributions)
        lines.append("failures by cause: " + (", ".join(
            f"{cause} {count} ({'SIGKILL in flight' if explained else 'UNEXPLAINED'})"
            for (cause, explained), count in sorted(causes.items())) or "none"))
        if self.attributions:
            lines.append("each failure and the action before it (t: seconds since the start):")
        for item in self.attributions:
            failure, action = item.failure, item.action
            what = (f"{action.kind} {action.label} pid {action.pid} at "
                    f"t={action.when - self.began:.3f}" if action else "-")
            began, ended = failure.started - self.began, failure.ended - self.began
            lines.append(f"  t={began:8.3f}..{ended:.3f} {self.short(failure.address)} "
                         f"{failure.cause}: "
                         f"{what} [{item.how}]")
        kinds = Counter(a.kind for a in self.actions)
        lines.append("churn actions: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        lines.append("churn errors: " + ("; ".join(self.churn_errors) or "none"))
        if self.start and self.end:
            start, end = self.start, self.end
            lines.append("descriptors and RSS, start -> end:")
            lines.append(f"  main master   fds {start.main.fds:3} -> {end.main.fds:3}   "
                         f"RSS {_mb(start.main.rss)} -> {_mb(end.main.rss)}")
            lines.append(f"  main workers  fds {[w.fds for w in start.workers]} -> "
                         f"{[w.fds for w in end.workers]}   RSS "
                         f"{[_mb(w.rss) for w in start.workers]} -> "
                         f"{[_mb(w.rss) for w in end.workers]}")
            lines.append(f"  pool master   fds {start.pool.fds:3} -> {end.pool.fds:3}   "
                         f"RSS {_mb(start.pool.rss)} -> {_mb(end.pool.rss)}")
        lines.append("descriptor leaks: " + ("; ".join(self.leaks) or "none"))
        lines.append(f"processes: {self.pids_seen} started in all, left behind: "
                     + ("; ".join(self.left_behind) or "none"))
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"result: {verdict}: {len(self.unexplained)} failures a SIGKILL does not "
                     f"explain, {len(self.attributions) - len(self.unexplained)} that it does")
        return "\n".join(lines)
