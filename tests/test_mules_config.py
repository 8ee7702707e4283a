"""Mules in the configuration (issue 10): ``mule = script.py`` and ``module:callable`` are
accepted; a mule without a script, ``mules = N`` and ``farm`` need the uwsgi module (mule
messages, signals) and are refused with one line saying so; the master's respawn rule."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from config_helpers import make_config

from uzerg.config.load import ConfigError, load_config
from uzerg.processes.mules import MAX_THROTTLE, Mules

CORPUS_023 = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "uwsgi-ini" / "023.ini"


def _ini(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "site.ini"
    path.write_text("[uwsgi]\nhttp-socket = :8080\n" + body)
    return ["--ini", str(path)]


def test_script_and_callable_mules_are_accepted_in_order(tmp_path: Path) -> None:
    config = load_config(_ini(tmp_path, "mule = worker.py\nmule=pkg.tasks:run\n"
                                        "mule = worker.py\nmule-reload-mercy = 5\n"
                                        "hook-as-mule = print:hello\n"), {})
    assert config.mule == ("worker.py", "pkg.tasks:run", "worker.py")
    assert config.mule_reload_mercy == 5
    assert config.hook_as_mule == ("print:hello",)
    assert not config.warnings
    assert load_config(["--mule=w.py", "--http-socket", ":8080"], {}).mule == ("w.py",)


@pytest.mark.parametrize("body", ["mule =\n", "mule = true\n", "mule = worker\n",
                                  "mule = /usr/bin/worker.sh\n"])
def test_a_mule_without_a_python_script_is_refused(tmp_path: Path, body: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_ini(tmp_path, body), {})
    text = str(info.value)
    assert "\n" not in text and "site.ini:3: mule:" in text
    assert "uzerg does not provide this uWSGI feature" in text
    assert "uwsgi.mule_msg()" in text and "mule = worker.py" in text


def test_bare_mule_on_the_command_line_names_the_equals_form() -> None:
    # uWSGI's optional argument: `--mule worker.py` is a bare mule and worker.py the app
    with pytest.raises(ConfigError) as info:
        load_config(["--http-socket", ":8080", "--mule", "worker.py"], {})
    assert "--mule=worker.py" in str(info.value)


@pytest.mark.parametrize("body", ["mules = 2\n", "farm = one:1,2\n", "mule-msg-size = 4096\n"])
def test_mules_without_scripts_are_refused_with_the_reason(tmp_path: Path, body: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_ini(tmp_path, "mule = worker.py\n" + body), {})
    text = str(info.value)
    assert "\n" not in text and "uzerg does not provide this uWSGI feature" in text
    assert "uwsgi module" in text


@pytest.mark.skipif(not CORPUS_023.exists(), reason="corpus not found")
def test_corpus_023_with_three_mules_resolves_clean() -> None:
    config = load_config(["--ini", str(CORPUS_023)], {"HOME": "/h", "PATH": "/bin"})
    assert config.mule == ("worker.py", "worker.py", "worker.py")
    assert config.touch_chain_reload and config.lazy_apps
    assert config.warnings == ()


def test_a_failing_mule_is_respawned_at_most_once_a_second_then_throttled() -> None:
    """The master's rule (no process: the service's bookkeeping on reaped statuses)."""
    mules = Mules(make_config("--http-socket", ":8080", "--mule=w.py"))
    mule = mules.mules[0]
    waits = []
    for attempt in range(40):
        now = time.monotonic()
        mule.pid, mule.spawned_mono = 1000 + attempt, now
        assert mules.child_exited(mule.pid, 30 << 8)
        assert mule.pid == 0
        waits.append(round(mule.due - now))
    assert waits[:4] == [1, 2, 3, 4]
    assert max(waits) == MAX_THROTTLE
    # a mule that lived a while is respawned at once, and the count starts again
    mule.pid, mule.spawned_mono = 2000, time.monotonic() - 60
    mules.child_exited(2000, 9)
    assert mule.due <= time.monotonic() and mule.quick_deaths == 0
    assert not mules.child_exited(os.getpid(), 0)  # not a mule: someone else's child
