"""The stats server (SPEC §12): the JSON document, --stats-http, and uwsgitop reading it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.clients import http_get, read_stats
from support.peers import read_uwsgitop_screen
from support.processes import InstanceStarter, wait_until

WORKER_FIELDS = {
    "id", "pid", "accepting", "requests", "delta_requests", "exceptions", "harakiri_count",
    "signals", "signal_queue", "status", "rss", "vsz", "running_time", "last_spawn",
    "respawn_count", "tx", "avg_rt", "apps", "cores",
}


def test_stats_document_fields(uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--socket", str(tmp_path / "u.sock"),
                        "--wsgi-file", str(app_file), "--processes", "2", "--stats", stats],
                       wait_workers=2)
    address = inst.address(1)
    for _ in range(5):
        http_get(address)
    try:
        http_get(address, "/crash")
    except OSError:
        pass
    # the worker may still be logging the traceback after the 500 went out
    doc = wait_until(lambda: (d := read_stats(stats)) and all(
        w["status"] == "idle" for w in d["workers"]) and d, 10, "idle workers")
    assert isinstance(doc, dict)
    for key in ("version", "listen_queue", "listen_queue_errors", "load", "pid", "uid", "gid",
                "cwd", "sockets", "workers"):
        assert key in doc, key
    assert doc["pid"] == inst.pid
    assert [s["proto"] for s in doc["sockets"]] == ["uwsgi", "http"]
    assert doc["sockets"][1]["name"] == address and doc["sockets"][1]["max_queue"] == 100
    assert set(doc["sockets"][0]) >= {"name", "proto", "queue", "max_queue", "shared",
                                      "can_offload"}
    assert [w["id"] for w in doc["workers"]] == [1, 2]
    for worker in doc["workers"]:
        assert WORKER_FIELDS <= set(worker)
        assert worker["status"] == "idle" and worker["accepting"] == 1
        assert worker["rss"] > 0 and worker["last_spawn"] > 0
        assert {"id", "requests", "in_request"} <= set(worker["cores"][0])
    assert sum(w["requests"] for w in doc["workers"]) == 6
    assert sum(w["exceptions"] for w in doc["workers"]) == 1
    assert sum(w["tx"] for w in doc["workers"]) > 0


def test_stats_http_wraps_the_document(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--stats", "127.0.0.1:0", "--stats-http"])
    line = inst.wait_for_log("*** Stats server enabled on")
    stats_address = line.split(" on ", 1)[1].split()[0]  # port 0: the log names the real one
    status, body = http_get(stats_address)
    assert status == 200 and b'"workers"' in body


@pytest.mark.interop
def test_uwsgitop_displays_the_workers(uzerg: InstanceStarter, app_file: Path,
                                       tmp_path: Path) -> None:
    uwsgitop = shutil.which("uwsgitop")
    if uwsgitop is None:
        pytest.skip("uwsgitop is not installed")
    stats = str(tmp_path / "stats.sock")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--processes", "2", "--stats", stats], wait_workers=2)
    for _ in range(4):
        http_get(inst.address(0))
    pids = inst.worker_pids(2)
    screen = read_uwsgitop_screen(
        uwsgitop, stats,
        lambda text: all(str(pid).encode() in text for pid in pids) and b"req: 4" in text,
        uzerg.pids)
    assert b"uwsgi-uzerg" in screen and b"req: 4" in screen, screen[-2000:]
    for pid in pids:
        assert str(pid).encode() in screen
