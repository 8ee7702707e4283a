"""The Emperor configs of the real-world corpus (../shared/corpus/uwsgi-ini): those that use
only what uzerg's Emperor provides run (their machine's paths pointed into the test's tmp
directory, their users replaced by the test's own); each of the others fails with one line
naming the missing feature. Skipped when the corpus is absent."""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

import pytest
from support.clients import http_get
from support.emperor import emperor_stats, stats_when_up
from support.processes import InstanceStarter, free_port, wait_until, write_app

from uzerg.config.load import ConfigError, load_config

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "uwsgi-ini"
FILES = sorted(CORPUS.glob("*.ini")) if CORPUS.is_dir() else []
EMPEROR_FILES = [f for f in FILES
                 if re.search(r"^\s*emperor\s*=", f.read_text(errors="replace"), re.M)]
# what each refused Emperor config lacks, as its error line names it
REFUSED = {
    "013.ini": "an Emperor beside an instance (`socket`)",
    "051.ini": "fastrouter",
    "078.ini": "exec-as-root",
    "088.ini": "emperor-use-clone",  # strict: a plugin uzerg cannot load is a warning, as in uWSGI
}
ME = pwd.getpwuid(os.getuid()).pw_name

pytestmark = pytest.mark.skipif(not EMPEROR_FILES, reason=f"corpus not found at {CORPUS}")


def test_the_corpus_has_the_emperor_configs_we_expect() -> None:
    assert len(EMPEROR_FILES) >= 10
    assert set(REFUSED) <= {f.name for f in EMPEROR_FILES}


@pytest.mark.parametrize("path", EMPEROR_FILES, ids=lambda p: p.name)
def test_emperor_config_runs_or_names_the_missing_feature(
        path: Path, uzerg: InstanceStarter, tmp_path: Path) -> None:
    if path.name in REFUSED:
        with pytest.raises(ConfigError) as info:
            load_config(["--ini", str(path)], {"PATH": os.environ["PATH"]})
        line = str(info.value)
        assert "\n" not in line and path.name in line
        assert REFUSED[path.name] in line, line
        return
    run_copy(path, uzerg, tmp_path)


def run_copy(path: Path, uzerg: InstanceStarter, tmp_path: Path) -> None:
    """The config with its paths in tmp_path and our user; one vassal must come up."""
    vassals = tmp_path / "vassals"
    vassals.mkdir()
    text = path.read_text()
    text = re.sub(r"/etc/uwsgi/vassals|/vagrant/vassals", str(vassals), text)
    text = re.sub(r"/var/log/uwsgi", str(tmp_path), text)
    text = re.sub(r"^(\s*(?:uid|gid)\s*=).*$", rf"\1 {ME}", text, flags=re.M)
    copy = tmp_path / path.name
    copy.write_text(text)
    config = load_config(["--ini", str(copy)], {"PATH": os.environ["PATH"]})
    app = write_app(tmp_path / "app.py")
    port = free_port()
    vassal_text = f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {app}\n"
    monitor = config.emperor[0]
    if os.path.isdir(monitor):
        vassal = Path(monitor) / "site.ini"
    else:  # a glob or a file name (053: emperor = %D/foo.ini)
        vassal = Path(monitor.replace("*", "site"))
        for included in config.vassals_include:
            Path(included).write_text("[uwsgi]\nmaster = true\n")
    vassal.write_text(vassal_text)
    stats = str(tmp_path / "emperor.stats")
    emperor = uzerg.start(["--ini", str(copy), "--emperor-stats", stats], wait_workers=None,
                          cwd=tmp_path)
    # (037 and 073 log to their logto file: the stats tell when the vassal is up)
    wait_until(lambda: any(v["ready"] for v in (stats_when_up(stats) or {"vassals": []})[
        "vassals"]), 30, f"vassal {vassal} up")
    wait_until(lambda: http_get(f"127.0.0.1:{port}")[0] == 200, 20, "the vassal serving")
    assert emperor_stats(stats)["emperor"] == list(config.emperor)
    uzerg.track(emperor)
    assert emperor.stop() == 0
