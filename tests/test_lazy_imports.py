"""Every import uzerg makes inside a function (to start faster) either happens before the
privilege drop only, or is imported ahead of the drop by import_before_privilege_drop: after
setuid the process may not be able to read the Python installation or the virtualenv, and a
failed import in the master would take the instance down."""

from __future__ import annotations

import ast
from pathlib import Path

from uzerg.processes.instance import LOADED_WHEN_NEEDED

PACKAGE = Path(__file__).resolve().parents[1] / "uzerg"

# imported inside functions that run only before the drop (config, binding, start-up, tools)
START_UP_ONLY = {
    "difflib", "glob", "importlib", "logging.config", "paste.deploy", "re",
    "setproctitle", "structlog", "sys", "email.utils", "mimetypes",  # load_file_support()
    "uzerg.addresses", "uzerg.commands", "uzerg.config.docs", "uzerg.config.load",
    "uzerg.config.expand", "uzerg.config.options", "uzerg.config.uwsgi_options",
    "uzerg.config.log_values", "uzerg.config.service_values", "uzerg.config.serving_values",
    "uzerg.config.values", "uzerg.emperor", "uzerg.emperor.emperor", "uzerg.emperor.main",
    "uzerg.processes.instance",
    "uzerg.serve.tls",  # loaded when an https socket is bound
    "uzerg.serve.static",  # loaded by the master when files are served (load_file_support)
    # loaded by the master when a socket speaks HTTP (preload.load_http_support)
    "uzerg.serve.http_requests",
    "uzerg.zerg",  # the attach, at start-up
    "uzerg.systemd",  # LISTEN_FDS, fd:// or NOTIFY_SOCKET: the sockets, the readiness service
    "uzerg.processes.zerg_listeners",  # zerg-server and zergpool: built with the instance
    "uzerg.serve.requestlog",  # loaded by the master before the fork when lines can be logged
    "uzerg.serve.headers",  # add-header, del-header: loaded by the master before the fork
    "uzerg.processes.lifecycle",  # takeover and NOTIFY_SOCKET: built with the instance
    "grp", "pwd", "resource",  # names in uid, gid and chown-socket: resolved before the drop
    # binding (the stats server, zerg server and pools import it themselves, all before the
    # drop), a reload's take_state, the attach's error line for a socket of another family
    "socket",
}


def function_level_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                names: list[str] = []
                if isinstance(sub, ast.Import):
                    names = [alias.name for alias in sub.names]
                elif isinstance(sub, ast.ImportFrom) and sub.module:
                    # `from uzerg.processes import stats` imports the module uzerg.processes.stats
                    names = [f"{sub.module}.{alias.name}" if sub.module.startswith("uzerg")
                             and sub.module.count(".") < 2 and alias.name.islower()
                             else sub.module for alias in sub.names]
                for name in names:
                    found.setdefault(name, set()).add(f"{path.name}:{node.name}")
    return found


def test_every_lazy_import_is_loaded_before_the_privilege_drop_or_start_up_only() -> None:
    unaccounted = {
        name: sorted(where) for name, where in function_level_imports().items()
        if name not in LOADED_WHEN_NEEDED and name not in START_UP_ONLY
        and name.rpartition(".")[0] not in START_UP_ONLY | {"uzerg.zerg"}
    }
    assert not unaccounted, f"add to LOADED_WHEN_NEEDED or START_UP_ONLY: {unaccounted}"


def test_the_list_names_importable_modules() -> None:
    import importlib

    for name in LOADED_WHEN_NEEDED:
        assert importlib.import_module(name).__name__ == name


def test_each_module_is_listed_once() -> None:
    # a module in both lists, or twice in one, is a list nobody checked
    assert len(set(LOADED_WHEN_NEEDED)) == len(LOADED_WHEN_NEEDED)
    assert not set(LOADED_WHEN_NEEDED) & START_UP_ONLY
