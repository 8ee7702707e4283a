"""Shared memory between the master and its workers: per-worker, per-core counters and state.

One anonymous shared mmap, created by the master before the first fork and mapped as arrays of
ctypes structures. Each field has exactly one writer (a core writes its own slot, a worker its
own worker fields, the master the instance header), so no lock is needed; readers (stats,
harakiri, the request log's total) tolerate a value that is one request old.
"""

from __future__ import annotations

import ctypes
import mmap


class InstanceHeader(ctypes.Structure):
    _fields_ = [
        ("paused", ctypes.c_uint8),  # written by the master; workers follow it
        ("total_requests", ctypes.c_uint64),  # the M of the log's "req: N/M", all workers
    ]


class WorkerSlot(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_int32),
        ("accepting", ctypes.c_uint8),
        ("ready", ctypes.c_uint8),  # the worker has its app and listens (takeover, systemd)
        ("delta_requests", ctypes.c_uint64),  # since this process was spawned
    ]


class CoreSlot(ctypes.Structure):
    _fields_ = [
        ("requests", ctypes.c_uint64),
        ("static_requests", ctypes.c_uint64),  # files served by --static-map (not a 304)
        ("read_errors", ctypes.c_uint64),  # failed reads of request bodies
        ("exceptions", ctypes.c_uint64),
        ("tx", ctypes.c_uint64),
        ("running_time", ctypes.c_uint64),  # µs spent in requests
        ("request_start", ctypes.c_double),  # wall clock of the connection in hand, 0.0: idle
    ]


# a core's counters as items of core_views()'s u64 view (CoreSlot's field order)
REQUESTS, STATIC_REQUESTS, READ_ERRORS, EXCEPTIONS, TX, RUNNING_TIME = range(6)


class Scoreboard:
    """Slots for ``capacity`` workers of ``cores`` threads each; worker ids start at 1."""

    def __init__(self, capacity: int, cores: int) -> None:
        self.capacity = capacity
        self.cores = cores
        header = ctypes.sizeof(InstanceHeader)
        workers = ctypes.sizeof(WorkerSlot) * capacity
        core_bytes = ctypes.sizeof(CoreSlot) * capacity * cores
        self._map = mmap.mmap(-1, _align(header) + _align(workers) + core_bytes)
        self.header = InstanceHeader.from_buffer(self._map, 0)
        # header.total_requests as a memoryview item: a worker bumps it on every logged
        # request, and an item costs less than a ctypes field (a descriptor, a conversion)
        offset = InstanceHeader.total_requests.offset
        self.total_view = memoryview(self._map)[offset : offset + 8].cast("Q")
        self._views: list[memoryview] = [self.total_view]
        self._cores_at = _align(header) + _align(workers)
        self._workers_at = _align(header)
        self.workers = (WorkerSlot * capacity).from_buffer(self._map, _align(header))
        self.core_slots = (CoreSlot * (capacity * cores)).from_buffer(
            self._map, _align(header) + _align(workers)
        )

    def worker(self, worker_id: int) -> WorkerSlot:
        return self.workers[worker_id - 1]

    def core(self, worker_id: int, core_id: int) -> CoreSlot:
        return self.core_slots[(worker_id - 1) * self.cores + core_id]

    def core_views(self, worker_id: int, core_id: int) -> tuple[memoryview, memoryview]:
        """A core's slot as memoryviews, for its own writer (an item costs less than a ctypes
        field): its u64 counters (indexed by REQUESTS, ..., RUNNING_TIME) and its
        request_start (item 0)."""
        at = self._cores_at + ctypes.sizeof(CoreSlot) * ((worker_id - 1) * self.cores + core_id)
        start = at + CoreSlot.request_start.offset  # type: ignore[attr-defined]
        counters = memoryview(self._map)[at : at + 8 * (RUNNING_TIME + 1)].cast("Q")
        request_start = memoryview(self._map)[start : start + 8].cast("d")
        self._views += [counters, request_start]
        return counters, request_start

    def delta_requests_view(self, worker_id: int) -> memoryview:
        """A worker slot's delta_requests as item 0 of a memoryview (for its worker)."""
        at = self._workers_at + ctypes.sizeof(WorkerSlot) * (worker_id - 1) \
            + WorkerSlot.delta_requests.offset  # type: ignore[attr-defined]
        view = memoryview(self._map)[at : at + 8].cast("Q")
        self._views.append(view)
        return view

    def cores_of(self, worker_id: int) -> list[CoreSlot]:
        start = (worker_id - 1) * self.cores
        return list(self.core_slots[start : start + self.cores])

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
        return sum(core.requests for core in self.core_slots)

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
        # the ctypes views export the buffer; drop them before unmapping
        for view in self._views:
            view.release()
        del self.header, self.workers, self.core_slots
        self._map.close()


def _align(size: int, to: int = 64) -> int:
    return (size + to - 1) // to * to
