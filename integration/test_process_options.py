"""Process options of issue 10 run for real: max-fd sets the descriptor limit of the master
and of the workers it forks (uWSGI's setrlimit(RLIMIT_NOFILE))."""

from __future__ import annotations

from pathlib import Path

from support.processes import InstanceStarter


def _nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


def test_max_fd_sets_the_limit_of_every_process(uzerg: InstanceStarter, app_file: Path) -> None:
    inst = uzerg.start(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(app_file),
                        "--master", "--max-fd", "777", "--processes", "2"], wait_workers=2)
    assert "detected max file descriptor number: 777" in inst.log_text()
    for pid in [inst.pid, *inst.worker_pids(2)]:
        assert _nofile(pid) == (777, 777)
    assert inst.stop() == 0
