"""The Emperor and Broodlord tests' helpers: start an Emperor, read its stats and its JSON
log, write vassal files."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from support.processes import Instance, InstanceStarter, wait_until


def start_emperor(uzerg: InstanceStarter, vassals: Path, *extra: str,
                  json_log: bool = False) -> tuple[Instance, str]:
    """An Emperor on ``vassals`` with a stats socket; returns it and the stats path."""
    stats = str(vassals.parent / f"emperor-{len(uzerg.instances)}.stats")
    args = ["--emperor", str(vassals), "--emperor-stats", stats, "--emperor-freq", "1", *extra]
    if json_log:
        args.append("--log-json")
    emperor = uzerg.start(args, wait_workers=None)
    emperor.wait_for_log("starting uWSGI Emperor")
    return emperor, stats


def emperor_stats(path: str) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data)


def stats_when_up(path: str) -> dict[str, Any] | None:
    """The stats document, or None while the stats socket is not there or not listening."""
    try:
        return emperor_stats(path)
    except OSError:
        return None


def vassals_named(path: str, name: str) -> list[dict[str, Any]]:
    return [v for v in emperor_stats(path)["vassals"] if v["id"] == name]


def wait_vassal_pid(path: str, name: str, timeout: float = 20,
                    other_than: int = 0) -> int:
    def find() -> int | None:
        found = [v["pid"] for v in vassals_named(path, name) if v["ready"]]
        return found[0] if found and found[0] != other_than else None
    return int(wait_until(find, timeout, f"vassal {name} ready"))


def json_events(instance: Instance) -> list[dict[str, Any]]:
    """The JSON lines of a --log-json log (vassals' plain lines are skipped)."""
    events = []
    for line in instance.log_text().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def touch(path: Path) -> None:
    """A strictly later mtime, even within the file system's time granularity."""
    later = max(time.time(), path.stat().st_mtime + 1)
    os.utime(path, (later, later))
