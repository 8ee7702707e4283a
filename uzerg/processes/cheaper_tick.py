"""The cheaper subsystem in the master: once a cycle (a second, as uWSGI's master), describe
the worker slots to the CheaperPolicy (uzerg.processes.cheaper) and carry out its decision.

Spawning takes a cheaped slot, lowest id first (uWSGI logs "spawned uWSGI worker N" or
"Respawned uWSGI worker N"); cheaping asks the oldest idle worker to finish the request in hand
and exit (SIGTERM, then the mercy), and the slot shows as ``"status": "cheap"`` with ``pid`` 0
in the stats. Nothing is decided while the instance is paused, stopping, reloading or in
idle/cheap mode (the wake-up spawns `cheaper` workers, Master.leave_cheap).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from uzerg.logs import get_logger
from uzerg.processes.cheaper import ALGORITHMS, CheaperPolicy, CheaperSettings, Slot, Snapshot
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.services import MasterService, OnReadable
from uzerg.processes.stats import listen_queue, process_memory
from uzerg.sockets import Listener

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (start-up time, issue 13)
    from typing import Any, Protocol

    from uzerg.processes.services import MasterView

    class CheaperMaster(Protocol):
        """What the cheaper tick uses of the master (uzerg.processes.master.Master)."""

        workers: dict[int, Any]  # worker id → record (pid, spawned_mono)
        retiring: dict[int, Any]  # pid → record of a process asked to stop
        cheaped: set[int]
        listeners: list[Listener]
        scoreboard: Scoreboard
        stopping: bool
        reload_requested: bool
        cheap: bool  # idle/cheap mode: no workers until a connection arrives

        def cheap_worker(self, worker_id: int) -> None: ...

        def decheap_worker(self, worker_id: int) -> None: ...


log = get_logger()

CYCLE = 1.0  # seconds between two decisions (uWSGI's master-interval)


class CheaperTick(MasterService):
    """The cheaper subsystem as a master service: no descriptor, a cycle a second."""

    label = "cheaper"

    def __init__(self, settings: CheaperSettings, policy: CheaperPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or CheaperPolicy(settings)
        self.next_cycle = time.monotonic() + CYCLE
        self.master: CheaperMaster | None = None

    def announce(self, list_algorithms: bool = False) -> None:
        """Log the settings (at start-up, before the first workers are spawned)."""
        if list_algorithms:
            log.info("\n*** uWSGI loaded cheaper algorithms ***\n" + "\n".join(ALGORITHMS)
                     + "\n--- end of cheaper algorithms list ---\n", event_kind="cheaper_algos")
        settings = self.settings
        log.info(f"cheaper mode: {settings.minimum} to {settings.maximum} workers, algorithm "
                 f"{settings.algo}, {settings.initial} at start", event_kind="cheaper_mode",
                 minimum=settings.minimum, maximum=settings.maximum, algo=settings.algo)
        for line in self.policy.algorithm.settings_lines():
            log.info(line, event_kind="cheaper_note")

    def start(self, master: MasterView) -> None:
        self.master = master  # type: ignore[assignment] # the Master is a CheaperMaster
        self.next_cycle = time.monotonic() + CYCLE

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def wake_at(self) -> float:
        return self.next_cycle

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        pass

    def request(self, delta: int) -> None:
        """The operator's +1/-1 (fifo ``+``/``-``, SIGTTIN/SIGTTOU), applied at the next cycle."""
        self.policy.request(delta)

    def tick(self) -> None:
        master = self.master
        now = time.monotonic()
        if master is None or now < self.next_cycle:
            return
        self.next_cycle += CYCLE
        if self.next_cycle <= now:  # the loop was held up: no burst of catch-up cycles
            self.next_cycle = now + CYCLE
        if (master.stopping or master.reload_requested or master.cheap
                or master.scoreboard.header.paused):
            return  # as uWSGI's master: no cheaper cycle while in cheap mode either
        decision = self.policy.cycle(self.snapshot(master, now))
        for note in decision.notes:
            log.info(note, event_kind="cheaper_note")
        algo = self.settings.algo
        if decision.spawn:
            ids = ", ".join(str(wid) for wid in decision.spawn)
            count = len(decision.spawn)
            log.info(f"cheaper ({algo}): {decision.reason}: spawning {count} worker"
                     f"{'' if count == 1 else 's'} ({ids})", event_kind="cheaper_spawn",
                     workers=list(decision.spawn), reason=decision.reason)
            for wid in decision.spawn:
                master.decheap_worker(wid)
        for wid in decision.cheap:
            pid = master.workers[wid].pid
            log.info(f"cheaper ({algo}): {decision.reason}: cheaping worker {wid} (pid: {pid})",
                     event_kind="cheaper_cheap", worker=wid, pid=pid, reason=decision.reason)
            master.cheap_worker(wid)

    def snapshot(self, master: CheaperMaster, now: float) -> Snapshot:
        finishing = {record.worker_id for record in master.retiring.values()}
        slots = []
        for wid in range(1, self.settings.maximum + 1):
            record = master.workers.get(wid)
            cores = master.scoreboard.cores_of(wid)
            rss = 0
            if record is not None and self.settings.rss_soft:
                rss = process_memory(record.pid)[0]
            slots.append(Slot(
                worker_id=wid,
                running=record is not None or wid in finishing,
                cheaped=wid in master.cheaped,
                busy=record is not None and any(core.request_start for core in cores),
                running_time=sum(core.running_time for core in cores),
                spawned_at=record.spawned_mono if record is not None else 0.0,
                rss=rss,
            ))
        backlog = max((listen_queue(item.sock)[0] for item in master.listeners), default=0)
        return Snapshot(now, tuple(slots), backlog)
