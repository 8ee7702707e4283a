#!/usr/bin/env python3
"""The churn soak (issue 11): ``python integration/soak.py --seconds N`` (run with
``PYTHONPATH=`` the checkout, so that the processes it starts run this code).

A main instance (workers on an HTTP socket and a uwsgi unix socket, and a zerg server handing
both out) and a zergpool instance (a TCP and a unix socket, uwsgi protocol) are hammered by
client threads (HTTP and uwsgi, one request per connection) while a churn loop picks random
actions: start a zerg (on the server or the pool), stop one (SIGINT, SIGQUIT or SIGTERM: a zerg
finishes the request in hand on each, see docs/processes.md), reload one (SIGHUP), pause and
resume the main instance (SIGTSTP twice) while a zerg serves its sockets, SIGKILL a random
worker, reload the pool or the main instance (SIGHUP). Prints a table: requests sent, answered
and failed by cause, each failure attributed to the action before it, descriptors and RSS of
the long-lived processes at start and end, and the processes left behind.

Exit status 0 when every failure is explained by a SIGKILL (a request in flight in the worker
killed), no descriptor leaked and no process was left behind; 1 otherwise.
Traffic goes only to 127.0.0.1 and unix sockets in a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from support.processes import Instance, InstanceStarter, start_zerg, write_version_app
from support.soak_report import (
    Action,
    PidTracker,
    Report,
    Snapshot,
    Traffic,
    attribute,
    leftovers,
)

MAX_ZERGS = 4  # at most this many zergs at once (the machine is shared: keep the fleet small)
MAIN_WORKERS = 2
STEP_TIMEOUT = 45.0  # one churn step (a start, a graceful stop, a reload) under load
STOP_SIGNALS = {"INT": signal.SIGINT, "QUIT": signal.SIGQUIT, "TERM": signal.SIGTERM}


@dataclass
class Zerg:
    label: str
    role: str  # "server-zerg" or "pool-zerg"
    instance: Instance
    workers: int


@dataclass
class Fleet:
    """Everything the soak started, and the addresses clients use (address -> the roles of the
    processes that serve it)."""

    starter: InstanceStarter
    app: Path
    main: Instance
    pool: Instance
    zerg_server: str
    pool_entry: str
    served_by: dict[str, frozenset[str]]
    zergs: list[Zerg] = field(default_factory=list)
    started: int = 0

    def instances(self) -> list[tuple[str, str, Instance]]:
        """(label, role, instance) of every living instance."""
        return [("main", "main", self.main), ("pool", "pool", self.pool),
                *((z.label, z.role, z.instance) for z in self.zergs)]


def start_fleet(starter: InstanceStarter, workdir: Path) -> Fleet:
    app = write_version_app(workdir / "app.py", version="soak")
    zerg_server = str(workdir / "zerg.sock")
    main_unix = str(workdir / "main.sock")
    main = starter.start(["--master", "--wsgi-file", str(app), "--processes", str(MAIN_WORKERS),
                          "--http-socket", "127.0.0.1:0", "--socket", main_unix,
                          "--zerg-server", zerg_server, "--listen", "1024"],
                         wait_workers=MAIN_WORKERS)
    main.wait_for_log(f"Zerg server enabled on {zerg_server}")
    pool_unix = str(workdir / "pool-app.sock")
    pool_entry = str(workdir / "pool.sock")
    pool = starter.start(["--master", "--listen", "1024",
                          "--zergpool", f"{pool_entry}:127.0.0.1:0,{pool_unix}"],
                         wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    bound = pool.wait_for_log("bound to TCP socket")
    pool_tcp = bound.split("bound to TCP socket ", 1)[1].split()[0]
    main_http = main.address(1)  # --socket is bound first: socket 0 is main.sock
    return Fleet(starter, app, main, pool, zerg_server, pool_entry, served_by={
        f"http {main_http}": frozenset({"main", "server-zerg"}),
        f"uwsgi {main_unix}": frozenset({"main", "server-zerg"}),
        f"uwsgi {pool_tcp}": frozenset({"pool", "pool-zerg"}),
        f"uwsgi {pool_unix}": frozenset({"pool", "pool-zerg"}),
    })


class Churn:
    """Random actions on the fleet, one per step; starts and reloads are waited for with a
    deadline, while stops are checked at later steps and a pause lasts a few steps, so actions
    overlap. The pool keeps at least one zerg (else its sockets would only queue), and a zerg
    serves the main instance's sockets for as long as it is paused."""

    def __init__(self, fleet: Fleet, rng: random.Random, tracker: PidTracker) -> None:
        self.fleet = fleet
        self.rng = rng
        self.tracker = tracker
        self.actions: list[Action] = []
        self.errors: list[str] = []
        self.paused_until: float | None = None  # the main instance is paused until then
        self.stopping: list[tuple[Zerg, str, float]] = []  # zergs told to stop: signal, deadline

    def record(self, kind: str, role: str, label: str, pid: int, detail: str = "") -> Action:
        action = Action(time.monotonic(), kind, role, label, pid, detail)
        self.actions.append(action)
        return action

    def step(self) -> None:
        fleet = self.fleet
        self.check_stopping()
        if self.paused_until is not None and time.monotonic() >= self.paused_until:
            self.resume()
        choices = ["kill-worker", "kill-worker", "reload-pool"]
        if self.paused_until is None:  # a reload would end the pause: not during one
            choices += ["pause", "reload-main"]
        if len(fleet.zergs) < MAX_ZERGS:
            choices += ["start", "start"]
        if fleet.zergs:
            choices += ["stop", "stop", "reload"]
        kind = self.rng.choice(choices)
        try:
            getattr(self, "do_" + kind.replace("-", "_"))()
        except AssertionError as exc:  # a deadline passed: say so, and go on
            self.errors.append(f"{time.strftime('%X')} {kind}: {str(exc).splitlines()[0]}")
        self.tracker.snapshot()

    def do_start(self, role: str | None = None) -> Zerg:
        fleet = self.fleet
        role = role or self.rng.choice(["server-zerg", "pool-zerg"])
        target = fleet.zerg_server if role == "server-zerg" else fleet.pool_entry
        workers = self.rng.choice([1, 2])
        fleet.started += 1
        label = f"zerg{fleet.started}"
        instance = start_zerg(fleet.starter, fleet.app, target, workers=workers,
                              extra=["--zerg-wait", "20"])
        zerg = Zerg(label, role, instance, workers)
        fleet.zergs.append(zerg)
        self.record("start", role, label, instance.pid, f"{workers} workers")
        return zerg

    def do_stop(self) -> None:
        # the pool keeps a zerg, and so does the zerg server while the main instance is paused
        kept = {"pool-zerg"} | ({"server-zerg"} if self.paused_until is not None else set())
        count = Counter(z.role for z in self.fleet.zergs)
        candidates = [z for z in self.fleet.zergs if z.role not in kept or count[z.role] > 1]
        if not candidates:
            return
        zerg = self.rng.choice(candidates)
        name = self.rng.choice(sorted(STOP_SIGNALS))
        self.tracker.snapshot()
        self.record(f"stop-{name}", zerg.role, zerg.label, zerg.instance.pid)
        zerg.instance.send(STOP_SIGNALS[name])
        self.fleet.zergs.remove(zerg)
        self.stopping.append((zerg, name, time.monotonic() + STEP_TIMEOUT))

    def check_stopping(self, wait: bool = False) -> None:
        """Zergs told to stop: each must exit with status 0 before its deadline (``wait``:
        wait for them all)."""
        for item in list(self.stopping):
            zerg, name, deadline = item
            if wait:
                zerg.instance.process.wait(max(0.0, deadline - time.monotonic()) + 0.1)
            status = zerg.instance.process.poll()
            if status is None and time.monotonic() < deadline:
                continue
            self.stopping.remove(item)
            if status != 0:
                self.errors.append(f"{zerg.label} exited with status {status} on SIG{name}")

    def do_reload(self) -> None:
        zerg = self.rng.choice(self.fleet.zergs)
        self._reload(zerg.instance, zerg.role, zerg.label, zerg.workers)

    def do_reload_main(self) -> None:
        self._reload(self.fleet.main, "main", "main", MAIN_WORKERS)

    def do_reload_pool(self) -> None:
        self._reload(self.fleet.pool, "pool", "pool", 0)

    def _reload(self, instance: Instance, role: str, label: str, workers: int) -> None:
        respawned = "gracefully (RE)spawned uWSGI master process"
        before = instance.log_text().count(respawned)
        old = set(instance.worker_pids())
        kind = {"pool": "reload-pool", "main": "reload-main"}.get(role, "reload")
        self.record(kind, role, label, instance.pid)
        instance.send(signal.SIGHUP)
        instance.wait_for_log(respawned, STEP_TIMEOUT, count=before + 1)
        if workers:  # the old generation retires once the new one is forked
            instance._wait(lambda: len(set(instance.worker_pids()) - old) == workers
                           and not old & set(instance.worker_pids()),
                           STEP_TIMEOUT, f"{label}'s workers replaced")

    def do_pause(self) -> None:
        if not any(z.role == "server-zerg" for z in self.fleet.zergs):
            if len(self.fleet.zergs) >= MAX_ZERGS:
                return
            self.do_start("server-zerg")
        main = self.fleet.main
        mark = main.mark()
        self.record("pause", "main", "main", main.pid)
        main.send(signal.SIGTSTP)
        main.wait_for_log("suspended ***", STEP_TIMEOUT, since=mark)
        # other actions go on during the pause (a killed worker is respawned paused)
        self.paused_until = time.monotonic() + self.rng.uniform(0.3, 3.0)

    def resume(self) -> None:
        main = self.fleet.main
        mark = main.mark()
        self.paused_until = None
        self.record("resume", "main", "main", main.pid)
        try:
            main.send(signal.SIGTSTP)
            main.wait_for_log("resumed ***", STEP_TIMEOUT, since=mark)
        except AssertionError as exc:
            self.errors.append(f"{time.strftime('%X')} resume: {str(exc).splitlines()[0]}")

    def do_kill_worker(self) -> None:
        owners = [("main", "main", self.fleet.main)]
        owners += [(z.label, z.role, z.instance) for z in self.fleet.zergs]
        label, role, instance = self.rng.choice(owners)
        pids = instance.worker_pids()
        if not pids:
            return
        self.tracker.snapshot()
        pid = self.rng.choice(pids)
        self.record("kill-worker", role, label, pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(seconds: float, workdir: Path, seed: int, clients: int) -> Report:
    """The whole soak; every process it started is gone (or SIGKILLed and named) on return."""
    rng = random.Random(seed)
    starter = InstanceStarter(workdir)
    tracker = PidTracker(starter)
    report = Report(seconds=seconds, seed=seed, clients=clients, workdir=str(workdir))
    try:
        fleet = start_fleet(starter, workdir)
        tracker.start()
        report.start = Snapshot.take(fleet.main, fleet.pool, MAIN_WORKERS)
        churn = Churn(fleet, rng, tracker)
        churn.do_start("server-zerg")
        churn.do_start("pool-zerg")
        traffic = Traffic(sorted(fleet.served_by), clients)
        report.began = time.monotonic()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            churn.step()
            time.sleep(rng.uniform(0.05, 0.4))  # the pace of the churn, not a synchronisation
        if churn.paused_until is not None:
            churn.resume()
        churn.check_stopping(wait=True)
        traffic.stop()
        report.sent, report.answered = traffic.sent, traffic.answered
        report.actions = churn.actions
        report.churn_errors = churn.errors
        report.attributions = [attribute(f, churn.actions, fleet.served_by)
                               for f in traffic.failures]
        for zerg in list(fleet.zergs):  # the end: zergs first, then the pool and the main
            zerg.instance.stop(signal.SIGTERM, STEP_TIMEOUT)
            fleet.zergs.remove(zerg)
        tracker.snapshot()
        report.end = Snapshot.take(fleet.main, fleet.pool, MAIN_WORKERS,
                                   settle_like=report.start)
        tracker.stop()
        for instance in (fleet.pool, fleet.main):
            status = instance.stop(signal.SIGTERM, STEP_TIMEOUT)
            if status != 0:
                report.churn_errors.append(f"instance {instance.pid} exited with {status}")
        report.left_behind = leftovers(tracker, str(workdir))
        report.pids_seen = len(tracker.seen)
    finally:
        tracker.stop()
        starter.cleanup()
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="length of the churn")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="directory for sockets and logs (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients <= 0:
        parser.error("--seconds and --clients must be positive")
    return args


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # stopped early (SIGTERM; SIGINT too when started with `&`, which ignores it): unwind, so
    # that run() kills every process it started
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupted)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            report = run(args.seconds, args.workdir, seed, args.clients)
        else:
            with tempfile.TemporaryDirectory(prefix="uzerg-soak-") as tmp:
                report = run(args.seconds, Path(tmp), seed, args.clients)
    except KeyboardInterrupt as exc:
        print(f"soak interrupted ({exc or 'SIGINT'}): every process it started was killed",
              file=sys.stderr)
        return 130
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
