"""Broodlord mode: the uWSGI documentation's example (configs/broodlord.ini) under a load
ramp through nginx. The vassal's listen queue passes 10, it sends sos, the Emperor starts
zergs from the [zerg] stanza; when the load stops the zergs die on idle. Measured and printed
(shown without -s): time from the first sos to the first request a zerg takes, cold and from a
warm standby, peak zergs, time until the zergs are gone, failed requests (must be 0)."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.emperor import emperor_stats, event_time, json_events, start_emperor
from support.peers import nginx_available, running_nginx
from support.processes import InstanceStarter, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "configs" / "broodlord.ini"
# the app tells who served (0: the vassal, N: zerg number N) and when the request started
APP = '''
import os, time

def application(environ, start_response):
    started = time.time()
    time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %.6f" % (os.environ.get("UWSGI_BROODLORD_NUM", "0"), started)).encode()]
'''
CLIENTS = 16
IDLE = 2

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx not installed")


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[broodlord] {text}")


def vassal_copy(tmp_path: Path, socket_text: str) -> Path:
    """The documentation's example with the test's socket, zerg-server path, app and a
    short idle (the example's text is otherwise unchanged)."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    text = EXAMPLE.read_text()
    for old, new in (("socket = :3031", f"socket = {socket_text}"),
                     ("/tmp/broodlord.sock", str(tmp_path / "broodlord.sock")),
                     ("module = werkzeug.testapp:test_app", f"wsgi-file = {app}"),
                     ("idle = 30", f"idle = {IDLE}")):
        assert old in text
        text = text.replace(old, new)
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    (vassals / "broodlord.ini").write_text(text)
    return vassals


class Load:
    """CLIENTS keep-alive HTTP clients through nginx; every answer is (who, when started)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.answers: list[tuple[int, float]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(CLIENTS)]

    def start(self) -> None:
        for index, thread in enumerate(self.threads):  # a ramp: a new client every 50 ms
            thread.start()
            if index < len(self.threads) - 1:
                time.sleep(0.05)

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                if response.status != 200:
                    raise ValueError(f"status {response.status}: {body[:80]}")
                who, started = body.split()
                with self.lock:
                    self.answers.append((int(who), float(started)))
            except (OSError, ValueError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(40)


def active_zergs(stats: str) -> list[dict[str, Any]]:
    return [v for v in emperor_stats(stats)["vassals"] if v["zerg"] and not v["suspended"]]


def run_ramp(uzerg: InstanceStarter, tmp_path: Path, capsys: pytest.CaptureFixture[str],
             socket_kind: str, standby: int) -> None:
    if socket_kind == "tcp":
        port = free_port()
        socket_text = upstream = f"127.0.0.1:{port}"
    else:
        socket_text = str(tmp_path / "app.sock")
        upstream = f"unix:{socket_text}"
    vassals = vassal_copy(tmp_path, socket_text)
    extra = ["--emperor-broodlord", "40"]
    if standby:
        extra += ["--emperor-broodlord-standby", str(standby)]
    emperor, stats = start_emperor(uzerg, vassals, *extra, json_log=True)
    wait_until(lambda: any(v["ready"] for v in emperor_stats(stats)["vassals"]
                           if not v["zerg"]), 30, "the vassal up")
    if standby:
        emperor.wait_for_log("warm standby, workers paused", 30)
    with running_nginx(tmp_path, upstream) as nginx:
        load = Load(nginx.port)
        load.start()
        peak = 0
        last_growth = time.monotonic()
        deadline = time.monotonic() + 40
        try:
            # ramp until the zergs stop growing for 2.5 s (the queue fell below 10)
            while time.monotonic() < deadline:
                count = len(active_zergs(stats))
                uzerg.track(emperor)
                if count > peak:
                    peak, last_growth = count, time.monotonic()
                if peak and time.monotonic() - last_growth > 2.5:
                    break
                time.sleep(0.1)
        finally:
            load.finish()
        stopped = time.monotonic()
        wait_until(lambda: not active_zergs(stats), IDLE + 30, "the zergs gone after the load")
        shrink = time.monotonic() - stopped
    events = json_events(emperor)
    sos = [event_time(e) for e in events if e.get("event_kind") == "sos"]
    zerg_starts = [started for who, started in load.answers if who]
    assert sos, "no sos reached the Emperor"
    assert zerg_starts, "no request was served by a zerg"
    first_zerg_ms = (min(zerg_starts) - min(sos)) * 1000
    ready = [event_time(e) for e in events
             if e.get("event_kind") == "vassal_ready" and ":zerg" in e.get("vassal", "")]
    ready_text = (f" (zerg ready {(min(ready) - min(sos)) * 1000:.0f} ms after the sos)"
                  if ready and not standby else "")
    kind = f"warm standby ({standby})" if standby else "cold"
    report(capsys, f"{socket_kind} socket, {kind}: first sos -> first request on a zerg "
                   f"{first_zerg_ms:.1f} ms{ready_text}; peak zergs {peak}; all zergs gone "
                   f"{shrink:.1f} s after the load stopped (idle = {IDLE}); requests "
                   f"{len(load.answers)}, by zergs {len(zerg_starts)}, failed "
                   f"{len(load.failures)}")
    assert not load.failures, load.failures[:5]
    assert peak >= 1
    assert first_zerg_ms > 0
    if standby:
        assert any(e.get("event_kind") == "zerg_resumed" for e in events)


def test_broodlord_ramp_cold_tcp(uzerg: InstanceStarter, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_ramp(uzerg, tmp_path, capsys, "tcp", 0)


def test_broodlord_ramp_warm_standby_tcp(uzerg: InstanceStarter, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_ramp(uzerg, tmp_path, capsys, "tcp", 1)


def test_broodlord_ramp_unix_socket(uzerg: InstanceStarter, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Better than uWSGI: vassal-sos-backlog reads a unix socket's queue (sock_diag)."""
    run_ramp(uzerg, tmp_path, capsys, "unix", 0)
