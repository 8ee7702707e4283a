"""What a zerg loads before its first answer is start-up time (issue 13): the modules that cost
the most, and uzerg's own modules for features not configured, stay unloaded. The app answers
with its worker's ``sys.modules``: what the master loaded before the fork, and the worker after."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.clients import get, http_get
from support.processes import InstanceStarter, start_zerg, wait_until

import uzerg

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
    "resource": "max-fd only; a worker reads its descriptor limit with os.sysconf",
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
    "uzerg.processes.zerg_listeners": "zerg-server and zergpool only",
    "typing": "~3 ms: type checkers' names only, in `if TYPE_CHECKING:` blocks",
    "urllib.parse": "imports ipaddress; uzerg.serve.environ has its own unquote",
    "ipaddress": "~1.5 ms; the loopback check packs the address",
    "threading": "threads > 1 and py-autoreload only (load_thread_support)",
    "uzerg.emperor.main": "the Emperor only",
    "uzerg.emperor.emperor": "the Emperor only",
    "uzerg.processes.takeover": "takeover only",
    "uzerg.serve.static": "static-map and its family only",
    "uzerg.serve.static_rules": "static-map and its family only",
    "uzerg.config.uwsgi_options": "an option uzerg does not have only",
    # the HTTP side: loaded by the master when a socket speaks HTTP (preload.load_http_support)
    "uzerg.serve.http_requests": "HTTP sockets only (a uwsgi zerg's handler is http=False)",
    "uzerg.serve.http_body": "HTTP sockets only",
    "uzerg.serve.environ": "HTTP sockets only (uwsgi requests: uzerg.serve.uwsgi_environ)",
    "uzerg.protocols.http": "HTTP sockets only",
    "uzerg.protocols.http_stream": "HTTP sockets only",
    "uzerg.protocols.https_redirect": "http-to-https sockets only",
    "uzerg.emperor": "the Emperor and a vassal only",
    "uzerg.emperor.channel": "the Emperor and a vassal only (the instance spells its names)",
    "uzerg.processes.idle": "idle and cheap only",
    "uzerg.processes.lifecycle": "takeover and NOTIFY_SOCKET (readiness) only",
    "uzerg.serve.headers": "add-header and del-header only",
    "uzerg.serve.requestlog": "request lines only (off: disable-logging without log-4xx...)",
    "uzerg.processes.hooks": "hook-, exec- and call- phases and hook-touch only (hook_phases)",
    "uzerg.systemd": "socket activation (LISTEN_FDS), fd:// sockets and NOTIFY_SOCKET only",
    "grp": "a user or group name only (uid, gid, chown-socket, %U/%G)",
    "pwd": "a user or group name only (uid, gid, chown-socket, %U/%G)",
    "uzerg.config.expand": "a value with $(...), @(...) or %(...) only",
    "uzerg.config.service_values": "hooks, daemons, cron, https and mules only",
    "uzerg.config.serving_values": "header and static-file options only",
    "uzerg.config.log_values": "loggers, log routes and encoders, log-date only",
    "signal": "~3M instructions of IntEnum conversions; uzerg uses _signal",
    "math": "a shared library to load for math.inf (parked.py's is float('inf'))",
    "encodings.ascii": "a text codec for the somaxconn file (read as bytes)",
    "socket": "~11M instructions of IntEnum conversions (~14M with selectors); a zerg uses "
              "_socket (binding, a reload, TLS, stats and the zerg server load socket)",
    "selectors": "~2.5M instructions; the master's loop drives an epoll (services.Watches)",
    "re": "~15M instructions with enum, a third of a zerg's own start when the app loads "
          "neither; config values and declare-option import it for a value that needs a pattern",
    "enum": "re's (and socket's, signal's) import",
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
    # request logging off, as the benchmarks' zerg (bench/start_instructions.py)
    start_zerg(uzerg, app, pool_address, workers=1, extra=("--master", "--disable-logging"))
    loaded = set(get(tcp, "uwsgi").split())
    assert "uzerg.processes.worker" in loaded  # the list is a worker's
    assert "modules_app" in loaded or any("modules_app" in name for name in loaded)
    # what the interpreter loads before any of uzerg (site's .pth files: an editable install's
    # finder loads pathlib, typing, urllib...) is not uzerg's doing
    costly = (loaded - _interpreter_modules()) & COSTLY.keys()
    assert not costly, {name: COSTLY[name] for name in costly}


def _interpreter_modules() -> set[str]:
    out = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=30)
    return set(out.stdout.split())


def test_the_start_up_path_imports_none_of_them_without_site() -> None:
    # the same modules as a zerg's start (the command, the configuration, the instance with
    # the master, worker and request path, the zerg client), in an interpreter without site
    # (-S: no .pth file loads anything first), so every costly module would be uzerg's
    package_root = str(Path(uzerg.__file__).resolve().parents[1])
    code = ("import gc, sys; gc.disable(); import uzerg.cli, uzerg.config.load, "
            "uzerg.processes.instance, uzerg.zerg.client; print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, timeout=30, env={**os.environ, "PYTHONPATH": package_root})
    loaded = set(out.stdout.split())
    assert "uzerg.processes.worker" in loaded and "uzerg.serve.request" in loaded
    costly = loaded & COSTLY.keys()
    assert not costly, {name: COSTLY[name] for name in costly}


FORK_PROBE = '''
import os, sys


def mark(*_args):
    with open(os.environ["FORK_LOG"], "a") as out:
        out.write(f"{'uzerg.serve.http_requests' in sys.modules}\\n")
'''


@pytest.mark.parametrize("given_by", ["hint", "protocol"])
def test_a_zerg_of_http_sockets_has_the_http_side_loaded_before_the_fork(
        uzerg: InstanceStarter, tmp_path: Path, given_by: str) -> None:
    # a received socket speaks HTTP by the zerg server's hint (its --http-socket) or by the
    # zerg's --protocol http (a zergpool gives no hint): the master loads the HTTP side before
    # forking, so a worker has it at post-fork already (no import before its first answer)
    (tmp_path / "fork_probe.py").write_text(FORK_PROBE)
    app = tmp_path / "modules_app.py"
    app.write_text(APP)
    trace = tmp_path / "fork.log"
    server = str(tmp_path / "z.sock")
    if given_by == "hint":
        holder = uzerg.start(["--wsgi-file", str(app), "--zerg-server", server,
                              "--http-socket", "127.0.0.1:0"])
        holder.wait_for_log(f"*** Zerg server enabled on {server} ***")
        address, extra = holder.address(0), []
    else:
        holder = uzerg.start(["--master", "--zergpool", f"{server}:127.0.0.1:0"],
                             wait_workers=None)
        holder.wait_for_log("spawned uWSGI master process")
        address = BOUND.search(holder.log_text()).group(1)  # type: ignore[union-attr]
        extra = ["--protocol", "http"]
    env = {"FORK_LOG": str(trace),
           "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    zerg = uzerg.start(["--wsgi-file", str(app), "--processes", "1", "--zerg", server,
                        "--hook-post-fork", "call:fork_probe.mark", *extra],
                       wait_workers=1, env=env)
    zerg.wait_for_log("zerg sockets attached")
    wait_until(lambda: trace.exists() and trace.read_text(), 15, "the post-fork hook")
    assert trace.read_text().split() == ["True"]
    if given_by == "hint":
        holder.stop()  # only the zerg answers now
    assert "uzerg.serve.http_requests" in get(address, "http").split()


GC_PROBE = '''
import gc, os


def mark(phase=None):
    with open(os.environ["GC_LOG"], "a") as out:
        out.write(f"{phase} {gc.isenabled()}\\n")


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{gc.isenabled()} {gc.get_freeze_count() > 0}".encode()]
'''


def test_the_collector_is_off_while_uzerg_starts_and_on_where_code_runs(
        uzerg: InstanceStarter, tmp_path: Path) -> None:
    # issue 13: uzerg.cli.main turns gc off for uzerg's own start-up (imports, the option
    # table); the app, the master's loop and the workers run with it on
    (tmp_path / "gc_probe.py").write_text(GC_PROBE)
    trace = tmp_path / "gc.log"
    env = {"GC_LOG": str(trace), "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    inst = uzerg.start(["--master", "--processes", "2", "--http-socket", "127.0.0.1:0",
                        "--module", "gc_probe", "--hook-asap", "call:gc_probe.mark asap",
                        "--call-post-app", "gc_probe.mark",
                        "--hook-master-start", "call:gc_probe.mark master-start",
                        "--hook-post-fork", "call:gc_probe.mark post-fork"],
                       wait_workers=2, env=env)
    # a worker: on, with the master's start-up objects frozen before the fork
    assert http_get(inst.address())[1] == b"True True"
    wait_until(lambda: trace.exists() and "master-start" in trace.read_text()
               and trace.read_text().count("post-fork") == 2, 15, "the hooks")
    marks = trace.read_text().splitlines()
    assert marks[0] == "asap False"  # uzerg's start-up: off
    assert set(marks[1:]) == {"None True", "master-start True", "post-fork True"}, marks
