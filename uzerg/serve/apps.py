"""Loading the WSGI application: `--module`, `--wsgi-file`, `--callable`, `--pythonpath`, `--mount`.

`load_application(config)` returns one WSGI callable (a `MountDispatcher` when `--mount` is
used) or raises `AppLoadError` with a one-line message for the operator; the traceback of an
import error goes to the log.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.serve.pyoptions import (
    PythonOptionError,
    add_python_paths,
    eval_application,
    import_app_modules,
    paste_application,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from typing import Any

    WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

log = get_logger()


class AppLoadError(Exception):
    """The application could not be loaded; `str()` is one line for the operator."""


def load_application(config: Config) -> WSGIApp:
    """Import the app named by the config (cwd is already `config.chdir`)."""
    add_python_paths(config)
    callable_name = config.callable
    main: WSGIApp | None = None
    module = config.module
    wsgi_file = config.wsgi_file
    try:
        import_app_modules(config)
        if config.eval:
            main = eval_application(config.eval, callable_name)
        elif config.paste:
            main = paste_application(config.paste, config.paste_logger)
    except PythonOptionError as exc:
        raise AppLoadError(str(exc)) from None
    if main is not None:
        pass
    elif module:
        main = _load_target(module, callable_name, as_file=False)
    elif wsgi_file:
        main = _load_target(wsgi_file, callable_name, as_file=True)
    mounts = config.mount
    if not mounts:
        if main is None:
            raise AppLoadError("no application configured (use --module, --wsgi-file, --mount, "
                               "--eval or --paste)")
        return main
    apps: list[tuple[str, WSGIApp]] = []
    for entry in mounts:
        prefix, sep, target = entry.partition("=")
        if not sep or not target.strip():
            raise AppLoadError(f"invalid mount syntax: {entry} (expected /prefix=module_or_file)")
        target = target.strip()
        # uWSGI takes a mount target ending in .py/.wsgi as a file; `pkg.wsgi` (Django's
        # layout) is a module unless such a file exists
        as_file = "/" in target or os.path.isfile(target.rpartition(":")[0] or target)
        apps.append((prefix.strip().rstrip("/"), _load_target(target, callable_name, as_file)))
    return MountDispatcher(apps, main, config.manage_script_name)


def _load_target(target: str, callable_name: str, as_file: bool) -> WSGIApp:
    """`pkg.mod`, `pkg.mod:callable`, or a file path (any extension, as uWSGI's --wsgi-file)."""
    if as_file:
        path, name = target, callable_name
        # `file.py:app` picks another callable, but only when the part before `:` is a file
        head, sep, tail = target.rpartition(":")
        if sep and os.path.isfile(head) and tail.isidentifier():
            path, name = head, tail
        module = _import_file(path)
    else:
        modname, _, name = target.partition(":")
        name = name or callable_name
        module = _import_module(modname)
    app: Any = module
    for attr in name.split("."):
        if not hasattr(app, attr):
            raise AppLoadError(f"callable '{name}' not found in {target}")
        app = getattr(app, attr)
    if not callable(app):
        raise AppLoadError(f"'{name}' in {target} is not callable ({type(app).__name__})")
    return app


def _import_module(modname: str) -> Any:
    try:
        return importlib.import_module(modname)
    except (Exception, SystemExit) as exc:
        _log_traceback()
        raise AppLoadError(f"unable to import module '{modname}': {_one_line(exc)}") from None


# what stays of a path in its module's name (no regular expression: compiling one cost every
# start; tests/test_regex_free_checks.py holds the old one)
_NAME_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


def wsgi_file_module_name(abspath: str) -> str:
    """uWSGI's name for a wsgi-file's module: uwsgi_file_<its path, each character but
    [0-9A-Za-z_] made "_">."""
    return "uwsgi_file_" + "".join(char if char in _NAME_CHARS else "_"
                                   for char in abspath.lstrip("/"))


def _import_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise AppLoadError(f"unable to load wsgi file {path}: no such file")
    abspath = os.path.abspath(path)
    # uWSGI names such modules uwsgi_file_<mangled path>; keep that (it shows in tracebacks)
    modname = wsgi_file_module_name(abspath)
    loader = importlib.machinery.SourceFileLoader(modname, abspath)
    spec = importlib.util.spec_from_file_location(modname, abspath, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # needed for pickling, dataclasses, relative lookups
    try:
        loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(modname, None)
        _log_traceback()
        raise AppLoadError(f"unable to load wsgi file {path}: {_one_line(exc)}") from None
    return module


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _log_traceback() -> None:
    import traceback  # a failed load only: not at start-up

    for line in traceback.format_exc().rstrip("\n").split("\n"):
        log.error(line, event_kind="app_load_traceback")


class MountDispatcher:
    """Route each request to a mounted app as uWSGI 2.0.31 does (--mount).

    With `manage_script_name`, the longest mountpoint that is a whole-segment prefix of
    PATH_INFO becomes SCRIPT_NAME (replacing what the front end sent) and leaves PATH_INFO.
    Otherwise, or when no mountpoint matches, the app is the one mounted at exactly the
    SCRIPT_NAME the front end sent. Requests no mount claims go to the default app: the main
    one (--module/--wsgi-file), else the first mount (uWSGI's app 0).
    """

    def __init__(
        self, mounts: list[tuple[str, WSGIApp]], default: WSGIApp | None, manage_script_name: bool
    ) -> None:
        # longest prefix first (uWSGI keeps the best match whatever the order)
        self.mounts = sorted(mounts, key=lambda item: len(item[0]), reverse=True)
        self.by_script_name = dict(mounts)
        if default is None and mounts:
            default = mounts[0][1]
        self.default = default
        self.manage_script_name = manage_script_name

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.manage_script_name:
            path = environ.get("PATH_INFO", "")
            if len(path) > 1:  # uWSGI leaves "" and "/" alone
                for prefix, app in self.mounts:
                    if prefix and (path == prefix or path.startswith(prefix + "/")):
                        environ["SCRIPT_NAME"] = prefix
                        environ["PATH_INFO"] = path[len(prefix) :]
                        return app(environ, start_response)
        app = self.by_script_name.get(environ.get("SCRIPT_NAME", ""))
        if app is not None:
            return app(environ, start_response)
        if self.default is not None:
            return self.default(environ, start_response)
        return no_application(environ, start_response)


def no_application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The answer when no app could be loaded and the instance runs anyway (no --need-app)."""
    log.error("--- no python application found, check your startup logs for errors ---")
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"Internal Server Error"]
