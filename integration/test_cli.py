"""``python -m uzerg`` (and ``python -m uzerg.config.docs``): exit statuses and messages of
--check-config, --help, management."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.processes import REPO as ROOT


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UWSGI_", "UZERG_"))}
    return subprocess.run([sys.executable, "-m", "uzerg", *args], capture_output=True,
                          text=True, timeout=30, env={**base, **(env or {})}, cwd=cwd)


def test_check_config_prints_resolved_ini_and_exits_0() -> None:
    proc = run("--ini", str(ROOT / "configs" / "zergpool.ini"), "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        ";uWSGI instance configuration\n[uwsgi]\nmaster = true\n"
        "zergpool = /tmp/zergpool_1:127.0.0.1:3031,127.0.0.1:3032\n"
        "zergpool = /tmp/zergpool_2:192.168.173.22:3031,192.168.173.22:3032\n"
        ";end of configuration\n")
    assert proc.stderr == ""


def test_bare_file_and_command_line_only() -> None:
    proc = run(str(ROOT / "configs" / "zergpool.ini"), "--check-config")
    assert proc.returncode == 0 and "zergpool = /tmp/zergpool_1" in proc.stdout
    proc = run("-M", "-p", "8", "--module", "welcome", "--zerg-server", "@nydus",
               "--check-config")
    assert proc.returncode == 0
    assert "processes = 8\nmodule = welcome\nzerg-server = @nydus\n" in proc.stdout


def test_check_config_binds_nothing(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    proc = run("--socket", str(sock), "--zerg-server", str(tmp_path / "z"), "--check-config")
    assert proc.returncode == 0
    assert not sock.exists() and not (tmp_path / "z").exists()


def test_config_error_is_one_line_exit_1(tmp_path: Path) -> None:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\nmaster = true\noffload-threads = 2\nzergpool = /tmp/p\n")
    proc = run(str(site), "--check-config")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"uzerg: warning: {site}:3: offload-threads: uWSGI option not implemented by uzerg, "
        "ignored: uzerg's workers send files themselves with sendfile()",
        f"uzerg: {site}:4: zergpool: invalid zergpool syntax: /tmp/p",
    ]


def test_command_line_error_and_missing_file(tmp_path: Path) -> None:
    proc = run("--processes", "0", "--check-config")
    assert (proc.returncode, proc.stderr) == (
        1, "uzerg: command line: --processes: must be at least 1: 0\n")
    proc = run("--ini", str(tmp_path / "nope.ini"), "--check-config")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "No such file or directory" in proc.stderr


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\nproesses = 4\nprint = hello\n")
    proc = run(str(site), "--check-config")
    assert proc.returncode == 0
    assert "did you mean `processes`?" in proc.stderr
    assert proc.stdout.startswith("hello\n;uWSGI instance configuration\n")
    assert run(str(site), "--check-config", "--strict").returncode == 1


def test_environment_variables() -> None:
    proc = run("--check-config", env={"UWSGI_ZERG_FALLBACK": "1", "UZERG_PROCESSES": "3"})
    assert proc.returncode == 0
    assert "zerg-fallback = true\nprocesses = 3\n" in proc.stdout


def test_help_and_version() -> None:
    proc = run("--help")
    assert proc.returncode == 0 and "--zerg-server" in proc.stdout
    assert run("-h").stdout == proc.stdout
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("uzerg ")


def test_refused_feature(tmp_path: Path) -> None:
    site = tmp_path / "site.ini"
    site.write_text("[uwsgi]\nspooler = /var/spool/app\n")
    proc = run(str(site), "--check-config")
    assert proc.returncode == 1
    assert proc.stderr == (f"uzerg: {site}:2: spooler: uzerg does not provide this uWSGI "
                           "feature; running without it would change the service (run "
                           "background work in a separate process)\n")


def test_management_commands_signal_the_pidfile(tmp_path: Path) -> None:
    target = subprocess.Popen(
        [sys.executable, "-c", "import signal,sys,time\n"
         "signal.signal(signal.SIGHUP, lambda *a: (print('HUP', flush=True), sys.exit(0)))\n"
         "print('ready', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline() == "ready\n"
        pidfile = tmp_path / "app.pid"
        pidfile.write_text(f"{target.pid}\n")
        assert run("--reload", str(pidfile)).returncode == 0
        assert target.wait(timeout=10) == 0
        assert target.stdout.readline() == "HUP\n"
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


def test_management_errors(tmp_path: Path) -> None:
    proc = run("--stop", str(tmp_path / "missing.pid"))
    assert proc.returncode == 1 and "cannot read pidfile" in proc.stderr
    bad = tmp_path / "bad.pid"
    bad.write_text("garbage")
    proc = run("--pause", str(bad))
    assert proc.returncode == 1 and "invalid pidfile" in proc.stderr
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / "gone.pid"
    gone.write_text(str(dead.pid))
    proc = run("--resume", str(gone))
    assert proc.returncode == 1 and "cannot signal pid" in proc.stderr


def test_docs_module_prints_markdown() -> None:
    out = subprocess.run([sys.executable, "-m", "uzerg.config.docs"], capture_output=True,
                         text=True,
                         check=True, timeout=30).stdout
    assert out.startswith("# uzerg options") and "`zergpool`" in out


def test_command_line_value_of_other_bytes_is_refused_like_an_ini_line(tmp_path: Path) -> None:
    # bytes that are not UTF-8 (argv decodes them with surrogateescape): one line, as the INI
    # reader says it, never a traceback from wherever the value is used first
    path = os.fsdecode(bytes(tmp_path) + b"/x\xff.sock")
    proc = run("--socket", path, "--wsgi-file", str(ROOT / "bench" / "hello_app.py"))
    assert proc.returncode == 1
    assert proc.stderr == "uzerg: command line: --socket: not valid UTF-8\n"
    assert not os.listdir(tmp_path)


def test_environment_value_of_other_bytes_is_refused_but_an_ini_file_may_have_any_name(
        tmp_path: Path) -> None:
    hello = str(ROOT / "bench" / "hello_app.py")
    proc = run("--wsgi-file", hello, env={"UWSGI_SOCKET": os.fsdecode(b"/tmp/y\xff.sock")})
    assert proc.returncode == 1
    assert proc.stderr == "uzerg: environment: UWSGI_SOCKET: not valid UTF-8\n"
    ini = os.fsdecode(bytes(tmp_path) + b"/site\xff.ini")
    Path(ini).write_text("[uwsgi]\nsocket = 127.0.0.1:0\n")
    proc = run("--ini", ini, "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert "socket = 127.0.0.1:0\n" in proc.stdout
