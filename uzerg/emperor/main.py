"""``uzerg --emperor``: the Emperor's start-up (log, pidfiles, chdir, env, privileges), then
its loop (uzerg.emperor.emperor)."""

from __future__ import annotations

import gc
import os
import sys

from uzerg.config.model import Config
from uzerg.logs import configure_logging, get_logger
from uzerg.processes.process import (
    StartupError,
    daemonize,
    drop_privileges,
    open_log_file,
    remove_pidfile,
    set_process_title,
    write_pidfile,
)

log = get_logger()


def run(config: Config) -> int:
    """Run the Emperor until it is stopped; returns the exit status."""
    from uzerg.emperor.emperor import Emperor

    gc.enable()  # off while uzerg started (uzerg.cli.main); the Emperor runs for long
    pidfiles: list[str] = []
    try:
        if config.daemonize:
            daemonize(config.daemonize)
        elif config.logto:
            open_log_file(config.logto)
        configure_logging(json=bool(config.log_json), stream=sys.stderr)
        _prepare(config)
        for path in (config.pidfile, config.emperor_pidfile):
            if path:
                write_pidfile(path)
                pidfiles.append(path)
        set_process_title(config, "uzerg Emperor")
        emperor = Emperor(config, os.environ, os.getcwd())
        drop_privileges(config.uid, config.gid)
        return emperor.run()
    except StartupError as exc:
        log.error(str(exc), event_kind="startup_error")
        return exc.status
    finally:
        if config.vacuum:
            for path in pidfiles:
                remove_pidfile(path)


def _prepare(config: Config) -> None:
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise StartupError(f"chdir(): {config.chdir}: {exc.strerror}") from None
    for item in config.env:
        name, _, value = item.partition("=")
        os.environ[name] = value
    if config.home:
        log.info(f"home {config.home}: the Emperor loads no app; vassals set their own",
                 event_kind="emperor_home")
