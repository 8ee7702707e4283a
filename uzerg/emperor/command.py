"""What a vassal is started with: its command line (uWSGI's order: ``vassal-set`` values, the
vassal file, then ``vassals-inherit`` templates and ``vassals-include`` files) and its
environment (``UWSGI_VASSAL_X`` becomes ``UWSGI_X``; the channel fd; the zerg number)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping

from uzerg.config import options
from uzerg.config.load import ConfigError, load_config
from uzerg.config.model import Config
from uzerg.emperor import channel

ZERG_SECTION = "zerg"
# inherited by a vassal from nobody: they describe the Emperor's own process
_DROPPED_ENV = ("UWSGI_RELOADS", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                "UZERG_REEXEC_STATE", channel.ENV_FD, channel.ENV_BROODLORD_NUM,
                channel.ENV_STANDBY)


def vassal_arguments(config: Config, name: str, section: str | None) -> list[str]:
    """The options after the program: ``--ini NAME[:SECTION]`` between the Emperor's extras."""
    args: list[str] = []
    for item in config.vassal_set:
        key, _, value = item.partition("=")
        key = key.strip()
        # uWSGI's --set both sets a placeholder and the option; uzerg sets the option
        args.append(f"--{key}={value}" if options.lookup(key) else f"--set={item}")
    args += ["--ini", f"{name}:{section}" if section else name]
    for path in config.vassals_inherit:
        args += ["--ini", path]
    for path in config.vassals_include:
        args += ["--include", path]
    return args


def vassal_command(config: Config, arguments: list[str]) -> list[str]:
    if config.emperor_wrapper:
        return [config.emperor_wrapper, *arguments]
    return [sys.executable, "-m", "uzerg", *arguments]


def vassal_environment(environ: Mapping[str, str], *, broodlord_num: int = 0,
                       standby: bool = False) -> dict[str, str]:
    """The vassal's environment (its channel fd is added once it is known, in the child)."""
    env = {k: v for k, v in environ.items() if k not in _DROPPED_ENV}
    for key in [k for k in env if k.startswith("UWSGI_VASSAL_")]:
        env["UWSGI_" + key[len("UWSGI_VASSAL_"):]] = env.pop(key)
    if broodlord_num:
        env[channel.ENV_BROODLORD_NUM] = str(broodlord_num)
    if standby:
        env[channel.ENV_STANDBY] = "1"
    return env


def check_vassal(config: Config, name: str, section: str | None, cwd: str,
                 environ: Mapping[str, str]) -> str | None:
    """Load the vassal's configuration as the vassal will (same arguments, same directory):
    the one-line error, or None when it loads. Not for wrapped (foreign) vassals."""
    if config.emperor_wrapper:
        return None
    arguments = vassal_arguments(config, name, section)
    try:
        with _working_directory(cwd):
            loaded = load_config(arguments, environ, write=lambda _text: None)
    except ConfigError as exc:
        return str(exc)
    except OSError as exc:
        return f"{name}: {exc.strerror}"
    if section and not loaded.set_options:
        return f"{name}: no [{section}] section"
    if loaded.emperor:
        return f"{name}: a vassal cannot be an Emperor in uzerg"
    return None


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
