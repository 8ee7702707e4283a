"""cron's time matching and scheduling, the daemons' throttle and pidfile rules, and the
values of their options (pure: an injected clock, no process started)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from uzerg.config.service_values import (
    CronSpec,
    parse_attach_daemon2,
    parse_cron,
    parse_cron2,
    parse_smart_attach_daemon,
    parse_unique_cron,
)
from uzerg.processes.cron import Cron, CronTask, cron_matches
from uzerg.processes.daemons import read_pidfile, throttle_seconds


def _at(text: str) -> time.struct_time:
    """A local time from "YYYY-MM-DD HH:MM"."""
    return time.strptime(text, "%Y-%m-%d %H:%M")


def _spec(line: str) -> CronSpec:
    return parse_cron(line + " true")


@pytest.mark.parametrize("line, moment, expected", [
    ("-1 -1 -1 -1 -1", "2026-11-30 01:37", True),  # every minute
    ("-5 -1 -1 -1 -1", "2026-11-30 01:35", True),  # every 5 minutes
    ("-5 -1 -1 -1 -1", "2026-11-30 01:37", False),
    ("0 -1 -1 -1 -1", "2026-11-30 14:00", True),  # hourly
    ("0 -1 -1 -1 -1", "2026-11-30 14:01", False),
    ("30 2 -1 -1 -1", "2026-11-30 02:30", True),
    ("30 2 -1 -1 -1", "2026-11-30 03:30", False),
    ("-10 8 -1 -1 -1", "2026-11-30 08:20", True),  # the corpus: every 10 min at 8h
    ("-10 8 -1 -1 -1", "2026-11-30 09:20", False),
    ("0 0 1 -1 -1", "2026-12-01 00:00", True),  # monthly
    ("0 0 1 -1 -1", "2026-12-02 00:00", False),
    ("0 0 -1 -1 0", "2026-11-29 00:00", True),  # Sunday (2026-11-29 is one)
    ("0 0 -1 -1 7", "2026-11-29 00:00", True),  # 7 is Sunday too
    ("0 0 -1 -1 0", "2026-11-30 00:00", False),  # Monday
    ("0 0 1 -1 1", "2026-11-30 00:00", True),  # day and weekday given: either (Monday)
    ("0 0 1 -1 1", "2026-12-01 00:00", True),  # ... or the 1st (a Tuesday)
    ("0 0 1 -1 1", "2026-12-02 00:00", False),
    ("0 0 1 1 -1", "2027-01-01 00:00", True),  # yearly
    ("0 0 1 1 -1", "2026-12-01 00:00", False),
    ("0 0 -1 -2 -1", "2026-12-01 00:00", True),  # every 2 months: even months
    ("0 0 -1 -2 -1", "2026-11-01 00:00", False),
])
def test_matching_as_uwsgi(line: str, moment: str, expected: bool) -> None:
    assert cron_matches(_spec(line), _at(moment)) is expected


class Clock:
    def __init__(self, text: str) -> None:
        self.now = time.mktime(_at(text))

    def __call__(self) -> float:
        return self.now


def test_a_task_runs_once_per_matching_minute_and_unique_waits_for_its_run() -> None:
    clock = Clock("2026-11-30 01:37")
    task = CronTask(_spec("-1 -1 -1 -1 -1"), harakiri=0)
    now = int(clock())
    assert task.due(now, time.localtime(now))  # at start-up already
    task.last_job = now
    for second in (1, 30, 59):
        assert not task.due(now + second, time.localtime(now + second))
    assert task.due(now + 60, time.localtime(now + 60))
    unique = CronTask(parse_unique_cron("-1 -1 -1 -1 -1 sleep 100"), harakiri=0)
    unique.pid, unique.last_job = 1234, now
    assert not unique.due(now + 120, time.localtime(now + 120))  # still running
    unique.pid = -1
    assert unique.due(now + 120, time.localtime(now + 120))


def test_harakiri_comes_from_cron2_else_cron_harakiri() -> None:
    cron = Cron([parse_cron2("harakiri=5 sleep 9"), parse_cron2("harakiri=0 sleep 9"),
                 _spec("-1 -1 -1 -1 -1")], cron_harakiri=30, clock=Clock("2026-11-30 01:37"))
    assert [task.harakiri for task in cron.tasks] == [5, 0, 30]
    task = cron.tasks[0]
    task.pid, task.started_at = 99, 1000
    assert not task.overdue(1005) and task.overdue(1006)
    task.killed = True
    assert not task.overdue(2000)
    assert not cron.tasks[1].overdue(10**9)


def test_cron_values() -> None:
    spec = parse_cron("-15 -1 -1 -1 -1 ./manage.py runjobs quarter_hourly")
    assert (spec.minute, spec.hour, spec.command) == (-15, -1, "./manage.py runjobs quarter_hourly")
    spec = parse_cron2("minute=-5,hour=3,unique=1 echo a b")
    assert (spec.minute, spec.hour, spec.day, spec.unique, spec.command) == \
        (-5, 3, -1, True, "echo a b")
    for bad, message in (("1 2 3 echo", "invalid cron syntax"),
                         ("a b c d e cmd", "invalid cron syntax"),
                         ("1 2 3 4 5", "invalid cron syntax")):
        with pytest.raises(ValueError, match=message):
            parse_cron(bad)
    for bad, message in (("echo hello", "unable to parse cron definition"),
                         ("minute=1", "unable to parse cron definition"),
                         ("minute=1,legion=x cmd", "uzerg has no legions"),
                         ("second=1 cmd", "unknown key 'second'")):
        with pytest.raises(ValueError, match=message):
            parse_cron2(bad)


def test_daemon_values() -> None:
    spec = parse_smart_attach_daemon("/run/x.pid,3 memcached -d -P /run/x.pid")
    assert (spec.pidfile, spec.freq, spec.command, spec.smart) == \
        ("/run/x.pid", 3, "memcached -d -P /run/x.pid", True)
    spec = parse_attach_daemon2("cmd=redis-server,stopsignal=2,reloadsignal=1,touch=/a;/b,"
                                "max_throttle=7,stdin=1,freq=4")
    assert (spec.command, spec.stop_signal, spec.reload_signal, spec.touch, spec.max_throttle,
            spec.honour_stdin, spec.smart) == ("redis-server", 2, 1, ("/a", "/b"), 7, True, False)


@pytest.mark.parametrize("elapsed, respawns, max_throttle, expected", [
    (10, 50, 0, 0),  # more than 3 s since the last spawn: no wait
    (4, 50, 0, 0),
    (3, 1, 0, 1),  # at least a second
    (1, 5, 0, 4),  # respawns - elapsed
    (0, 1000, 0, 300),  # at most 5 minutes
    (0, 1000, 20, 20),  # or max_throttle
])
def test_throttle(elapsed: int, respawns: int, max_throttle: int, expected: int) -> None:
    assert throttle_seconds(1000 + elapsed, 1000, respawns, max_throttle) == expected


def test_read_pidfile(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    assert read_pidfile(str(path)) == -1
    path.write_text(f"{os.getpid()}\n")
    assert read_pidfile(str(path)) == os.getpid()
    path.write_text("garbage")
    assert read_pidfile(str(path)) == -1
    path.write_text("4194304999")  # no such process
    assert read_pidfile(str(path)) == -1
