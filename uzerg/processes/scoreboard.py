"""Shared memory between the master and its workers: per-worker, per-core counters and state.

One anonymous shared mmap, created by the master before the first fork: an instance header, a
slot per worker and one per core, each a fixed layout (C alignment, as ctypes structures would
have it) read and written through small views. Each field has exactly one writer (a core
writes its own slot, a worker its own worker fields, the master the instance header), so no
lock is needed; readers (stats, harakiri, the request log's total) tolerate a value that is
one request old. No ctypes: importing it (and loading libffi) cost ~2 ms of every start-up
before the first fork (issue 13); the fields are ``struct`` reads and writes at an offset, and
what a worker touches per request is a memoryview item (cheaper than either).
"""

from __future__ import annotations

import mmap
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _field(fmt: str, offset: int) -> Any:
    """A property reading and writing one native ``fmt`` value at ``offset`` in the slot."""
    packer = struct.Struct(fmt)
    unpack_from, pack_into = packer.unpack_from, packer.pack_into

    def get(slot: _Slot) -> Any:
        return unpack_from(slot.buffer, slot.at + offset)[0]

    def put(slot: _Slot, value: Any) -> None:
        pack_into(slot.buffer, slot.at + offset, value)

    return property(get, put)


class _Slot:
    """A view of one slot's bytes in the scoreboard's map."""

    __slots__ = ("at", "buffer")
    SIZE = 0

    def __init__(self, buffer: mmap.mmap, at: int) -> None:
        self.buffer = buffer
        self.at = at


class InstanceHeader(_Slot):
    __slots__ = ()
    SIZE = 16
    paused = _field("B", 0)  # written by the master; workers follow it
    total_requests = _field("Q", 8)  # the M of the log's "req: N/M", all workers
    TOTAL_REQUESTS_AT = 8


class WorkerSlot(_Slot):
    __slots__ = ()
    SIZE = 16
    pid = _field("i", 0)
    accepting = _field("B", 4)
    ready = _field("B", 5)  # the worker has its app and listens (takeover, systemd)
    delta_requests = _field("Q", 8)  # since this process was spawned
    DELTA_REQUESTS_AT = 8


class CoreSlot(_Slot):
    __slots__ = ()
    SIZE = 56
    requests = _field("Q", 0)
    static_requests = _field("Q", 8)  # files served by --static-map (not a 304)
    read_errors = _field("Q", 16)  # failed reads of request bodies
    exceptions = _field("Q", 24)
    tx = _field("Q", 32)
    running_time = _field("Q", 40)  # µs spent in requests
    request_start = _field("d", 48)  # wall clock of the connection in hand, 0.0: idle
    REQUEST_START_AT = 48


# a core's counters as items of CoreTally.counters, a u64 view (CoreSlot's field order)
REQUESTS, STATIC_REQUESTS, READ_ERRORS, EXCEPTIONS, TX, RUNNING_TIME = range(6)


class CoreTally:
    """A core's counters for their only writer, the core's own thread: their values as plain
    ints, each stored to the slot when it changes (an item stored; with the value kept here
    no item is read back to add to it, which costs as much again): ``counters`` is the slot's
    u64 counters as a memoryview (indexed by REQUESTS, ..., RUNNING_TIME), ``request_start``
    its request_start as item 0 of one (set when a request begins: harakiri watches it)."""

    __slots__ = ("requests", "static_requests", "read_errors", "exceptions", "tx",
                 "running_time", "counters", "request_start")

    def __init__(self, counters: memoryview, request_start: memoryview) -> None:
        self.counters = counters
        self.request_start = request_start
        # cumulative across respawns: go on from what the slot holds
        (self.requests, self.static_requests, self.read_errors, self.exceptions, self.tx,
         self.running_time) = counters.tolist()

    def add_seldom(self, exceptions: int, static_requests: int, read_errors: int) -> None:
        """Count the rarer events of a request (and store those that changed)."""
        counters = self.counters
        if exceptions:
            self.exceptions = counters[EXCEPTIONS] = self.exceptions + exceptions
        if static_requests:
            self.static_requests = counters[STATIC_REQUESTS] = \
                self.static_requests + static_requests
        if read_errors:
            self.read_errors = counters[READ_ERRORS] = self.read_errors + read_errors

    def write(self) -> None:
        """Every counter to the slot."""
        counters = self.counters
        counters[REQUESTS] = self.requests
        counters[STATIC_REQUESTS] = self.static_requests
        counters[READ_ERRORS] = self.read_errors
        counters[EXCEPTIONS] = self.exceptions
        counters[TX] = self.tx
        counters[RUNNING_TIME] = self.running_time


class Scoreboard:
    """Slots for ``capacity`` workers of ``cores`` threads each; worker ids start at 1."""

    def __init__(self, capacity: int, cores: int) -> None:
        self.capacity = capacity
        self.cores = cores
        self._workers_at = _align(InstanceHeader.SIZE)
        self._cores_at = self._workers_at + _align(WorkerSlot.SIZE * capacity)
        self._map = mmap.mmap(-1, self._cores_at + CoreSlot.SIZE * capacity * cores)
        self.header = InstanceHeader(self._map, 0)
        # header.total_requests and paused as memoryview items: a worker bumps the total on
        # every logged request and reads paused on every turn of its loop, and an item costs
        # less than a field (a property, a struct call)
        at = InstanceHeader.TOTAL_REQUESTS_AT
        self.total_view = memoryview(self._map)[at : at + 8].cast("Q")
        self.paused_view = memoryview(self._map)[0:1]
        self._views: list[memoryview] = [self.total_view, self.paused_view]

    def worker(self, worker_id: int) -> WorkerSlot:
        if not 1 <= worker_id <= self.capacity:
            raise IndexError(f"worker id {worker_id} outside 1..{self.capacity}")
        return WorkerSlot(self._map, self._workers_at + WorkerSlot.SIZE * (worker_id - 1))

    def core(self, worker_id: int, core_id: int) -> CoreSlot:
        return self.cores_of(worker_id)[core_id]

    def core_tally(self, worker_id: int, core_id: int) -> CoreTally:
        """A core's slot for its own writer (see CoreTally)."""
        at = self.core(worker_id, core_id).at
        start = at + CoreSlot.REQUEST_START_AT
        counters = memoryview(self._map)[at : at + 8 * (RUNNING_TIME + 1)].cast("Q")
        request_start = memoryview(self._map)[start : start + 8].cast("d")
        self._views += [counters, request_start]
        return CoreTally(counters, request_start)

    def delta_requests_view(self, worker_id: int) -> memoryview:
        """A worker slot's delta_requests as item 0 of a memoryview (for its worker)."""
        at = self.worker(worker_id).at + WorkerSlot.DELTA_REQUESTS_AT
        view = memoryview(self._map)[at : at + 8].cast("Q")
        self._views.append(view)
        return view

    def cores_of(self, worker_id: int) -> list[CoreSlot]:
        if not 1 <= worker_id <= self.capacity:
            raise IndexError(f"worker id {worker_id} outside 1..{self.capacity}")
        first = self._cores_at + CoreSlot.SIZE * (worker_id - 1) * self.cores
        return [CoreSlot(self._map, first + CoreSlot.SIZE * core) for core in range(self.cores)]

    def reset_for_spawn(self, worker_id: int, pid: int) -> None:
        """A new process takes the slot: cumulative counters stay, per-process ones restart."""
        slot = self.worker(worker_id)
        slot.pid = pid
        slot.accepting = 0 if self.header.paused else 1
        slot.ready = 0
        slot.delta_requests = 0
        for core in self.cores_of(worker_id):
            core.request_start = 0.0

    def total_requests(self) -> int:
        return sum(core.requests for wid in range(1, self.capacity + 1)
                   for core in self.cores_of(wid))

    def busy_since(self, worker_id: int) -> float:
        """The oldest request start among the worker's cores (0.0: idle)."""
        starts = [c.request_start for c in self.cores_of(worker_id) if c.request_start]
        return min(starts) if starts else 0.0

    def worker_totals(self, worker_id: int) -> dict[str, int]:
        cores = self.cores_of(worker_id)
        requests = sum(c.requests for c in cores)
        running = sum(c.running_time for c in cores)
        return {
            "requests": requests,
            "exceptions": sum(c.exceptions for c in cores),
            "tx": sum(c.tx for c in cores),
            "running_time": running,
            "avg_rt": running // requests if requests else 0,
        }

    def close(self) -> None:
        # the memoryviews export the buffer; drop them before unmapping
        for view in self._views:
            view.release()
        self._map.close()


def _align(size: int, to: int = 64) -> int:
    return (size + to - 1) // to * to
