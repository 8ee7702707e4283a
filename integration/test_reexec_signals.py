"""A signal that the master caught just before it re-executes itself is not lost: it is raised
again while blocked and reaches the new program (uzerg.processes.reexec.reexec)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from uzerg.processes.reexec import ENV_NAME

SCRIPT = f"""
import os, signal, sys
from uzerg.processes import reexec

caught = []
signal.signal(signal.SIGUSR1, lambda signum, _frame: caught.append(signum))
if os.environ.get({ENV_NAME!r}):  # the new program: deliver what waited across exec()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, reexec.RELOAD_BLOCKED_SIGNALS)
    print("after exec:", caught, flush=True)
    sys.exit(0)
os.kill(os.getpid(), signal.SIGUSR1)  # caught by the old master, not dispatched yet
assert caught == [signal.SIGUSR1]
reexec.reexec("{{}}", "", os.environ, caught)
"""


def test_a_signal_caught_before_exec_reaches_the_new_program(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(SCRIPT)
    environ = {k: v for k, v in os.environ.items() if k != ENV_NAME}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"after exec: [{int(signal.SIGUSR1)}]"
