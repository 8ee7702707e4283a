"""The imperial monitors: find vassal files in a directory or matching a glob (uWSGI's "dir"
and "glob" monitors) and say what changed since the last scan."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping

from uzerg.record import record

VASSAL_SUFFIXES = (".ini",)
# files uWSGI's Emperor would run that uzerg cannot read (said once, then ignored)
OTHER_CONFIG_SUFFIXES = (".xml", ".yml", ".yaml", ".js", ".json")
MAX_NAME = 0xFE  # uWSGI refuses longer vassal names


@record(frozen=True, slots=True)
class VassalFile:
    """One vassal file as a monitor saw it. ``name`` is what the vassal is called (and given to
    ``--ini``): the file name for a directory monitor (run from that directory, as uWSGI's
    Emperor does), the matched path for a glob."""

    name: str
    path: str
    cwd: str
    mtime: float
    uid: int
    gid: int
    monitor: str


@record(frozen=True, slots=True)
class Changes:
    added: tuple[VassalFile, ...]
    modified: tuple[VassalFile, ...]
    removed: tuple[str, ...]


def is_directory_monitor(arg: str) -> bool:
    """uWSGI: an existing directory is watched as such; anything else is a glob."""
    return os.path.isdir(arg)


def scan(monitors: Iterable[str], cwd: str, unreadable: set[str]) -> dict[str, VassalFile]:
    """Every vassal file the monitors see now, by name. Names of files with another config
    extension are added to ``unreadable``."""
    found: dict[str, VassalFile] = {}
    for arg in monitors:
        absolute = os.path.join(cwd, arg)
        if is_directory_monitor(absolute):
            try:
                entries = sorted(os.listdir(absolute))
            except OSError:
                continue
            for entry in entries:
                _add(found, entry, os.path.join(absolute, entry), absolute, arg, unreadable)
        else:
            for match in sorted(glob.glob(absolute)):
                shown = match if os.path.isabs(arg) else os.path.relpath(match, cwd)
                _add(found, shown, match, cwd, arg, unreadable)
    return found


def _add(found: dict[str, VassalFile], name: str, path: str, cwd: str, monitor: str,
         unreadable: set[str]) -> None:
    if len(name) > MAX_NAME or name in found:
        return
    if not name.endswith(VASSAL_SUFFIXES):
        if name.endswith(OTHER_CONFIG_SUFFIXES):
            unreadable.add(name)
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    if not os.path.isfile(path):
        return
    found[name] = VassalFile(name, path, cwd, st.st_mtime, st.st_uid, st.st_gid, monitor)


def compare(known: Mapping[str, VassalFile], seen: Mapping[str, VassalFile]) -> Changes:
    """New files, files whose mtime moved forward (touched) or whose owner changed, and
    files that are gone."""
    added = tuple(f for name, f in seen.items() if name not in known)
    modified = tuple(
        f for name, f in seen.items()
        if name in known and (f.mtime > known[name].mtime
                              or (f.uid, f.gid) != (known[name].uid, known[name].gid))
    )
    removed = tuple(name for name in known if name not in seen)
    return Changes(added, modified, removed)
