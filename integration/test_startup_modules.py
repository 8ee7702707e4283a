"""What a zerg loads before its first answer is start-up time (issue 13): the modules that cost
the most, and uzerg's own modules for features not configured, stay unloaded. The app answers
with its worker's ``sys.modules``: what the master loaded before the fork, and the worker after."""

from __future__ import annotations

import re
from pathlib import Path

from support.clients import get
from support.processes import InstanceStarter, start_zerg

# module -> why a plain zerg start must not load it
COSTLY = {
    "dataclasses": "imports inspect, ast, dis, tokenize; uzerg.record stands for it",
    "inspect": "~5 ms",
    "ssl": "~10 ms; an HTTPS socket's context loads it (uzerg.serve.tls)",
    "subprocess": "hooks that run commands only",
    "json": "stats, re-exec state, the json log encoder only",
    "traceback": "error paths only",
    "asyncio": "nothing in uzerg needs it",
    "structlog": "--log-json only",
    "psutil": "stats and takeover only",
    "email": "static-map only",
    "mimetypes": "static-map only",
    "difflib": "a mistyped option only",
    "glob": "for-glob only",
    "ctypes": "~2 ms with libffi; the scoreboard is struct fields over its mmap",
    "encodings.idna": "getaddrinfo gets ASCII host names as bytes",
    "uzerg.config.docs": "--help only",
    "uzerg.processes.cheaper": "cheaper mode only",
    "uzerg.processes.stats": "stats sockets only",
    "uzerg.emperor.link": "a vassal only",
    "uzerg.processes.hook_actions": "a hook's first step only",
    "uzerg.processes.cron": "cron only",
    "uzerg.processes.daemons": "attach-daemon and its family only",
    "uzerg.processes.logmaster": "log-master, loggers, log routes and encoders only",
    "uzerg.logsinks": "log-master, loggers, log routes and encoders only",
    "uzerg.zerg.server": "zerg-server and zergpool only",
    "uzerg.zerg.pool": "zergpool only",
}
APP = '''
import sys


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [" ".join(sorted(sys.modules)).encode()]
'''
BOUND = re.compile(r"zergpool \S+ bound to TCP socket (\S+) \(fd: \d+\)")


def test_a_zerg_answers_without_loading_costly_modules(uzerg: InstanceStarter,
                                                       tmp_path: Path) -> None:
    app = tmp_path / "modules_app.py"
    app.write_text(APP)
    pool_address = str(tmp_path / "p.pool")
    pool = uzerg.start(["--master", "--zergpool", f"{pool_address}:127.0.0.1:0"],
                       wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    tcp = BOUND.search(pool.log_text()).group(1)  # type: ignore[union-attr]
    start_zerg(uzerg, app, pool_address, workers=1, extra=("--master",))
    loaded = set(get(tcp, "uwsgi").split())
    assert "uzerg.processes.worker" in loaded  # the list is a worker's
    assert "modules_app" in loaded or any("modules_app" in name for name in loaded)
    costly = loaded & COSTLY.keys()
    assert not costly, {name: COSTLY[name] for name in costly}
