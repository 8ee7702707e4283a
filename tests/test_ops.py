"""Pure parts of issue 12's operations features: Prometheus text, sd_notify datagrams,
LISTEN_FDS parsing, the takeover files, the stats server's request check."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from config_helpers import make_config

from uzerg.processes import prometheus, takeover
from uzerg.processes.instance import LISTEN_VARIABLES
from uzerg.processes.lifecycle import LifecycleService
from uzerg.processes.scoreboard import Scoreboard
from uzerg.processes.stats_clients import wants_prometheus as _wants_prometheus
from uzerg.systemd import ActivatedSockets, ActivationError, Notifier, take_activated_sockets

DOCUMENT = {
    "listen_queue": 3,
    "sockets": [
        {"name": "127.0.0.1:3031", "proto": "uwsgi", "queue": 3, "max_queue": 100},
        {"name": "127.0.0.1:3031", "proto": "uwsgi", "queue": 3, "max_queue": 100},
    ],
    "workers": [
        {"id": 1, "requests": 7, "exceptions": 1, "status": "busy", "rss": 5, "avg_rt": 2500,
         "running_time": 3_000_000, "cores": [{}], "apps": []},
        {"id": 2, "requests": 0, "status": "pause", "cores": [{}], "apps": []},
    ],
    "zerg": [{"address": '/run/p"o\\ol\n.sock', "kind": "zergpool", "sockets": 2,
              "attached": 4, "refused": 1, "dropped": 0, "zergs": [{}, {}]}],
}


def test_prometheus_text_parses_with_the_reference_parser() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    text = prometheus.render(DOCUMENT)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in parser.text_string_to_metric_families(text)
               for s in family.samples}
    assert samples[("uwsgi_worker_requests_total", (("worker_id", "1"),))] == 7
    assert samples[("uwsgi_worker_average_response_time_seconds", (("worker_id", "1"),))] \
        == 0.0025
    assert samples[("uwsgi_worker_running_time_seconds", (("worker_id", "1"),))] == 3
    assert samples[("uwsgi_worker_busy", (("worker_id", "1"),))] == 1
    assert samples[("uwsgi_listen_queue_length", ())] == 3
    pool = (("address", '/run/p"o\\ol\n.sock'), ("kind", "zergpool"))
    assert samples[("uzerg_zerg_attached_zergs", pool)] == 2
    assert samples[("uzerg_zerg_refused_total", pool)] == 1
    # a duplicated socket (same name and proto) is one series: duplicates are invalid
    assert text.count('uwsgi_socket_queue_length{name="127.0.0.1:3031"') == 1


def test_prometheus_format_is_asked_in_the_query() -> None:
    assert _wants_prometheus(b"GET /?format=prometheus HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _wants_prometheus(b"GET /metrics?a=1&format=prometheus HTTP/1.0\r\n\r\n")
    assert not _wants_prometheus(b"GET / HTTP/1.1\r\n\r\n")
    assert not _wants_prometheus(b"GET /format=prometheus HTTP/1.1\r\n\r\n")
    assert not _wants_prometheus(b"")


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_datagrams(tmp_path: Path, abstract: bool) -> None:
    name = f"@uzerg-test-notify-{os.getpid()}" if abstract else str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name[1:] if abstract else name)
    with receiver:
        notifier = Notifier(name)
        notifier.ready("uzerg is ready: 2 workers accepting")
        notifier.reloading()
        notifier.stopping()
        notifier.close()
        assert receiver.recv(4096) == b"READY=1\nSTATUS=uzerg is ready: 2 workers accepting\n"
        assert receiver.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=stopping\n"


def test_notifier_without_socket_or_listener_never_fails(tmp_path: Path) -> None:
    Notifier(None).ready("x")
    Notifier(str(tmp_path / "nobody")).ready("x")  # logged once, no exception


def test_listen_fds_for_another_pid_are_ignored_and_removed() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    # the instance loads uzerg.systemd only when one of these is set
    assert set(environ) == set(LISTEN_VARIABLES)
    assert not take_activated_sockets(environ)
    assert environ == {}
    with pytest.raises(ActivationError, match="LISTEN_FDS: not a number"):
        take_activated_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"})


def test_fd_references() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        plain = socket.socket()
        with plain:
            none = ActivatedSockets([])
            with pytest.raises(ActivationError, match="not a listening stream socket"):
                none.claim_reference(f"fd://{plain.fileno()}")
            with pytest.raises(ActivationError, match="no socket named 'web'"):
                none.claim_reference("fd://web")
            with pytest.raises(ActivationError, match="missing descriptor"):
                none.claim_reference("fd://")
            adopted = none.claim_reference(f"fd://{listener.fileno()}")
            assert adopted.fileno() == listener.fileno()
            assert not os.get_inheritable(adopted.fileno())
            adopted.detach()


def test_takeover_files(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "app.pid")
    assert takeover.read_pid(pidfile) is None
    takeover.write_pid_atomically(pidfile, 1234)
    assert takeover.read_pid(pidfile) == 1234
    Path(pidfile).write_text("garbage\n")
    assert takeover.read_pid(pidfile) is None
    assert takeover.previous_path(pidfile) == pidfile + ".previous"
    with pytest.raises(takeover.TakeoverError, match="no previous instance recorded"):
        takeover.rollback(pidfile)
    # our own pid in the pidfile: a re-executed master that took over already, nothing to do
    takeover.write_pid_atomically(pidfile, os.getpid())
    takeover.take_over(pidfile, stop=False)
    assert takeover.read_pid(pidfile) == os.getpid()
    assert not os.path.exists(takeover.previous_path(pidfile))


def test_the_new_options_in_ini_and_on_the_command_line(tmp_path: Path) -> None:
    from uzerg.config.load import load_config

    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\ntakeover = /run/app.pid\ntakeover-stop = true\nzerg-wait = 30\n"
                   "stats-prometheus = 127.0.0.1:9191\n")
    config = load_config([str(ini)], {})
    assert (config.takeover, config.takeover_stop, config.zerg_wait, config.stats_prometheus) \
        == ("/run/app.pid", True, 30, "127.0.0.1:9191")
    config = load_config(["--rollback", "/run/app.pid", "--zerg-probe", "/a", "--zerg-probe",
                          "@b", "--json", "--zerg-status", "127.0.0.1:1717"], {})
    assert config.rollback == "/run/app.pid" and config.zerg_probe == ("/a", "@b")
    assert config.json and config.zerg_status == "127.0.0.1:1717"


class _Master:
    """What LifecycleService reads of the master (MasterView), driven by the test."""

    def __init__(self, scoreboard: Scoreboard, desired: int) -> None:
        self.scoreboard = scoreboard
        self.listeners: list[object] = [object()]
        self.desired = desired
        self.stopping = False
        self.records: list[SimpleNamespace] = []

    @property
    def wanted(self) -> int:
        return self.desired

    def worker_records(self) -> list[SimpleNamespace]:
        return self.records

    def cheap_records(self) -> list[SimpleNamespace]:
        return []

    def fifo_command(self, char: str) -> None:
        pass


def test_lifecycle_waits_for_every_worker_then_notifies(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(0.01)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    board = Scoreboard(4, 1)
    master = _Master(board, desired=2)
    service = LifecycleService(make_config())

    def received() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(receiver.recv(4096))
            except TimeoutError:
                return out

    try:
        service.start(master)  # type: ignore[arg-type]
        assert service.wake_at() is not None  # polls until ready
        master.records = [SimpleNamespace(worker_id=1), SimpleNamespace(worker_id=2)]
        board.worker(1).ready = 1
        service.tick()
        assert received() == []  # worker 2 is forked but not ready yet
        board.worker(2).ready = 1
        service.tick()
        assert received() == [b"READY=1\nSTATUS=uzerg is ready: 2 workers accepting\n"]
        assert service.wake_at() is None
        master.desired = 3
        service.tick()
        assert received() == [b"STATUS=uzerg is ready: 3 workers accepting\n"]
        service.handover()  # a reload: RELOADING=1; the exec then fails, we are still here
        service.tick()
        messages = received()
        assert messages[0].startswith(b"RELOADING=1\n") and messages[1].startswith(b"READY=1\n")
        master.stopping = True
        service.tick()
        service.tick()
        assert received() == [b"STOPPING=1\nSTATUS=stopping\n"]
    finally:
        service.shutdown(False)
        receiver.close()
        board.close()
