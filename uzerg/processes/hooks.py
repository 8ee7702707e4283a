"""uWSGI's hooks and exec phases: ``hook-PHASE = action:args``, ``exec-PHASE = command`` and
``call-PHASE = function``, run in that order at the moments uWSGI runs them.

Phases (uWSGI's label, where uzerg runs it):
- ``asap`` once the configuration is read and the log set up;
- ``as root`` just before privileges are dropped (whoever runs it), ``as user`` just after;
- ``pre app``/``post app`` around loading the app (in each worker with lazy-apps);
- ``post-fork`` in each new worker; ``accepting`` when a worker starts accepting,
  ``accepting-once`` only on a worker's first spawn, ``accepting1``/``accepting1-once`` only
  in worker 1;
- ``master-start`` when the master's loop starts (after the first workers are spawned);
- ``atexit`` (``*-as-user-atexit``) when the master exits or reloads.

A failing step of a fatal phase stops the instance with one line naming the option, its value
and the reason (uWSGI: "FATAL hook failed, destroying instance"); in a worker it asks the
master to stop (SIGINT), as uWSGI does. Where uWSGI goes on (``call-as-root``,
``call-post-app``, every ``atexit`` step), uzerg logs the failure and goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.processes.guard import InstanceExit, one_line
from uzerg.processes.hook_phases import KINDS, HookExit, HookFailed
from uzerg.processes.process import StartupError, file_mtime
from uzerg.processes.services import Kept, MasterService, OnReadable
from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.processes.services import MasterView

log = get_logger()

__all__ = [
    "HookActionError", "HookExit", "HookFailed", "HooksService", "PHASES", "Phase", "run_phase",
]


class HookActionError(Exception):
    """A hook action failed; the message says why in one line."""


@record(frozen=True, slots=True)
class Phase:
    name: str  # the option suffix: hook-NAME, exec-NAME, call-NAME
    label: str  # uWSGI's word for it in "running ... (LABEL)..."
    has_exec: bool  # an exec-NAME / call-NAME option exists
    fatal_call: bool = True
    fatal: bool = True


PHASES: dict[str, Phase] = {phase.name: phase for phase in (
    Phase("asap", "asap", True),
    Phase("as-root", "as root", True, fatal_call=False),
    Phase("as-user", "as user", True),
    Phase("as-user-atexit", "atexit", True, fatal_call=False, fatal=False),
    Phase("pre-app", "pre app", True),
    Phase("post-app", "post app", True, fatal_call=False),
    Phase("post-fork", "post-fork", False),
    Phase("accepting", "accepting", False),
    Phase("accepting-once", "accepting-once", False),
    Phase("accepting1", "accepting1", False),
    Phase("accepting1-once", "accepting1-once", False),
    Phase("master-start", "master-start", False),
    Phase("as-mule", "as-mule", False),
)}


def _steps(config: Config, phase: Phase) -> list[tuple[str, str]]:
    """(option, value) for every step of a phase, in uWSGI's order: hooks, exec, call."""
    kinds = KINDS if phase.has_exec else KINDS[:1]
    return [(f"{kind}-{phase.name}", value) for kind in kinds
            for value in config.values_of(f"{kind}-{phase.name}")]


def run_phase(config: Config, name: str) -> None:
    """Run every step of a phase; raises HookFailed for a failure in a fatal one (and
    HookExit for an ``exit:`` action). Callers go through uzerg.processes.hook_phases, which
    loads this module only when the phase has a step."""
    phase = PHASES[name]
    for option, value in _steps(config, phase):
        try:
            _run_step(option, value, phase)
        except HookActionError as exc:
            fatal = phase.fatal and (phase.fatal_call or not option.startswith("call-"))
            line = f"{option} = {_shown(option, value)} failed ({phase.label}): {exc}"
            if fatal:
                log.error("FATAL hook failed, destroying instance", event_kind="hook_failed")
                raise HookFailed(line) from None
            log.error(line, event_kind="hook_failed")


def _shown(option: str, value: str) -> str:
    return "(private hook)" if option.startswith("hook-") and value.startswith("!") else value


def _run_step(option: str, value: str, phase: Phase) -> None:
    # the actions load with the first step (start-up time: most configurations have none)
    from uzerg.processes.hook_actions import ACTIONS, run_command

    if option.startswith("exec-"):
        if phase.name.startswith("as-user"):
            where = f"as uid: {os.getuid()} gid: {os.getgid()}"
        else:
            where = phase.label
        log.info(f'running "{value}" ({where})...', event_kind="hook", phase=phase.label)
        code = run_command(value)
        if code != 0:
            raise HookActionError(f'command "{value}" exited with non-zero code: {code}')
        return
    if option.startswith("call-"):
        action, args = "call", value
    else:
        action, args = _action_of(value, phase)
    try:
        ACTIONS[action](args)
    except (HookActionError, InstanceExit):
        raise
    except Exception as exc:  # an argument the action did not foresee (putenv:=x), a module
        raise HookActionError(one_line(exc)) from None  # that fails to import: its failure


def _action_of(value: str, phase: Phase) -> tuple[str, str]:
    action, _colon, args = value.partition(":")
    action = action.strip()  # as the option's parser reads it ("print :x" is print)
    if action.startswith("!"):
        log.info(f"running --- PRIVATE HOOK --- ({phase.label})...", event_kind="hook")
        action = action[1:].strip()
    else:
        log.info(f'running "{value}" ({phase.label})...', event_kind="hook", phase=phase.label)
    return action, args


def run_touch_hook(value: str) -> None:
    """A ``hook-touch`` whose file was touched: its hook, never fatal (uWSGI's "touch")."""
    hook = value.partition(" ")[2].strip()
    phase = Phase("touch", "touch", False, fatal=False)
    try:
        _run_step("hook-touch", hook, phase)
    except HookActionError as exc:
        log.error(f"hook-touch = {_shown('hook-', hook)} failed (touch): {exc}",
                  event_kind="hook_failed")


class HooksService(MasterService):
    """The master's phases: ``master-start`` when its loop starts, ``as-user-atexit`` when it
    exits or re-executes itself for a reload; ``hook-touch`` files checked every second."""

    label = "hooks"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.touched = {value: file_mtime(value.partition(" ")[0]) for value in config.hook_touch}
        self._last_check = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if not self.touched or now - self._last_check < 1.0:
            return
        self._last_check = now
        for value, before in self.touched.items():
            mtime = file_mtime(value.partition(" ")[0])
            if mtime != before:
                self.touched[value] = mtime
                run_touch_hook(value)

    def start(self, master: MasterView) -> None:
        try:
            run_phase(self.config, "master-start")
        except HookFailed as exc:
            raise StartupError(str(exc), exc.status) from None

    def watches(self) -> Mapping[int, OnReadable]:
        return {}

    def handover(self) -> Kept:
        run_phase(self.config, "as-user-atexit")  # uWSGI: "before app exit and reload"
        return Kept()

    def close_in_worker(self) -> None:
        pass

    def shutdown(self, vacuum: bool) -> None:
        run_phase(self.config, "as-user-atexit")

