"""The ``uzerg`` command: argv → Config, then help, version, check-config, management
commands, or the server (``uzerg.processes.instance.run``). Every configuration mistake becomes
one line on
stderr and exit status 1; warnings go to stderr as ``uzerg: warning: ...``.
"""

from __future__ import annotations

import _signal  # not signal: its IntEnums cost ~3M instructions to import
import gc
import os
import sys

from uzerg import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.config.model import Config

# uWSGI: --reload sends SIGHUP, --stop SIGINT, --pause/--resume SIGTSTP (it toggles)
MANAGEMENT_SIGNALS = {
    "reload": _signal.SIGHUP,
    "stop": _signal.SIGINT,
    "pause": _signal.SIGTSTP,
    "resume": _signal.SIGTSTP,
}


def _err(line: str) -> None:
    sys.stderr.write(f"uzerg: {line}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """The command; returns its exit status. The cyclic garbage collector is off while uzerg
    starts: the imports and the option table allocate thousands of objects and free almost
    none, so its passes find next to nothing (~8% of a zerg's import time, issue 13). The
    instance turns it back on before it loads the app (uzerg.processes.instance), the Emperor
    as it starts, and it is on again whenever main returns."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if enabled:
            gc.enable()


def _main(argv: list[str] | None) -> int:
    # loaded here, with the collector off (see main)
    from uzerg.config import options
    from uzerg.config.load import ConfigError, format_config, load_config

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "--usage") for a in args):
        from uzerg.config.docs import render_help

        sys.stdout.write(render_help())
        return 0
    if "--version" in args:
        sys.stdout.write(f"uzerg {__version__}\n")
        return 0
    try:
        config = load_config(args, os.environ)
    except ConfigError as exc:
        for warning in getattr(exc, "warnings", ()):
            _err(f"warning: {warning}")
        _err(str(exc))
        return 1
    for warning in config.warnings:
        _err(f"warning: {warning}")
    management = {"reload": config.reload, "stop": config.stop, "pause": config.pause,
                  "resume": config.resume}
    for name in options.MANAGEMENT:
        pidfile = management[name]
        if pidfile is not None:
            return signal_pidfile(name, pidfile)
    if config.rollback or config.zerg_probe or config.zerg_status:
        return _tool(config)
    if config.check_config:
        sys.stdout.write(format_config(config))
        return 0
    return _serve(config)


def _serve(config: Config) -> int:
    if config.optimize > sys.flags.optimize:
        # uWSGI sets Py_OptimizeFlag before starting Python; here the interpreter is already
        # running, so it is run again with -O/-OO (same pid, same arguments; a re-exec reload
        # keeps sys.orig_argv, and so the flag)
        argv = list(sys.orig_argv)
        os.execv(sys.executable, [argv[0], "-" + "O" * config.optimize, *argv[1:]])
    # imported late: --check-config and --help never need it
    if config.emperor:
        from uzerg.emperor import main as emperor

        return emperor.run(config)
    from uzerg.processes import instance as server

    return int(server.run(config))


def _tool(config: Config) -> int:
    from uzerg import commands

    if config.rollback:
        return commands.run_rollback(config.rollback, _err)
    if config.zerg_probe:
        return commands.zerg_probe(config.zerg_probe, float(config.zerg_timeout),
                                   config.json, _err)
    return commands.zerg_status(config.zerg_status or "", config.json, _err)


def signal_pidfile(command: str, pidfile: str) -> int:
    """Send the signal of ``--reload/--stop/--pause/--resume`` to the pid in ``pidfile``."""
    try:
        with open(pidfile, encoding="ascii", errors="replace") as handle:
            text = handle.read().strip()
    except OSError as exc:
        _err(f"--{command}: cannot read pidfile {pidfile}: {exc.strerror}")
        return 1
    if not text.isdigit() or int(text) <= 0:
        _err(f"--{command}: invalid pidfile {pidfile}: {text[:40]!r}")
        return 1
    try:
        os.kill(int(text), MANAGEMENT_SIGNALS[command])
    except OSError as exc:
        _err(f"--{command}: cannot signal pid {text} from {pidfile}: {exc.strerror}")
        return 1
    return 0
