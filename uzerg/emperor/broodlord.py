"""Broodlord decisions: what to do with a vassal's sos (``emperor-broodlord = N`` zergs at
most, uWSGI's meaning) and with uzerg's warm standbys (``emperor-broodlord-standby = N``:
zergs started with their workers paused, resumed at once on an sos)."""

from __future__ import annotations

from collections.abc import Iterable

from uzerg.emperor.vassal import RUNNING, Vassal
from uzerg.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time (start-up time, issue 13)
    from typing import Literal

    Action = Literal["resume", "spawn", "limit", "ignore"]


@record(frozen=True, slots=True)
class SosDecision:
    action: Action
    standby: Vassal | None = None
    why: str = ""


def zergs_of(vassals: Iterable[Vassal], parent: str) -> list[Vassal]:
    return [v for v in vassals if v.zerg_of == parent]


def decide_sos(vassals: Iterable[Vassal], parent: Vassal, limit: int) -> SosDecision:
    """An sos from ``parent``: resume a ready standby, start a zerg, or say why not."""
    if limit <= 0:
        return SosDecision("ignore", why="emperor-broodlord is not set")
    if parent.is_zerg or parent.status != RUNNING:
        return SosDecision("ignore", why="not a running vassal")
    everyone = list(vassals)
    for zerg in zergs_of(everyone, parent.name):
        if zerg.standby and zerg.ready and zerg.status == RUNNING:
            return SosDecision("resume", zerg, "a warm standby is ready")
    alive = sum(1 for v in everyone if v.is_zerg)
    if alive >= limit:
        return SosDecision("limit", why=f"the broodlord limit ({limit} zergs) is reached")
    return SosDecision("spawn", why=f"{alive} of {limit} zergs running")


def standbys_missing(vassals: Iterable[Vassal], parent: Vassal, wanted: int,
                     limit: int) -> int:
    """How many standby zergs to start for ``parent`` now (within the broodlord limit)."""
    everyone = list(vassals)
    if wanted <= 0 or parent.is_zerg or parent.status != RUNNING or not parent.ready:
        return 0
    standing = sum(1 for z in zergs_of(everyone, parent.name) if z.standby)
    room = limit - sum(1 for v in everyone if v.is_zerg)
    return max(0, min(wanted - standing, room))
