"""The churn soak of issue 11 for 60 s (integration/soak.py): zergs started, stopped (SIGINT,
SIGQUIT, SIGTERM), reloaded, the main instance paused and resumed, workers SIGKILLed and the
pool reloaded, under HTTP and uwsgi traffic. Deselect it with ``-m 'not soak'``."""

from __future__ import annotations

from pathlib import Path

import pytest
import soak

pytestmark = [pytest.mark.soak, pytest.mark.timeout(300)]


def test_churn_soak_loses_only_requests_in_flight_in_killed_workers(tmp_path: Path) -> None:
    args = soak.parse_args(["--seconds", "60", "--workdir", str(tmp_path)])
    report = soak.run(args.seconds, args.workdir, seed=11, clients=args.clients)
    print(report.table())
    assert sum(report.answered.values()) > 1000, report.table()
    assert not report.unexplained, report.table()
    assert not report.leaks, report.table()
    assert not report.left_behind, report.table()
    assert not report.churn_errors, report.table()
    kinds = {action.kind for action in report.actions}
    # the churn did churn: every kind of action has had its turn in 60 s
    assert {"start", "kill-worker", "reload", "pause", "resume"} <= kinds, report.table()
    assert report.ok
