"""idle = SECONDS (uWSGI's meaning): without requests for that long the instance goes cheap
(workers stopped, back on the next connection) or, with die-on-idle, exits; cheap starts
with no workers until the first connection."""

from __future__ import annotations

from pathlib import Path

from support.clients import http_get
from support.processes import InstanceStarter, wait_until


def test_idle_goes_cheap_and_the_next_connection_brings_the_workers_back(
        uzerg: InstanceStarter, app_file: Path) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--processes", "2", "--idle", "1"], wait_workers=2)
    address = instance.address()
    assert http_get(address)[0] == 200
    instance.wait_for_log("workers have been inactive for more than 1 seconds", 15)
    instance.wait_for_log("cheap mode enabled: waiting for socket connection...")
    wait_until(lambda: not instance.worker_pids(), 15, "no workers")
    status, body = http_get(address)  # waits in the queue while the workers come back
    assert status == 200 and body.startswith(b"hello")
    instance.worker_pids(2)
    instance.wait_for_log("cheap mode enabled", count=2, timeout=15)


def test_cheap_spawns_workers_on_the_first_connection(uzerg: InstanceStarter,
                                                      app_file: Path) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--cheap"], wait_workers=None)
    instance.wait_for_log("cheap mode enabled: waiting for socket connection...")
    address = instance.address()
    wait_until(lambda: not instance.worker_pids(), 15, "no workers")
    assert http_get(address)[0] == 200
    instance.worker_pids(1)


def test_die_on_idle_without_an_emperor_exits(uzerg: InstanceStarter, app_file: Path) -> None:
    instance = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--master", "--idle", "1", "--die-on-idle"])
    assert http_get(instance.address())[0] == 200
    assert instance.wait_exit(15) == 0
    assert "die-on-idle: shutting down" in instance.log_text()
