"""Tools for the person on call (issue 12): ``zerg-wait``, ``uzerg --zerg-probe`` and
``uzerg --zerg-status``, against real pools and zergs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.clients import get
from support.processes import InstanceStarter, free_port, wait_until, write_version_app


def _uzerg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uzerg", *args], capture_output=True,
                          text=True, timeout=30)


def test_zerg_wait_attaches_to_a_pool_started_later(uzerg: InstanceStarter,
                                                    tmp_path: Path) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    pool = str(tmp_path / "pool.sock")
    port = free_port()
    zerg = uzerg.start(["--zerg", pool, "--zerg-wait", "30", "--protocol", "http",
                        "--wsgi-file", str(app)], wait_workers=None)
    zerg.wait_for_log(f"zerg server {pool} is not up yet (No such file or directory)")
    started = uzerg.start(["--zergpool", f"{pool}:127.0.0.1:{port}"], wait_workers=None)
    started.wait_for_log(f"*** Zerg server enabled on {pool} ***")
    zerg.wait_for_log("zerg sockets attached")
    zerg.worker_pids(1)
    assert get(f"127.0.0.1:{port}").startswith("v1 ")
    # a pool that went away (its socket file left behind: connection refused) is waited for too
    started.stop(signal.SIGKILL)
    late = uzerg.start(["--zerg", pool, "--zerg-wait", "30", "--protocol", "http",
                        "--wsgi-file", str(app)], wait_workers=None)
    late.wait_for_log("is not up yet (Connection refused)")
    assert late.process.poll() is None


def test_without_zerg_wait_the_first_refusal_counts(uzerg: InstanceStarter,
                                                    tmp_path: Path) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    pool = str(tmp_path / "pool.sock")
    inst = uzerg.start(["--zerg", pool, "--wsgi-file", str(app)], wait_workers=None)
    assert inst.wait_exit() == 1
    assert f"--- unable to connect to zerg server {pool} ---" in inst.log_text()
    began = time.monotonic()
    inst = uzerg.start(["--zerg", pool, "--zerg-wait", "1", "--wsgi-file", str(app)],
                       wait_workers=None)
    assert inst.wait_exit() == 1
    assert time.monotonic() - began >= 1.0  # it waited the whole deadline, then gave up
    assert f"--- unable to connect to zerg server {pool} ---" in inst.log_text()


def test_zerg_probe_and_zerg_status(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    pool = str(tmp_path / "pool.sock")
    ports = [free_port(), free_port()]
    stats = str(tmp_path / "stats.sock")
    http_stats = f"127.0.0.1:{free_port()}"
    pool_inst = uzerg.start(["--zergpool", f"{pool}:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}",
                             "--stats", stats], wait_workers=None)
    pool_inst.wait_for_log(f"*** Zerg server enabled on {pool} ***")

    result = _uzerg("--zerg-probe", pool)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{pool}: 2 sockets in 1 message(s), no protocol hint"
    assert f"127.0.0.1:{ports[1]}" in lines[2]

    zergs = [uzerg.start(["--zerg", pool, "--protocol", "http", "--wsgi-file", str(app)])
             for _ in range(2)]
    result = _uzerg("--zerg-status", stats, "--json")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["kind"] == "zergpool" and entry["address"] == pool
    assert sorted(z["pid"] for z in entry["zergs"]) == sorted(z.pid for z in zergs)
    assert all(z["sockets"] == [0, 1] for z in entry["zergs"])
    text = _uzerg("--zerg-status", stats).stdout
    assert f"zergpool {pool}: 2 sockets, 2 zergs attached" in text
    assert f"pid {zergs[0].pid}" in text

    zergs[0].stop()  # a zerg that left is no longer listed
    entry = json.loads(_uzerg("--zerg-status", stats, "--json").stdout)[0]
    assert [z["pid"] for z in entry["zergs"]] == [zergs[1].pid]

    # the same through stats-http, from a zerg server (a uzerg instance that serves too)
    server_app = write_version_app(tmp_path / "server.py", "server")
    server = uzerg.start(["--wsgi-file", str(server_app), "--http-socket", "127.0.0.1:0",
                          "--zerg-server", str(tmp_path / "zs.sock"),
                          "--stats", http_stats, "--stats-http"])
    server.wait_for_log("*** Zerg server enabled")
    zerg = uzerg.start(["--zerg", str(tmp_path / "zs.sock"), "--wsgi-file", str(app)])
    wait_until(lambda: f"pid {zerg.pid}" in _uzerg("--zerg-status", http_stats).stdout, 10,
               "the zerg in --zerg-status")

    # errors: one line each
    for args, message in (
        (["--zerg-status", str(tmp_path / "nothing.sock")], "cannot read the stats server"),
        (["--zerg-probe", str(tmp_path / "nothing.sock")], "unable to connect to zerg server"),
        (["--zerg-status", pool], "that is a zerg server or zergpool, not a stats server"),
    ):
        result = _uzerg(*args)
        assert result.returncode == 1
        assert result.stderr.startswith("uzerg: ") and message in result.stderr
        assert "Traceback" not in result.stderr
    plain_stats = f"127.0.0.1:{free_port()}"
    uzerg.start(["--wsgi-file", str(app), "--http-socket", "127.0.0.1:0",
                 "--stats", plain_stats])
    result = _uzerg("--zerg-status", plain_stats)
    assert result.returncode == 1 and "has no zerg server or zergpool" in result.stderr
