"""touch-chain-reload (uWSGI's chain reload; a real config of the corpus uses it with
lazy-apps): touching the file replaces the workers one at a time, the next only once the new
one is ready, and requests keep being answered throughout."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from support.processes import InstanceStarter, free_port, wait_until

pytestmark = pytest.mark.timeout(90)

APP = """\
import os
VERSION = open(os.path.join(os.path.dirname(__file__), "version")).read().strip()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{VERSION} {os.getpid()}".encode()]
"""


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return response.read().decode()


def test_touch_chain_reload_replaces_workers_one_by_one(uzerg: InstanceStarter,
                                                        tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "version").write_text("v1")
    trigger = tmp_path / "uwsgi.ini.touch"
    trigger.write_text("")
    port = free_port()
    inst = uzerg.start(["--master", "--lazy-apps", "-p", "3", "--http-socket",
                        f"127.0.0.1:{port}", "--wsgi-file", str(tmp_path / "app.py"),
                        "--touch-chain-reload", str(trigger)], wait_workers=3)
    old = set(inst.worker_pids(3))
    assert _get(port).startswith("v1 ")
    failures: list[str] = []
    answers: list[str] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                answers.append(_get(port))
            except OSError as exc:
                failures.append(str(exc))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        (tmp_path / "version").write_text("v2")
        mark = inst.mark()
        future = time.time() + 5
        os.utime(trigger, (future, future))
        inst.wait_for_log("chain reloading complete", since=mark, timeout=60)
    finally:
        done.set()
        thread.join(30)
    log = inst.log_text()[mark:]
    assert f"*** {trigger} has been touched... chain reload !!! ***" in log
    steps = [log.index(f"chain next victim is worker {wid}") for wid in (1, 2, 3)]
    respawns = [log.index(f"Respawned uWSGI worker {wid} ") for wid in (1, 2, 3)]
    assert steps[0] < respawns[0] < steps[1] < respawns[1] < steps[2] < respawns[2]
    assert failures == []
    assert answers
    new = set(inst.worker_pids(3))
    assert not new & old
    wait_until(lambda: _get(port).startswith("v2 "), 10, "fresh code")
    assert all(_get(port).startswith("v2 ") for _ in range(6))
    uzerg.track(inst)
    assert inst.stop() == 0
