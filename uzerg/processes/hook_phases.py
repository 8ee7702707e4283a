"""Where the instance, its workers and mules run a hook phase (``run_phase``), and what ends
one: loaded by every instance. A phase with no step configured returns at once, so a
configuration without hooks (most of them) never loads ``uzerg.processes.hooks``, the runner
and its master service (issue 13: a zerg's start-up time)."""

from __future__ import annotations

from uzerg.config.options import HOOK_PHASES
from uzerg.processes.guard import InstanceExit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from uzerg.config.model import Config

KINDS = ("hook", "exec", "call")  # the options of a phase: hook-NAME, exec-NAME, call-NAME


class HookExit(InstanceExit):  # the exit action was asked for: the loop's guard lets it by
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class HookFailed(Exception):
    """A fatal phase failed; ``str()`` is the one line to show."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def phase_configured(config: Config, name: str) -> bool:
    """A step of phase ``name`` is configured (a phase without exec-/call- options has no
    such attribute)."""
    suffix = name.replace("-", "_")
    return any(getattr(config, f"{kind}_{suffix}", ()) for kind in KINDS)


def hooks_configured(config: Config) -> bool:
    """A hook of any phase, or a hook-touch, is configured: the master loads the runner."""
    return bool(config.hook_touch) or any(phase_configured(config, name)
                                          for name, _text, _has_exec in HOOK_PHASES)


def run_phase(config: Config, name: str) -> None:
    """Run every step of a phase; raises HookFailed for a failure in a fatal one (and
    HookExit for an ``exit:`` action)."""
    if phase_configured(config, name):
        from uzerg.processes.hooks import run_phase as run_steps  # loaded by the master

        run_steps(config, name)
