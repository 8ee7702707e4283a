"""uWSGI's Python options around the app (its python plugin): ``pyargv``, ``pymodule-alias``,
``shared-import`` and ``import``, ``eval``, ``paste``/``paste-logger`` (PasteDeploy, the
``paste`` extra), ``chdir2`` and the ``py-autoreload`` watcher.

- ``prepare_interpreter`` runs once in the master before any app code: sys.argv is
  ``["uwsgi", *pyargv.split()]``, aliases are made, shared imports imported (also with
  lazy-apps: what every process shares).
- ``import_app_modules`` runs where the app loads (master, or each worker with lazy-apps).
- ``ModuleWatcher``: every N seconds a worker thread compares the mtime of every loaded
  module's file; on a change it logs uWSGI's line and sends SIGHUP to the master (a graceful
  reload: fresh code in fresh processes).
"""

from __future__ import annotations

import _signal  # SIGHUP's number only: loaded with the interpreter (signal wraps it in enums)
import importlib
import importlib.util
import os
import sys
import types

from uzerg.config.model import Config
from uzerg.logs import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()


class PythonOptionError(Exception):
    """One line for the operator: the option and what went wrong."""


def add_python_paths(config: Config) -> None:
    """As uWSGI: "." (the --chdir directory) is importable, and each --pythonpath entry is
    inserted at the front in turn, so the last one given is searched first."""
    if "." not in sys.path:
        sys.path.insert(0, ".")
    for path in config.pythonpath:
        if path not in sys.path:
            sys.path.insert(0, path)
    importlib.invalidate_caches()  # "." may name another directory than when it was cached


def prepare_interpreter(config: Config) -> None:
    add_python_paths(config)
    if config.pyargv is not None:
        sys.argv = ["uwsgi", *config.pyargv.split()]
    for alias in config.pymodule_alias:
        name, _, target = alias.partition("=")
        sys.modules[name.strip()] = _import("pymodule-alias", target.strip())
    for target in config.shared_import:
        _import("shared-import", target)


def import_app_modules(config: Config) -> None:
    for target in config.python_import:
        _import("import", target)


def _import(option: str, target: str) -> types.ModuleType:
    """A dotted module name, or a file path (uWSGI imports ``*.py`` values by file name)."""
    try:
        if target.endswith(".py") or os.sep in target:
            name = os.path.splitext(os.path.basename(target))[0]
            spec = importlib.util.spec_from_file_location(name, target)
            if spec is None or spec.loader is None:
                raise ImportError(f"no such file {target}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(target)
    except (Exception, SystemExit) as exc:
        raise PythonOptionError(f"{option}: unable to import {target}: "
                                f"{type(exc).__name__}: {exc}") from None


def eval_application(code: str, callable_name: str) -> Any:
    """``eval``: run the code as the ``__main__``-like module ``uwsgi_eval`` and take its
    callable (uWSGI's eval loader)."""
    module = types.ModuleType("uwsgi_eval")
    try:
        exec(compile(code, "<eval>", "exec"), module.__dict__)  # noqa: S102 - the operator's code
    except (Exception, SystemExit) as exc:
        raise PythonOptionError(f"eval: {type(exc).__name__}: {exc}") from None
    app = module.__dict__.get(callable_name)
    if not callable(app):
        raise PythonOptionError(f"eval: the code defines no callable '{callable_name}'")
    sys.modules["uwsgi_eval"] = module
    return app


def paste_application(uri: str, with_logger: bool) -> Any:
    """``paste = config:/path/app.ini`` through PasteDeploy (``pip install uzerg[paste]``);
    ``paste-logger``: the file's [loggers] sections configure Python's logging first."""
    try:
        from paste.deploy import loadapp
    except ImportError:
        raise PythonOptionError("paste: PasteDeploy is not installed "
                                "(pip install 'uzerg[paste]')") from None
    path = uri.removeprefix("config:")
    if with_logger:
        import logging.config

        try:
            logging.config.fileConfig(os.path.abspath(path), disable_existing_loggers=False)
        except Exception as exc:  # noqa: BLE001 - any error of the operator's file
            raise PythonOptionError(f"paste-logger: {path}: {exc}") from None
    target = uri if ":" in uri.split("/", 1)[0] else f"config:{os.path.abspath(uri)}"
    try:
        return loadapp(target)
    except (Exception, SystemExit) as exc:
        raise PythonOptionError(f"paste: unable to load {uri}: {type(exc).__name__}: "
                                f"{exc}") from None


class ModuleWatcher:
    """``py-autoreload N``: a daemon thread in a worker that asks the master for a graceful
    reload (SIGHUP) when the file of a loaded module changes."""

    def __init__(self, interval: int, master_pid: int) -> None:
        self.interval = interval
        self.master_pid = master_pid
        self.mtimes: dict[str, float] = {}
        import threading  # loaded by the master before the fork (load_thread_support)

        self.stopped = threading.Event()

    def start(self) -> None:
        import threading

        self.scan()
        threading.Thread(target=self._run, name="uzerg-py-autoreload", daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            changed = self.scan()
            if changed:
                log.info(f"[uwsgi-python-reloader] module/file {changed} has been modified",
                         event_kind="py_autoreload", path=changed)
                os.kill(self.master_pid, _signal.SIGHUP)
                return

    def scan(self) -> str | None:
        """The first module file whose mtime changed since the last scan, or None."""
        for module in list(sys.modules.values()):
            filename = getattr(module, "__file__", None)
            if not filename:
                continue
            try:
                mtime = os.stat(filename).st_mtime
            except OSError:
                continue
            known = self.mtimes.setdefault(filename, mtime)
            if known != mtime:
                return filename
        return None
