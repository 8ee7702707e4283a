"""Unit tests: the Emperor's pure parts (file scan diff, blacklist throttle, broodlord
decisions, vassal command lines and environment, the config check)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from uzerg.config.load import ConfigError, load_config
from uzerg.emperor import channel
from uzerg.emperor.broodlord import decide_sos, standbys_missing
from uzerg.emperor.command import check_vassal, vassal_arguments, vassal_environment
from uzerg.emperor.scan import VassalFile, compare, scan
from uzerg.emperor.throttle import Blacklist
from uzerg.emperor.vassal import STOPPING, Vassal


def file(name: str, mtime: float = 1.0, uid: int = 1000) -> VassalFile:
    return VassalFile(name, f"/v/{name}", "/v", mtime, uid, uid, "/v")


def emperor_config(*args: str) -> Any:
    return load_config(["--emperor", "/v", *args], {})


def test_compare_finds_new_touched_owner_changed_and_removed() -> None:
    known = {"a.ini": file("a.ini"), "b.ini": file("b.ini"), "c.ini": file("c.ini")}
    seen = {"a.ini": file("a.ini"), "b.ini": file("b.ini", 2.0), "d.ini": file("d.ini"),
            "c.ini": file("c.ini", uid=1001)}
    changes = compare(known, seen)
    assert [f.name for f in changes.added] == ["d.ini"]
    assert sorted(f.name for f in changes.modified) == ["b.ini", "c.ini"]
    assert changes.removed == ()
    assert compare(seen, {}).removed == ("a.ini", "b.ini", "d.ini", "c.ini")
    # an mtime going back (a restored file) is not a touch
    assert compare({"a.ini": file("a.ini", 5.0)}, {"a.ini": file("a.ini", 4.0)}).modified == ()


def test_scan_directory_and_glob(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    for name in ("a.ini", "b.xml", "notes.txt"):
        (tmp_path / "v" / name).write_text("[uwsgi]\n")
    (tmp_path / "v" / "dir.ini").mkdir()
    unreadable: set[str] = set()
    found = scan(["v"], str(tmp_path), unreadable)
    assert list(found) == ["a.ini"]
    assert found["a.ini"].cwd == str(tmp_path / "v") and unreadable == {"b.xml"}
    found = scan([str(tmp_path / "v" / "*.ini")], "/", set())
    assert list(found) == [str(tmp_path / "v" / "a.ini")]
    assert scan([str(tmp_path / "missing")], "/", set()) == {}


def test_blacklist_throttle_grows_then_halves_at_the_maximum() -> None:
    blacklist = Blacklist(1000, 3000)
    delays = []
    notes = []
    for second in range(6):
        entry, note = blacklist.add("x.ini", float(second))
        delays.append(entry.throttle_ms)
        notes.append(note)
    assert delays == [1000, 2000, 3000, 1500, 2500, 3000]
    assert notes[1] is not None and "throttling it" in notes[1]
    assert notes[3] is not None and "maximum throttle level" in notes[3]
    assert blacklist.ready_at("x.ini") == 5.0 + 3.0
    blacklist.remove("x.ini")
    assert blacklist.ready_at("x.ini") == 0.0


def vassal(name: str, zerg_of: str | None = None, **state: Any) -> Vassal:
    sock = SimpleNamespace()  # never used by the decisions
    v = Vassal(name, file(name.split(":")[0]), 100, sock, 0, 0, zerg_of=zerg_of)  # type: ignore[arg-type]
    for key, value in state.items():
        setattr(v, key, value)
    return v


def test_sos_resumes_a_ready_standby_first_then_spawns_within_the_limit() -> None:
    parent = vassal("a.ini", ready=True)
    standby = vassal("a.ini:zerg", "a.ini", standby=True, ready=True)
    starting = vassal("a.ini:zerg", "a.ini", standby=True, ready=False)
    assert decide_sos([parent, standby], parent, 4).action == "resume"
    assert decide_sos([parent, standby], parent, 4).standby is standby
    assert decide_sos([parent, starting], parent, 4).action == "spawn"
    zergs = [vassal("a.ini:zerg", "a.ini") for _ in range(4)]
    decision = decide_sos([parent, *zergs], parent, 4)
    assert decision.action == "limit" and "4 zergs" in decision.why
    assert decide_sos([parent], parent, 0).action == "ignore"
    assert decide_sos([parent, standby], standby, 4).action == "ignore"  # a zerg's sos
    parent.status = STOPPING
    assert decide_sos([parent], parent, 4).action == "ignore"


def test_standbys_missing_respects_the_limit_and_waits_for_the_vassal() -> None:
    parent = vassal("a.ini", ready=True)
    assert standbys_missing([parent], parent, 2, 40) == 2
    standby = vassal("a.ini:zerg", "a.ini", standby=True)
    assert standbys_missing([parent, standby], parent, 2, 40) == 1
    assert standbys_missing([parent, standby], parent, 2, 1) == 0
    assert standbys_missing([parent], vassal("b.ini"), 2, 40) == 0  # not ready yet


def test_vassal_command_line_follows_uwsgi_order() -> None:
    config = emperor_config("--vassal-set", "processes=2", "--vassal-set", "nosuch=1",
                            "--vassals-inherit", "/t/base.ini", "--vassals-include", "/t/i.ini")
    assert vassal_arguments(config, "app.ini", "zerg") == [
        "--processes=2", "--set=nosuch=1", "--ini", "app.ini:zerg", "--ini", "/t/base.ini",
        "--include", "/t/i.ini"]


def test_vassal_environment() -> None:
    env = vassal_environment({"UWSGI_VASSAL_PROCESSES": "3", "UWSGI_RELOADS": "2",
                              channel.ENV_FD: "9", "HOME": "/root"}, broodlord_num=4,
                             standby=True)
    assert env == {"UWSGI_PROCESSES": "3", "HOME": "/root", channel.ENV_BROODLORD_NUM: "4",
                   channel.ENV_STANDBY: "1"}


def test_an_instance_reads_the_channel_variables_by_their_names() -> None:
    # the instance spells them itself so that a plain start does not load the channel
    from uzerg.processes import instance

    assert (instance.ENV_FD, instance.ENV_STANDBY) == (channel.ENV_FD, channel.ENV_STANDBY)


def test_check_vassal_reports_the_file_in_one_line(tmp_path: Path) -> None:
    config = emperor_config()
    (tmp_path / "ok.ini").write_text("[uwsgi]\nsocket = /tmp/x.sock\n[zerg]\nzerg = /z\n")
    (tmp_path / "bad.ini").write_text("[uwsgi]\nprotocol = gopher\n")
    assert check_vassal(config, "ok.ini", None, str(tmp_path), {}) is None
    assert check_vassal(config, "ok.ini", "zerg", str(tmp_path), {}) is None
    assert check_vassal(config, "bad.ini", None, str(tmp_path), {}) == (
        "bad.ini:2: protocol: unsupported protocol (uzerg speaks uwsgi and http): gopher")
    assert "no [zerg] section" in str(check_vassal(config, "bad.ini", "zerg", str(tmp_path),
                                                   {}))
    assert os.getcwd() != str(tmp_path)


def test_vassal_send_reports_a_dead_peer() -> None:
    ours, theirs = socket.socketpair()
    v = Vassal("a.ini", file("a.ini"), 1, ours, 0, 0)
    assert v.send(channel.RELOAD) and theirs.recv(1) == b"\x01"
    theirs.close()
    v.send(channel.STOP)
    assert not v.send(channel.STOP)
    ours.close()


def test_standby_needs_a_broodlord_limit() -> None:
    try:
        emperor_config("--emperor-broodlord-standby", "1")
    except ConfigError as exc:
        assert str(exc) == ("command line: emperor-broodlord-standby: needs emperor-broodlord "
                            "(the most zergs to run, standbys included)")
    else:
        raise AssertionError("accepted")
    assert emperor_config("--emperor-broodlord-standby", "1", "--emperor-broodlord", "4")


def test_an_emperor_config_with_hooks_or_daemons_is_refused() -> None:
    try:
        emperor_config("--exec-as-root", "true")
    except ConfigError as exc:
        assert str(exc).startswith("command line: exec-as-root: uzerg does not provide this "
                                   "uWSGI feature in an Emperor's config")
    else:
        raise AssertionError("accepted")
