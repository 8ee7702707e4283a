"""Hooks and exec phases (issue 10): each phase runs at its moment, in the process uWSGI runs
it in; a failing fatal step stops the start-up with the option named; non-fatal ones don't."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support.clients import http_get
from support.processes import InstanceStarter, wait_until

RECORDER = '''
import os

def mark(arg=None):
    with open(os.environ["HOOK_LOG"], "a") as out:
        out.write(f"call {arg} {os.getpid()}\\n")

def fail(arg=None):
    raise RuntimeError("refused by the test")
'''


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_every_phase_runs_in_order_and_in_its_process(uzerg: InstanceStarter, app_file: Path,
                                                      tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    (tmp_path / "recorder.py").write_text(RECORDER)
    env = {"HOOK_LOG": str(trace), "PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{tmp_path}"}

    def step(phase: str) -> str:
        return f"appendn:{trace} {phase}"

    inst = uzerg.start([
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file), "--master",
        "--processes", "2",
        "--hook-asap", f"mkdir:{tmp_path / 'made'}",
        "--hook-asap", step("asap"),
        "--exec-asap", f"echo exec-asap >> {trace}",
        "--hook-as-root", "putenv:HOOKED=yes",
        "--hook-as-root", step("as-root"),
        "--exec-as-user", f'echo "as-user HOOKED=$HOOKED" >> {trace}',
        "--hook-pre-app", step("pre-app"),
        "--hook-post-app", step("post-app"),
        "--call-post-app", "recorder.mark",
        "--hook-post-fork", "call:recorder.mark post-fork",
        "--hook-accepting", "call:recorder.mark accepting",
        "--hook-accepting-once", "call:recorder.mark accepting-once",
        "--hook-accepting1", "call:recorder.mark accepting1",
        "--hook-master-start", "call:recorder.mark master-start",
        "--hook-as-user-atexit", step("atexit"),
        "--hook-pre-app", f"write:{tmp_path / 'written'} some text",
        "--hook-pre-app", "!print:a secret",
    ], wait_workers=2, env=env)
    assert http_get(inst.address())[0] == 200
    workers = set(inst.worker_pids(2))

    def count(word: str) -> int:
        return len([x for x in _lines(trace) if f" {word} " in x])

    # the master's master-start and the workers' hooks run concurrently: wait for all
    wait_until(lambda: (count("accepting1"), count("master-start"), count("post-fork"),
                        count("accepting-once")) == (1, 1, 2, 2), 15, "every process's hooks")
    lines = _lines(trace)
    start_phases = [x for x in lines if not x.startswith("call")]
    assert start_phases == ["asap", "exec-asap", "as-root", "as-user HOOKED=yes", "pre-app",
                            "post-app"]
    calls = [x.split() for x in lines if x.startswith("call")]
    by_phase: dict[str, list[int]] = {}
    for _call, phase, pid in calls:
        by_phase.setdefault(phase, []).append(int(pid))
    assert by_phase["None"] == [inst.pid]  # call-post-app: in the master, before the fork
    assert by_phase["master-start"] == [inst.pid]
    assert set(by_phase["post-fork"]) == workers
    assert (tmp_path / "made").is_dir()
    assert (tmp_path / "written").read_text() == "some text"
    log = inst.log_text()
    assert "running --- PRIVATE HOOK --- (pre app)..." in log and "a secret" in log
    assert 'running "!print' not in log

    # a worker killed is respawned: accepting again, accepting-once not
    victim = sorted(workers)[1]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(set(inst.worker_pids()) - workers) == 1, 15, "a respawned worker")
    new = (set(inst.worker_pids()) - workers).pop()
    wait_until(lambda: f"accepting {new}" in trace.read_text(), 10, "the respawn's accepting")
    assert f"accepting-once {new}" not in trace.read_text()
    assert "atexit" not in trace.read_text()
    assert inst.stop(signal.SIGTERM) == 0
    assert _lines(trace)[-1] == "atexit"


def test_atexit_runs_before_a_reload_and_start_phases_again_after(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--hook-pre-app", f"appendn:{trace} pre-app",
                        "--exec-as-user-atexit", f"echo atexit >> {trace}"])
    assert _lines(trace) == ["pre-app"]
    inst.send(signal.SIGHUP)
    wait_until(lambda: _lines(trace) == ["pre-app", "atexit", "pre-app"], 20,
               "atexit then pre-app again")
    assert inst.stop() == 0


def test_a_failing_fatal_hook_stops_the_start_up_and_names_it(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--hook-pre-app", "exec:exit 3",
                        "--hook-post-app", f"mkdir:{tmp_path / 'never'}"], wait_workers=None)
    assert inst.wait_exit() == 1
    log = inst.log_text()
    assert 'hook-pre-app = exec:exit 3 failed (pre app): command "exit 3" exited with ' \
           "non-zero code: 3" in log
    assert "FATAL hook failed, destroying instance" in log
    assert "Traceback" not in log and not (tmp_path / "never").exists()
    assert "spawned uWSGI worker" not in log


def test_a_failing_worker_hook_destroys_the_instance(uzerg: InstanceStarter, app_file: Path,
                                                    tmp_path: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--hook-accepting", f"unlink:{tmp_path / 'missing'}"],
                       wait_workers=None)
    assert inst.wait_exit() == 1
    log = inst.log_text()
    assert f"hook-accepting = unlink:{tmp_path / 'missing'} failed (accepting): unlink " in log
    assert "No such file or directory" in log and "Traceback" not in log
    assert "a worker's fatal hook failed, destroying the instance..." in log
    # with lazy-apps the pre-app phase runs in each worker: same end
    lazy = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--lazy-apps", "--processes", "2", "--hook-pre-app", "exec:exit 2"],
                       wait_workers=None)
    assert lazy.wait_exit() == 1
    assert 'hook-pre-app = exec:exit 2 failed (pre app): command "exit 2" exited with ' \
           "non-zero code: 2" in lazy.log_text()


def test_a_failing_master_start_hook_stops_the_instance(uzerg: InstanceStarter, app_file: Path,
                                                       tmp_path: Path) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--hook-master-start", "call:recorder.fail"],
                       wait_workers=None,
                       env={"PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{tmp_path}"})
    assert inst.wait_exit() == 1
    assert ('hook-master-start = call:recorder.fail failed (master-start): function '
            '"recorder.fail" raised RuntimeError: refused by the test') in inst.log_text()


def test_non_fatal_steps_log_and_go_on(uzerg: InstanceStarter, app_file: Path,
                                       tmp_path: Path) -> None:
    # uWSGI ignores a failing call-as-root and call-post-app, safeexec never fails, and
    # writefifo to a fifo nobody reads is not an error
    os.mkfifo(tmp_path / "nofifo")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--call-as-root", "no_such_c_symbol_here",
                        "--call-post-app", "no_such_c_symbol_either",
                        "--hook-pre-app", "safeexec:exit 4",
                        "--hook-pre-app", f"writefifo:{tmp_path / 'nofifo'} x"])
    assert http_get(inst.address())[0] == 200
    log = inst.log_text()
    assert 'call-as-root = no_such_c_symbol_here failed (as root): unable to call function ' \
           '"no_such_c_symbol_here"' in log
    assert 'command "exit 4" exited with non-zero code: 4' in log
    assert inst.stop() == 0


def test_exit_action_and_c_symbols(uzerg: InstanceStarter, app_file: Path,
                                   tmp_path: Path) -> None:
    # callret: a C function of the process; getpid() returns non-zero, so it "fails" ...
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--hook-asap", "callret:getpid"], wait_workers=None)
    assert inst.wait_exit() == 1
    assert 'function "getpid" returned ' in inst.log_text()
    # ... and exit: ends the instance with its status (uWSGI: only a status of 2+ digits)
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--hook-as-user", "call:sync", "--hook-pre-app", "exit:42"],
                       wait_workers=None)
    assert inst.wait_exit() == 42
    assert 'running "call:sync" (as user)...' in inst.log_text()


def test_a_bad_hook_is_refused_when_the_config_is_read(uzerg: InstanceStarter,
                                                       app_file: Path) -> None:
    for value, message in (("nosuch:x", "hook action not found: nosuch"),
                           ("mount:proc none /proc", "mounting file systems is not provided"),
                           ("mkdir", "invalid hook syntax, must be hook:args")):
        inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                            "--hook-pre-app", value], wait_workers=None)
        assert inst.wait_exit() == 1
        assert message in inst.log_text() and "Traceback" not in inst.log_text()


def test_hook_touch_runs_its_hook_when_the_file_is_touched(
        uzerg: InstanceStarter, app_file: Path, tmp_path: Path) -> None:
    watched, trace = tmp_path / "watched", tmp_path / "trace"
    watched.write_text("")
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--hook-touch", f"{watched} appendn:{trace} touched",
                        "--hook-touch", f"{watched} unlink:{tmp_path / 'missing'}"])
    assert not trace.exists()
    os.utime(watched, (1, 1))
    wait_until(lambda: _lines(trace) == ["touched"], 10, "the touch hook")
    # a failing touch hook is logged, never fatal
    inst.wait_for_log(f"hook-touch = unlink:{tmp_path / 'missing'} failed (touch)")
    assert http_get(inst.address())[0] == 200
    assert inst.stop() == 0
