"""The scenarios of bench/suite.py and how each server is started for them.

A scenario names an app, how requests reach the server (``front``), the servers that take
part and wrk's settings. Fronts: ``http`` (--http-socket / gunicorn --bind), ``http11``
(keep-alive: --http11-socket / gunicorn gthread), ``uwsgi`` (--socket, wrk sends uwsgi
packets), ``nginx`` (nginx ``uwsgi_pass`` to --socket), ``zergpool`` (a uzerg zergpool holds
the socket, the server attaches with --zerg; wrk sends uwsgi packets to the pool's socket).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from compare import program

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
HELLO = BENCH / "hello_app.py"
FLASK = APPS / "flask_app.py"
DJANGO = APPS / "django_app.py"
ECHO = APPS / "echo_app.py"
SLEEP = APPS / "sleep_app.py"
MB = 1 << 20

ALL = ("uzerg", "uwsgi", "gunicorn-sync", "gunicorn-gthread")
UWSGI_LIKE = ("uzerg", "uwsgi")


@dataclass(frozen=True)
class Scenario:
    number: int  # the scenario number (1-7; 8 and 9 are in startup_memory.py)
    name: str
    app: Path
    front: str = "http"
    servers: tuple[str, ...] = ALL
    logging: bool = False
    connections: int = 16
    wrk_threads: int = 1
    threads: int = 1  # per worker
    script: str = ""  # wrk Lua script: "uwsgi" (packets), "post" (1 MB POST) or ""
    path: str = "/"
    static: bool = False  # serve a 1 MB file with static-map
    herd: bool = False  # report wake-ups per request of each worker


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "hello http", HELLO),
    Scenario(1, "hello http log", HELLO, logging=True),
    Scenario(1, "hello uwsgi", HELLO, front="uwsgi", servers=UWSGI_LIKE, script="uwsgi"),
    Scenario(1, "hello uwsgi log", HELLO, front="uwsgi", servers=UWSGI_LIKE, script="uwsgi",
             logging=True),
    Scenario(2, "hello nginx", HELLO, front="nginx", servers=UWSGI_LIKE),
    Scenario(2, "hello zergpool", HELLO, front="zergpool", servers=UWSGI_LIKE, script="uwsgi"),
    Scenario(3, "flask http", FLASK),
    Scenario(3, "flask nginx", FLASK, front="nginx", servers=UWSGI_LIKE),
    Scenario(3, "django http", DJANGO),
    Scenario(3, "django nginx", DJANGO, front="nginx", servers=UWSGI_LIKE),
    Scenario(4, "post 1MB echo", ECHO, connections=4, script="post"),
    Scenario(4, "static 1MB", HELLO, servers=UWSGI_LIKE, connections=4, static=True,
             path="/static/file.bin"),
    Scenario(5, "keep-alive", HELLO, front="http11",
             servers=("uzerg", "uwsgi", "gunicorn-gthread"), connections=2),
    Scenario(6, "threads=4 sleep 10ms", SLEEP, threads=4, connections=8),
    Scenario(7, "1000 connections", HELLO, servers=("uzerg", "uwsgi", "gunicorn-sync"),
             connections=1000, wrk_threads=2, herd=True),
)

POST_SCRIPT = (
    'wrk.method = "POST"\n'
    f'wrk.body = string.rep("x", {MB})\n'
    'wrk.headers["Content-Type"] = "application/octet-stream"\n'
)


def uzerg_command() -> list[str]:
    """What an operator runs: the ``uzerg`` console script installed beside this Python (pip
    writes it for ``pip install``, editable or not), else ``python -m uzerg``. Either imports
    uzerg from PYTHONPATH first when it is set (a worktree's code)."""
    script = Path(sys.executable).parent / "uzerg"
    return [str(script)] if script.exists() else [sys.executable, "-m", "uzerg"]


def uzerg_label() -> str:
    """How uzerg is started by the bench (printed with scenario 8)."""
    command = uzerg_command()
    return "the uzerg console script" if len(command) == 1 else "python -m uzerg"


def server_command(server: str, scenario: Scenario, address: str, workdir: Path) -> list[str]:
    """The command line of `server` for `scenario`, serving on `address` (host:port, or the
    zergpool's unix socket for the zergpool front)."""
    app = scenario.app
    if server.startswith("gunicorn"):
        kind = server.split("-", 1)[1]
        cmd = [program("gunicorn"), "--workers", "2", "--worker-class", kind, "--bind", address,
               "--chdir", str(app.parent), f"{app.stem}:application"]
        if kind == "gthread":
            cmd += ["--threads", str(scenario.threads)]
        return cmd + (["--access-logfile", "-"] if scenario.logging else [])
    cmd = uzerg_command() if server == "uzerg" else [program("uwsgi")]
    option = {"http": "--http-socket", "http11": "--http11-socket", "zergpool": "--zerg"}.get(
        scenario.front, "--socket")
    cmd += [option, address, "--processes", "2", "--master", "--wsgi-file", str(app),
            "--buffer-size", "8192"]
    if scenario.threads > 1:
        cmd += ["--threads", str(scenario.threads)]
    if scenario.static:
        cmd += ["--static-map", f"/static={workdir}"]
    if scenario.app in (FLASK, DJANGO):
        cmd += ["--pythonpath", str(app.parent)]
    return cmd + ([] if scenario.logging else ["--disable-logging"])


def zergpool_command(pool: Path, port: int) -> list[str]:
    return uzerg_command() + ["--zergpool", f"{pool}:127.0.0.1:{port}", "--master"]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    # .pyc files as an installed server has them (tox and some shells forbid writing them;
    # then every start recompiles uzerg's sources): cached in the bench's own directory
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                          / "uzerg-bench-pycache"))
    return env
