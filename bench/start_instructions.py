"""User-space instructions of a zerg's start, from launch to its master's first fork, counted
by valgrind; and the modules loaded by then.

    python bench/start_instructions.py [--protocol uwsgi|http] [--log] [--modules] [--app FILE]
                                       [-- extra uzerg options]

Wall-clock start times (bench/suite.py scenario 8) swing by several ms between runs; an
instruction count does not (within ~0.1%). A uzerg zergpool holds a loopback TCP socket; a
zerg (2 workers, bench/hello_app.py, as scenario 8) is started under ``valgrind
--tool=callgrind`` with ``os.fork`` replaced by an exit, so the count is the master's whole
critical path before its first worker exists: the interpreter, ``site``, uzerg's imports,
the configuration, the zerg handshake and the app. ``python -c pass`` is counted the same
way and printed beside it (the part no server change can cut). ``--modules``: list the
modules loaded at the fork that ``python -c pass`` does not load. Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import APP, free_port, kill_tree  # noqa: E402

# Runs uzerg's command in this interpreter; the first fork ends the process (status 0) after
# writing the loaded modules' names to the file named by the environment.
STUB = """
import os, sys
def _first_fork():
    names = os.environ.get("STARTCOUNT_MODULES")
    if names:
        with open(names, "w") as out:
            out.write("\\n".join(sorted(sys.modules)))
    os._exit(0)
os.fork = _first_fork
sys.argv[0] = "uzerg"
from uzerg.cli import main
sys.exit(main())
"""
COLLECTED = re.compile(rb"Collected : (\d+)")


def count(cmd: list[str], env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", *cmd],
            env=env, capture_output=True, timeout=300, check=False)
    found = COLLECTED.search(run.stderr)
    if run.returncode != 0 or not found:
        sys.exit(f"valgrind run failed ({run.returncode}): {run.stderr[-2000:].decode()}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=("uwsgi", "http"), default="uwsgi",
                        help="the zerg's protocol on the pool's socket")
    parser.add_argument("--log", action="store_true", help="request logging on")
    parser.add_argument("--modules", action="store_true", help="list the modules loaded")
    parser.add_argument("--app", type=Path, default=APP,
                        help="the WSGI file (default: bench/hello_app.py, which imports typing "
                             "and so re and enum; an app importing nothing shows uzerg's own)")
    parser.add_argument("extra", nargs="*", help="more uzerg options (after --)")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # .pyc files as an installed server has them
    workdir = Path(tempfile.mkdtemp(prefix="uzerg-startcount-"))
    env.setdefault("PYTHONPYCACHEPREFIX", str(workdir / "pycache"))
    pool, port = workdir / "pool.sock", free_port()
    pool_process = subprocess.Popen(
        [sys.executable, "-m", "uzerg", "--master", "--zergpool", f"{pool}:127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while not pool.exists():
            if time.monotonic() > deadline or pool_process.poll() is not None:
                sys.exit("the zergpool did not start")
            time.sleep(0.02)
        zerg = [sys.executable, "-c", STUB, "--zerg", str(pool), "--processes", "2",
                "--master", "--wsgi-file", str(args.app), "--buffer-size", "8192", *args.extra]
        if args.protocol == "http":
            zerg[zerg.index("--zerg") + 2:zerg.index("--zerg") + 2] = ["--protocol", "http"]
        if not args.log:
            zerg.append("--disable-logging")
        modules_out = workdir / "modules.txt"
        probe = subprocess.run(zerg, env={**env, "STARTCOUNT_MODULES": str(modules_out)},
                               capture_output=True, timeout=60, check=False)
        if probe.returncode != 0 or not modules_out.exists():
            sys.exit(f"the zerg did not reach its fork: {probe.stderr[-2000:].decode()}")
        bare_modules = subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"],
                                      env=env, capture_output=True, text=True, check=True)
        loaded = set(modules_out.read_text().split()) - set(bare_modules.stdout.split())
        count(zerg, env)  # once untimed: the .pyc files
        ours, bare = count(zerg, env), count([sys.executable, "-c", "pass"], env)
    finally:
        kill_tree(pool_process)
    ours_own = sorted(name for name in loaded if name.split(".")[0] == "uzerg")
    print(f"zerg start to its first fork: {ours / 1e6:.1f}M instructions "
          f"(python -c pass: {bare / 1e6:.1f}M; uzerg's part: {(ours - bare) / 1e6:.1f}M)")
    print(f"modules loaded beyond python -c pass: {len(loaded)} "
          f"({len(ours_own)} of uzerg, {len(loaded) - len(ours_own)} others)")
    if args.modules:
        print("  " + " ".join(sorted(loaded)))


if __name__ == "__main__":
    main()
