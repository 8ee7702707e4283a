"""Helpers of the instance-level zerg tests (integration/test_zerg_*.py): an app that says who
answered, a client loop that runs requests from threads throughout a scenario and records every
outcome, and small one-shot clients for HTTP and uwsgi sockets.

Instances are started with the harness (``uzerg`` fixture); the real uWSGI binary with the peer
fixtures (``start_uwsgi``). Everything here polls with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from harness import Instance, http_get
from peer_helpers import uwsgi_request, wait_until

__all__ = ["ClientLoop", "get", "pids_of", "wait_until", "write_version_app"]


def write_version_app(path: Path, version: str = "v1", delay_ms: int = 0) -> Path:
    """A WSGI app answering ``VERSION PID`` (``/?ms=N`` sleeps N ms first, default
    ``delay_ms``), the same for uzerg and uWSGI; rewriting it with another version and
    reloading shows which code serves."""
    path.write_text(f'''
import os, time

def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    ms = int(query[3:]) if query.startswith("ms=") else {delay_ms}
    if ms:
        time.sleep(ms / 1000)
    body = "{version} %d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
''')
    return path


def get(address: str, protocol: str = "http", path: str = "/", timeout: float = 10) -> str:
    """One request to ``address`` (``http`` or ``uwsgi`` protocol); the body of a 200 answer.
    Raises AssertionError for another status, OSError for a transport failure."""
    if protocol == "http":
        status, body = http_get(address, path, timeout=timeout)
    else:
        raw = uwsgi_request(address, path, timeout=timeout)
        head, _, body = raw.partition(b"\r\n\r\n")
        first = head.split(b"\r\n", 1)[0].split(b" ")
        if len(first) < 2 or not first[1].isdigit():
            raise ConnectionError(f"no valid response from {address}: {raw[:200]!r}")
        status = int(first[1])
    if status != 200:
        raise AssertionError(f"status {status} from {address}: {body[:200]!r}")
    return body.decode()


def pids_of(*instances: Instance) -> set[int]:
    """The current worker pids of instances (uzerg Instances or peer ``Server`` handles)."""
    pids: set[int] = set()
    for instance in instances:
        pids.update(instance.worker_pids())
    return pids


class ClientLoop:
    """``concurrency`` threads doing requests back to back (round-robin over ``addresses``)
    until stopped, ``limit`` requests or ``seconds`` have passed; every answer body and every
    failure (with its time) is recorded. The client timeout is long: a connection made while
    nobody accepts waits in the backlog, and that is not a failure if it is served later."""

    def __init__(self, addresses: list[str] | str, protocol: str = "http", path: str = "/",
                 concurrency: int = 2, limit: int = 20000, seconds: float = 90,
                 timeout: float = 30) -> None:
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        self.protocol = protocol
        self.path = path
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.timeout = timeout
        self.bodies: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._issued = 0
        self._done = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True)
                        for index in range(concurrency)]
        for thread in self.threads:
            thread.start()

    def _next(self) -> int | None:
        with self._lock:
            if self._done.is_set() or self._issued >= self.limit or \
                    time.monotonic() > self.deadline:
                return None
            self._issued += 1
            return self._issued

    def _run(self, index: int) -> None:
        while (number := self._next()) is not None:
            address = self.addresses[(number + index) % len(self.addresses)]
            try:
                self.bodies.append(get(address, self.protocol, self.path, self.timeout))
            except (OSError, AssertionError) as exc:
                self.errors.append(f"{time.strftime('%X')} {address}: {exc!r}")

    @property
    def count(self) -> int:
        return len(self.bodies)

    def wait_for_more(self, more: int, timeout: float = 20, what: str = "answers") -> None:
        """Wait until ``more`` answers beyond the current count have arrived."""
        target = self.count + more
        wait_until(lambda: self.count >= target or self.errors, timeout, f"{more} more {what}")
        assert not self.errors, self.errors[:5]

    def wait_for(self, predicate: object, timeout: float = 20, what: str = "an answer") -> None:
        """Wait until an answer (arriving from now on) satisfies ``predicate(body)``."""
        start = self.count

        def seen() -> bool:
            return bool(self.errors) or any(predicate(b)  # type: ignore[operator]
                                            for b in self.bodies[start:])
        wait_until(seen, timeout, what)
        assert not self.errors, self.errors[:5]

    def served_by(self, start: int = 0) -> Counter[int]:
        """How many answers each pid gave (bodies are ``VERSION PID``)."""
        return Counter(int(body.rsplit(" ", 1)[1]) for body in self.bodies[start:])

    def stop(self) -> None:
        self._done.set()
        for thread in self.threads:
            thread.join(self.timeout + 10)
        assert not any(t.is_alive() for t in self.threads), "client threads did not finish"
