"""uWSGI's Emperor channel on the wire: a real uWSGI vassal under uzerg's Emperor
(``emperor-wrapper``), and a uzerg vassal under the real uWSGI Emperor (its own
``--emperor-wrapper``): start, loyalty, reload on touch, stop on removal, both ways."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import pytest
from support.clients import http_get
from support.emperor import start_emperor, touch, vassals_named, wait_vassal_pid
from support.processes import InstanceStarter, Processes, free_port, wait_until, write_app

UWSGI = shutil.which("uwsgi")
pytestmark = pytest.mark.skipif(UWSGI is None, reason="the uwsgi binary is not installed")


def serving_pid(port: int) -> str | None:
    try:
        status, body = http_get(f"127.0.0.1:{port}", timeout=2)
    except OSError:
        return None
    return body.split()[-1].decode() if status == 200 else None


def refused(port: int) -> bool:
    return serving_pid(port) is None


def http_vassal(tmp_path: Path, name: str) -> tuple[Path, int]:
    """A vassals directory holding ``name``: an HTTP vassal with a master; it and the port."""
    app = write_app(tmp_path / "app.py")
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    port = free_port()
    (vassals / name).write_text(
        f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {app}\nmaster = true\n")
    return vassals, port


def test_real_uwsgi_vassal_under_uzerg_emperor(uzerg: InstanceStarter, tmp_path: Path) -> None:
    vassals, port = http_vassal(tmp_path, "real.ini")
    emperor, stats = start_emperor(uzerg, vassals, "--emperor-wrapper", str(UWSGI))
    pid = wait_vassal_pid(stats, "real.ini", 30)
    emperor.wait_for_log("has_emperor mode detected")  # uWSGI found UWSGI_EMPEROR_FD
    first = wait_until(lambda: serving_pid(port), 20, "uWSGI serving")
    wait_until(lambda: vassals_named(stats, "real.ini")[0]["loyal"], 10, "loyal")
    touch(vassals / "real.ini")
    emperor.wait_for_log("received message 1 from emperor", 20)
    wait_until(lambda: serving_pid(port) not in (None, first), 20, "a reloaded worker")
    assert vassals_named(stats, "real.ini")[0]["pid"] == pid
    (vassals / "real.ini").unlink()
    emperor.wait_for_log("removed uwsgi instance real.ini", 20)
    assert refused(port)
    uzerg.track(emperor)


def test_uzerg_vassal_under_real_uwsgi_emperor(processes: Processes, tmp_path: Path) -> None:
    vassals, port = http_vassal(tmp_path, "ours.ini")
    wrapper = tmp_path / "uzerg-vassal"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m uzerg \"$@\"\n")
    wrapper.chmod(0o755)
    process, log = processes.start("uwsgi-emperor", [
        str(UWSGI), "--emperor", str(vassals), "--emperor-wrapper", str(wrapper),
        "--emperor-freq", "1"])

    def logged(text: str) -> bool:
        return text in log.read_text(errors="replace")

    first = wait_until(lambda: serving_pid(port), 30, "the uzerg vassal serving")
    wait_until(lambda: logged("[emperor] vassal ours.ini has been spawned"), 10, "spawned")
    wait_until(lambda: logged("[emperor] vassal ours.ini is now loyal"), 10, "loyal")
    touch(vassals / "ours.ini")
    wait_until(lambda: logged("received message 1 from emperor"), 20, "the reload command")
    wait_until(lambda: serving_pid(port) not in (None, first), 20, "a reloaded worker")
    (vassals / "ours.ini").unlink()
    wait_until(lambda: logged("[emperor] removed uwsgi instance ours.ini"), 20, "removed")
    assert refused(port)
    process.send_signal(signal.SIGINT)
    process.wait(35)
    assert logged("The Emperor is buried.")
