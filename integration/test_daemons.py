"""attach-daemon and friends (issue 10): the master starts them, respawns them when they die,
stops the dumb ones with the instance and on reload; smart ones (pidfile) survive both."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
from support.processes import Instance, InstanceStarter, wait_until


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _recording(path: Path, seconds: int = 60) -> str:
    """A daemon command that records its pid, then becomes a sleep of that pid."""
    return f"echo $$ >> {path}; exec sleep {seconds}"


def _base(app_file: Path) -> list[str]:
    return ["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file), "--master"]


def _start(uzerg: InstanceStarter, args: list[str]) -> Instance:
    """Started and serving (its daemons are the master's children too: count no workers)."""
    inst = uzerg.start(args, wait_workers=None)
    inst.wait_for_log("spawned uWSGI worker 1")
    return inst


def test_a_dumb_daemon_is_respawned_and_stopped_with_the_instance(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    record = tmp_path / "pids"
    inst = _start(uzerg, [*_base(app_file), "--attach-daemon", _recording(record)])
    first = wait_until(lambda: _pids(record)[:1], 10, "the daemon's pid")[0]  # type: ignore[index]
    assert psutil.Process(first).ppid() == inst.pid and _alive(first)
    # its own session: a signal to the instance's group does not reach it
    assert os.getsid(first) == first
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: _pids(record)[1:2], 10, "a respawn")[0]  # type: ignore[index]
    assert second != first and _alive(second)
    assert f"(pid: {first}) killed by signal 9" in inst.log_text()
    assert '[uwsgi-daemons] respawning "echo $$' in inst.log_text()
    assert inst.stop() == 0
    assert not _alive(second)
    assert f"[uwsgi-daemons] stopping daemon (pid: {second})" in inst.log_text()


def test_reload_restarts_dumb_daemons_and_keeps_smart_ones(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    dumb, pidfile = tmp_path / "dumb", tmp_path / "smart.pid"
    inst = _start(uzerg, [*_base(app_file), "--attach-daemon", _recording(dumb),
                          "--smart-attach-daemon2", f"{pidfile} exec sleep 60"])
    first = wait_until(lambda: _pids(dumb)[:1], 10, "the dumb daemon")[0]  # type: ignore[index]
    smart = wait_until(lambda: _pids(pidfile)[:1], 10, "the smart daemon")[0]  # type: ignore[index]
    mark = inst.mark()
    inst.send(signal.SIGHUP)
    inst.wait_for_log("gracefully (RE)spawned uWSGI master process", since=mark)
    second = wait_until(lambda: _pids(dumb)[1:2], 10, "the dumb daemon again")[0]  # type: ignore[index]
    assert not _alive(first) and _alive(second)
    inst.wait_for_log(f"found valid/active pidfile for \"exec sleep 60\" (pid: {smart})",
                      since=mark)
    assert _pids(pidfile) == [smart] and _alive(smart)
    assert inst.stop() == 0
    assert not _alive(second)
    try:
        assert _alive(smart)  # a smart daemon outlives the instance, as in uWSGI
    finally:
        os.kill(smart, signal.SIGKILL)


def test_a_smart_daemon_is_respawned_when_its_pid_is_gone(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "s.pid"
    # a command that daemonizes itself and writes its pidfile, as memcached -d -P does
    command = f"sh -c 'echo $$ > {pidfile}; exec sleep 60' > /dev/null &"
    inst = _start(uzerg, [*_base(app_file), "--smart-attach-daemon", f"{pidfile} {command}"])
    first = wait_until(lambda: _pids(pidfile)[:1], 10, "the daemon's pidfile")[0]  # type: ignore[index]
    inst.wait_for_log(f"new_pid: {first})", timeout=10)  # adopted: "found changed pid"
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: _pids(pidfile)[:1] not in ([], [first]), 10, "a new pid in the pidfile")
    second = _pids(pidfile)[0]
    assert _alive(second)
    assert inst.stop() == 0
    try:
        assert _alive(second)
    finally:
        os.kill(second, signal.SIGKILL)


def test_attach_daemon2_touch_stopsignal_and_control(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    record, touched = tmp_path / "pids", tmp_path / "touch-me"
    got = tmp_path / "signals"
    touched.write_text("")
    # the daemon traps SIGUSR1 (its stopsignal) to prove which signal it got
    command = f"trap 'echo USR1 >> {got}; exit 0' USR1; echo $$ >> {record}; " \
              "while :; do sleep 0.1; done"
    inst = _start(uzerg, [*_base(app_file), "--attach-daemon2",
                          f"cmd={command},stopsignal=10,touch={touched}"])
    first = wait_until(lambda: _pids(record)[:1], 10, "the daemon")[0]  # type: ignore[index]
    os.utime(touched, (1, 1))
    wait_until(lambda: len(_pids(record)) == 2, 15, "a respawn after the touch")
    assert got.read_text() == "USR1\n" and not _alive(first)
    assert f"*** {touched} has been touched... reloading daemon" in inst.log_text()
    assert inst.stop() == 0
    assert got.read_text() == "USR1\nUSR1\n"  # stopped with its stopsignal too

    control = _start(uzerg, [*_base(app_file), "--attach-control-daemon", "sleep 1"])
    assert control.wait_exit(20) == 0
    assert 'control daemon "sleep 1" died: stopping the instance' in control.log_text()


def test_bad_daemon_values_are_refused(uzerg: InstanceStarter, app_file: Path) -> None:
    for option, value, message in (
        ("--attach-daemon2", "pidfile=/x", "you need to specify a 'command' key"),
        ("--attach-daemon2", "cmd=x,ns_pid=1", "pid namespaces are not provided by uzerg"),
        ("--attach-daemon2", "cmd=x,bogus=1", "unknown key 'bogus'"),
        ("--smart-attach-daemon", "/only/a/pidfile", "invalid smart-attach-daemon syntax"),
    ):
        inst = uzerg.start([*_base(app_file), option, value], wait_workers=None)
        assert inst.wait_exit() == 1
        assert message in inst.log_text() and "Traceback" not in inst.log_text()
