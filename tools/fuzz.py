"""Fuzz the readers that take bytes from outside, each for a bounded time (not run in CI).

    python tools/fuzz.py [--seconds N] [--target http|uwsgi|ini|zerg|all]
                         [--engine auto|atheris|hypothesis]

Targets and invariants are tests/fuzz_targets.py's (the property tests use them too): a parse or
the module's own error, never another exception, memory within the configured limits, no
descriptor leaked. With atheris (`pip install -e .[fuzz]`; it needs a libFuzzer-enabled build,
which the PyPI wheels are on x86-64 Linux) each target runs in a child process under
libFuzzer, seeded from tests/fixtures and configs/, for N seconds; libFuzzer writes a crashing
input to crash-* in the current directory. Without atheris (or with --engine hypothesis) the
same targets are driven by the property tests' hypothesis strategies plus random bytes until
the time is up.
Exit status 1 when any target failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
NAMES = ("http", "uwsgi", "ini", "zerg")


def seed_corpus(target: str, directory: Path) -> None:
    """Starting inputs in the targets' byte format: the fixture corpora, the shipped configs."""
    sys.path.insert(0, str(TESTS))
    from fixture_corpus import corpus

    from uzerg.zerg.handshake import header_bytes

    seeds: list[bytes] = []
    if target in ("http", "uwsgi"):
        suffix = ".http" if target == "http" else ".uwsgi"
        for validity in ("valid", "invalid"):
            seeds += [b"\x00" + raw for _, raw, _ in corpus(target, validity, suffix)]
    elif target == "ini":
        seeds += [path.read_bytes() for path in sorted((ROOT / "configs").glob("*.ini"))]
    else:
        seeds += [b"\x01" + header_bytes(1), b"\x04" + header_bytes(2) + b'{"uzerg":1}\n']
    for index, seed in enumerate(seeds):
        (directory / f"seed-{index:04d}").write_bytes(seed)


def run_atheris_child(target: str, seconds: int) -> None:
    """In the child: instrument uzerg, then hand the target to libFuzzer (which exits)."""
    import atheris

    sys.path.insert(0, str(TESTS))
    with atheris.instrument_imports(include=["uzerg"]):
        import fuzz_targets
    function = fuzz_targets.TARGETS[target]
    with tempfile.TemporaryDirectory(prefix=f"uzerg-fuzz-{target}-") as tmp:
        seed_corpus(target, Path(tmp))
        atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-max_len=8192",
                       "-print_final_stats=1", tmp], function)
        atheris.Fuzz()


def run_atheris(target: str, seconds: int) -> bool:
    command = [sys.executable, __file__, "--child", target, "--seconds", str(seconds)]
    print(f"== {target}: atheris/libFuzzer for {seconds} s", flush=True)
    result = subprocess.run(command, check=False)  # libFuzzer writes crash-* here
    print(f"== {target}: {'ok' if result.returncode == 0 else 'FAILED'}", flush=True)
    return result.returncode == 0


def run_hypothesis(target: str, seconds: int) -> bool:
    """Rounds of hypothesis examples (new random ones each round) until `seconds` are up."""
    sys.path.insert(0, str(TESTS))
    import fuzz_targets
    import property_strategies
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    strategy = {
        "http": property_strategies.http_streams(), "uwsgi": property_strategies.uwsgi_streams(),
        "ini": property_strategies.ini_files(), "zerg": property_strategies.zerg_handshakes(),
    }[target] | st.binary(max_size=1024)
    function = fuzz_targets.TARGETS[target]
    runs = 0

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one_round(data: bytes) -> None:
        nonlocal runs
        runs += 1
        function(data)

    print(f"== {target}: hypothesis for {seconds} s", flush=True)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            one_round()
    except Exception as exc:  # the falsifying example was printed by hypothesis
        print(f"== {target}: FAILED after {runs} inputs: {exc!r}", flush=True)
        return False
    print(f"== {target}: ok, {runs} inputs", flush=True)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--target", choices=(*NAMES, "all"), default="all")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--child", choices=NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        run_atheris_child(args.child, args.seconds)
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
        if engine == "hypothesis":
            print("atheris is not installed: fuzzing with hypothesis instead", flush=True)
    elif engine == "atheris" and not importlib.util.find_spec("atheris"):
        print("atheris is not installed (pip install -e .[fuzz])", file=sys.stderr)
        return 2
    run = run_atheris if engine == "atheris" else run_hypothesis
    targets = NAMES if args.target == "all" else (args.target,)
    failed = [target for target in targets if not run(target, args.seconds)]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
