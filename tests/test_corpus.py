"""Real-world uwsgi.ini files (../shared/corpus/uwsgi-ini): every one resolves or fails with
clear one-line errors, never a traceback; a file fails only for a reason SPEC §9 gives
(a refused uWSGI feature, strict mode) or because what it points at is missing here (an
included file, an environment variable). ``python tests/test_corpus.py`` prints a summary.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import pytest

from uzerg.config import uwsgi_options
from uzerg.config.load import ConfigError, load_config

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "uwsgi-ini"
FILES = sorted(CORPUS.glob("*.ini")) if CORPUS.is_dir() else []
ENV = {"HOME": "/home/deploy", "PATH": "/usr/local/bin:/usr/bin:/bin"}
ACCEPTED_FAILURES = (
    "uzerg does not provide this uWSGI feature",  # SPEC §9: refused
    "(strict mode)",  # SPEC §9: strict turns warnings into errors
    "cannot read",  # an included file or @(file) that is not part of the corpus
    "is not set)",  # an environment variable the deployment would provide
)

pytestmark = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")


def resolve(path: Path) -> tuple[str, str | tuple[str, ...]]:
    """("clean" | "warnings", warnings) or ("error", message)."""
    try:
        config = load_config(["--ini", str(path)], ENV, write=lambda _text: None)
    except ConfigError as exc:
        return "error", str(exc)
    return ("warnings" if config.warnings else "clean"), config.warnings


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_resolves_or_fails_cleanly(path: Path) -> None:
    outcome, detail = resolve(path)
    if outcome == "error":
        assert isinstance(detail, str) and "\n" not in detail
        assert path.name in detail, detail  # names the file (and line)
        assert any(reason in detail for reason in ACCEPTED_FAILURES), detail
    else:
        assert all("\n" not in w for w in detail)


def unsupported_keys(path: Path) -> list[tuple[str, str]]:
    """(key, severity) of every uWSGI option in the file that uzerg lacks (all sections)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        key = line.split("=", 1)[0].strip()
        if key and key[0] not in ";#[" and uwsgi_options.is_uwsgi_option(key):
            from uzerg.config.options import lookup

            if lookup(key) is None and not re.match(r"(if-|for|end|else)", key):
                value = line.split("=", 1)[1] if "=" in line else ""
                found.append((key, uwsgi_options.classify(key, value)))
    return found


def summary() -> str:
    outcomes = collections.Counter()
    keys: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for path in FILES:
        outcome, detail = resolve(path)
        outcomes[outcome] += 1
        if outcome == "error":
            reasons[next(r for r in ACCEPTED_FAILURES if r in detail)] += 1
        for key, severity in set(unsupported_keys(path)):
            keys[f"{key} ({severity})"] += 1
    lines = [f"{len(FILES)} files: {dict(outcomes)}", f"errors by reason: {dict(reasons)}",
             "commonest unsupported keys (files): " + ", ".join(
                 f"{k} {n}" for k, n in keys.most_common(25))]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
    sys.exit(0)
