"""Prometheus metrics (issue 12): ``stats-prometheus = ADDR`` and ``?format=prometheus`` on a
``stats-http`` server, parsed with prometheus_client's own text parser; the names are the uWSGI
exporter's (timonwong/uwsgi_exporter), the zerg figures ``uzerg_*``."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from support.clients import http_get
from support.processes import InstanceStarter, free_port, wait_until, write_version_app

parser = pytest.importorskip("prometheus_client.parser")


def _scrape(address: str, path: str) -> tuple[str, dict[str, dict[tuple[tuple[str, str], ...],
                                                                    float]]]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        content_type = response.getheader("Content-Type") or ""
        text = response.read().decode()
    finally:
        conn.close()
    values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return content_type, values


def test_metrics_of_workers_and_zergpools(uzerg: InstanceStarter, tmp_path: Path,
                                          app_file: Path) -> None:
    stats = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"
    inst = uzerg.start(["--wsgi-file", str(app_file), "--http-socket", "127.0.0.1:0",
                        "--master", "--processes", "2", "--stats", stats, "--stats-http",
                        "--stats-prometheus", metrics], wait_workers=2)
    inst.wait_for_log("*** Prometheus metrics enabled on")
    address = inst.address(0)
    for _ in range(5):
        assert http_get(address)[0] == 200
    assert http_get(address, "/crash")[0] == 500

    content_type, values = _scrape(metrics, "/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    assert values["uwsgi_workers"][()] == 2
    assert values["uwsgi_up"][()] == 1
    assert sum(values["uwsgi_worker_requests_total"].values()) == 6
    assert sum(values["uwsgi_worker_exceptions_total"].values()) == 1
    assert set(values["uwsgi_worker_requests_total"]) == {(("worker_id", "1"),),
                                                           (("worker_id", "2"),)}
    assert all(rss > 1_000_000 for rss in values["uwsgi_worker_rss_bytes"].values())
    assert values["uwsgi_listen_queue_length"][()] == 0
    [(labels, queue_max)] = values["uwsgi_socket_max_queue_length"].items()
    assert dict(labels) == {"name": address, "proto": "http"} and queue_max == 100
    assert values["uzerg_paused"][()] == 0
    # the same figures from the stats-http server when asked for them
    _, again = _scrape(stats, "/?format=prometheus")
    assert sum(again["uwsgi_worker_requests_total"].values()) == 6
    status, body = http_get(stats)  # and JSON otherwise, as before
    assert status == 200 and body.startswith(b"{")


def test_zergs_attached_per_pool(uzerg: InstanceStarter, tmp_path: Path) -> None:
    app = write_version_app(tmp_path / "app.py", "v1")
    metrics = f"127.0.0.1:{free_port()}"
    pools = [str(tmp_path / "a.sock"), str(tmp_path / "b.sock")]
    pool = uzerg.start(["--zergpool", f"{pools[0]}:127.0.0.1:{free_port()}",
                        "--zergpool", f"{pools[1]}:127.0.0.1:{free_port()},127.0.0.1:0",
                        "--stats-prometheus", metrics], wait_workers=None)
    pool.wait_for_log(f"*** Zerg server enabled on {pools[1]} ***")
    for _ in range(2):
        uzerg.start(["--zerg", pools[0], "--wsgi-file", str(app)])
    uzerg.start(["--zerg", pools[1], "--wsgi-file", str(app)])

    def attached() -> dict[tuple[tuple[str, str], ...], float]:
        return _scrape(metrics, "/metrics")[1]["uzerg_zerg_attached_zergs"]
    wait_until(lambda: sorted(attached().values()) == [1, 2], 10, "1 and 2 zergs attached")
    values = _scrape(metrics, "/metrics")[1]
    key = (("address", pools[1]), ("kind", "zergpool"))
    assert values["uzerg_zerg_server_sockets"][key] == 2
    assert values["uzerg_zerg_attaches_total"][key] == 1
    assert values["uwsgi_workers"][()] == 0  # a pool runs no workers
