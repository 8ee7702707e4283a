"""The Emperor's stats document, in uWSGI's shape (emperor_send_stats in core/emperor.c)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from uzerg import __version__
from uzerg.emperor.throttle import Blacklist
from uzerg.emperor.vassal import STOPPING, Vassal
from uzerg.processes.stats import current_directory

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def emperor_stats_document(*, monitors: Sequence[str], tyrant: bool, throttle_ms: int,
                           vassals: Iterable[Vassal], blacklist: Blacklist,
                           cwd: str = "") -> dict[str, Any]:
    """``cwd``: the working directory to show if the current one has been removed (the
    Emperor's at start-up, as the master shows its own)."""
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": current_directory(cwd),
        "emperor": list(monitors),
        "emperor_tyrant": int(tyrant),
        "throttle_level": throttle_ms // 1000,
        "vassals": [_vassal(v) for v in vassals],
        "blacklist": [
            {"id": e.name, "throttle_level": e.throttle_ms // 1000, "attempt": e.attempts,
             "first_attempt": int(e.first_attempt), "last_attempt": int(e.last_attempt)}
            for e in blacklist.entries.values()
        ],
    }


def _vassal(v: Vassal) -> dict[str, Any]:
    return {
        "id": v.name,
        "pid": v.pid,
        "born": int(v.born),
        "last_mod": int(v.last_mod),
        "last_heartbeat": int(v.last_heartbeat),
        "loyal": int(v.loyal),
        "ready": int(v.ready),
        "accepting": int(v.accepting),
        "last_loyal": int(v.last_loyal),
        "last_ready": int(v.last_ready),
        "last_accepting": int(v.last_accepting),
        "first_run": int(v.first_run),
        "last_run": int(v.last_run),
        "cursed": int(v.cursed_at) if v.status == STOPPING else 0,
        "zerg": int(v.is_zerg),
        "on_demand": "",
        "suspended": int(v.standby),  # uzerg: a warm standby zerg (workers paused)
        "adopted": 0,
        "uid": v.uid,
        "gid": v.gid,
        "monitor": v.file.monitor,
        "attrs": [],
        "respawns": v.respawns,
    }
