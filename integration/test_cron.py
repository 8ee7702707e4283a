"""cron, unique-cron, cron2 and cron-harakiri (issue 10) with real commands.

No test waits for a minute boundary: a task whose fields match the current minute runs as soon
as the master starts (uWSGI does the same: its last run is "never"), so ``-1 -1 -1 -1 -1``
(every minute) runs within a second or two; a task for a minute 30 minutes away must not run.
When a task runs again (once a minute, unique tasks not while alive) is decided by pure code,
tested in tests/test_cron_and_daemon_rules.py with an injected clock."""

from __future__ import annotations

import time
from pathlib import Path

from support.processes import InstanceStarter, wait_until


def test_cron_tasks_run_when_their_fields_match(uzerg: InstanceStarter, app_file: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    elsewhere = (time.localtime().tm_min + 30) % 60
    inst = uzerg.start([
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file), "--master",
        "--cron", f"-1 -1 -1 -1 -1 echo every-minute >> {out}",
        "--unique-cron", f"-1 -1 -1 -1 -1 echo unique >> {out}",
        "--cron2", f"minute=-1 echo cron2 >> {out}",
        "--cron", f"{elsewhere} -1 -1 -1 -1 echo never >> {out}",
    ], wait_workers=None)
    wait_until(lambda: out.exists() and len(out.read_text().split()) == 3, 15, "three runs")
    assert sorted(out.read_text().split()) == ["cron2", "every-minute", "unique"]
    log = inst.log_text()
    assert f'[uwsgi-cron] command "echo never >> {out}" registered as cron task' in log
    assert f'[uwsgi-cron] running "echo every-minute >> {out}" (pid ' in log
    wait_until(lambda: "exited after" in inst.log_text(), 10, "a run reaped")
    assert inst.stop() == 0
    assert "never" not in out.read_text()


def test_cron_harakiri_kills_a_run_that_takes_too_long(uzerg: InstanceStarter, app_file: Path,
                                                       tmp_path: Path) -> None:
    inst = uzerg.start([
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file), "--master",
        "--cron2", "minute=-1,harakiri=1 sleep 60",
        "--cron-harakiri", "1", "--cron", "-1 -1 -1 -1 -1 sleep 61",
        "--cron2", "minute=-1,harakiri=0 sleep 2",
    ], wait_workers=None)
    inst.wait_for_log('*** HARAKIRI ON CRON "sleep 60" (pid: ', timeout=10)
    inst.wait_for_log('*** HARAKIRI ON CRON "sleep 61" (pid: ', timeout=10)
    inst.wait_for_log('[uwsgi-cron] command "sleep 2" running with pid', timeout=10)
    assert 'HARAKIRI ON CRON "sleep 2"' not in inst.log_text()
    inst.wait_for_log('[uwsgi-cron] command "sleep 60" running with pid', timeout=10)
    assert inst.stop() == 0
