"""The stats document as Prometheus text (exposition format 0.0.4).

Metric names and labels are those of the widely used uWSGI exporter (timonwong/uwsgi_exporter:
``uwsgi_listen_queue_length``, ``uwsgi_worker_requests_total{worker_id}``,
``uwsgi_socket_queue_length{name,proto}``, ...), so its dashboards and alerts work unchanged
against uzerg without an exporter process. uzerg's own figures (zerg servers and pools, the
zergs attached to them, pause) are ``uzerg_*``.
"""

from __future__ import annotations

from collections.abc import Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
US = 1_000_000.0  # the stats document's times are in microseconds

Sample = tuple[dict[str, str], float]

# (metric, type, help, document key, divisor) per worker, as the uWSGI exporter names them
_WORKER_GAUGES = (
    ("accepting", "Is this worker accepting requests?", "accepting", 1.0),
    ("delta_requests", "Number of delta requests", "delta_requests", 1.0),
    ("signal_queue_length", "Length of signal queue.", "signal_queue", 1.0),
    ("rss_bytes", "Worker RSS bytes.", "rss", 1.0),
    ("vsz_bytes", "Worker VSZ bytes.", "vsz", 1.0),
    ("running_time_seconds", "Worker running time in seconds.", "running_time", US),
    ("last_spawn_time_seconds", "Last spawn time in seconds since epoch.", "last_spawn", 1.0),
    ("average_response_time_seconds", "Average response time in seconds.", "avg_rt", US),
)
_WORKER_COUNTERS = (
    ("requests_total", "Total number of requests.", "requests"),
    ("exceptions_total", "Total number of exceptions.", "exceptions"),
    ("harakiri_count_total", "Total number of harakiri count.", "harakiri_count"),
    ("signals_total", "Total number of signals.", "signals"),
    ("respawn_count_total", "Total number of respawn count.", "respawn_count"),
    ("transmitted_bytes_total", "Worker transmitted bytes.", "tx"),
)
_WORKER_STATUSES = ("busy", "idle", "cheap")
_SOCKET_GAUGES = (
    ("queue_length", "Length of socket queue.", "queue"),
    ("max_queue_length", "Max length of socket queue.", "max_queue"),
    ("shared", "Is shared socket?", "shared"),
    ("can_offload", "Can socket offload?", "can_offload"),
)


def render(document: dict[str, Any]) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        rows = list(samples)
        if not rows:
            return
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            lines.append(f"{name}{_labels(labels)} {_number(value)}")

    workers = [w for w in document.get("workers", ()) if w.get("id")]
    family("uwsgi_up", "gauge", "Whether the uWSGI server is up.", [({}, 1)])
    family("uwsgi_listen_queue_length", "gauge", "Length of listen queue.",
           [({}, document.get("listen_queue", 0))])
    family("uwsgi_listen_queue_errors", "gauge", "Number of listen queue errors.",
           [({}, document.get("listen_queue_errors", 0))])
    family("uwsgi_signal_queue_length", "gauge", "Length of signal queue.",
           [({}, document.get("signal_queue", 0))])
    family("uwsgi_workers", "gauge", "Number of workers.", [({}, len(workers))])

    sockets = _unique_sockets(document.get("sockets", ()))
    for metric, help_text, key in _SOCKET_GAUGES:
        family(f"uwsgi_socket_{metric}", "gauge", help_text,
               [({"name": s["name"], "proto": s["proto"]}, s.get(key, 0)) for s in sockets])

    def per_worker(key: str, divisor: float = 1.0) -> list[Sample]:
        return [({"worker_id": str(w["id"])}, float(w.get(key, 0)) / divisor) for w in workers]

    for metric, help_text, key, divisor in _WORKER_GAUGES:
        family(f"uwsgi_worker_{metric}", "gauge", help_text, per_worker(key, divisor))
    for status in _WORKER_STATUSES:
        family(f"uwsgi_worker_{status}", "gauge", f"Is core in {status}",
               [({"worker_id": str(w["id"])}, 1 if w.get("status") == status else 0)
                for w in workers])
    for metric, help_text, key in _WORKER_COUNTERS:
        family(f"uwsgi_worker_{metric}", "counter", help_text, per_worker(key))
    family("uwsgi_worker_apps", "gauge", "Number of apps.",
           [({"worker_id": str(w["id"])}, len(w.get("apps", ()))) for w in workers])
    family("uwsgi_worker_cores", "gauge", "Number of cores.",
           [({"worker_id": str(w["id"])}, len(w.get("cores", ()))) for w in workers])

    running = [w for w in workers if w.get("status") != "cheap"]  # cheaper mode's empty slots
    family("uzerg_paused", "gauge", "Whether the instance is paused (SIGTSTP, takeover).",
           [({}, 1 if running and all(w.get("status") == "pause" for w in running) else 0)])
    _zerg_families(family, document.get("zerg", ()))
    return "\n".join(lines) + "\n"


def _zerg_families(family: Any, servers: Iterable[dict[str, Any]]) -> None:
    servers = list(servers)

    def per_server(value: Any) -> list[Sample]:
        return [({"address": str(s["address"]), "kind": str(s["kind"])}, value(s))
                for s in servers]

    family("uzerg_zerg_server_sockets", "gauge",
           "Sockets a zerg server or zergpool hands out.", per_server(lambda s: s["sockets"]))
    family("uzerg_zerg_attached_zergs", "gauge",
           "Zergs attached to a zerg server or zergpool that still hold its sockets.",
           per_server(lambda s: len(s.get("zergs", ()))))
    family("uzerg_zerg_attaches_total", "counter", "Zerg handshakes served.",
           per_server(lambda s: s["attached"]))
    family("uzerg_zerg_refused_total", "counter", "Zergs refused (credentials).",
           per_server(lambda s: s["refused"]))
    family("uzerg_zerg_dropped_total", "counter", "Zerg peers dropped (errors).",
           per_server(lambda s: s["dropped"]))


def _unique_sockets(sockets: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One per (name, proto): a duplicate label set is invalid exposition."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for item in sockets:
        seen.setdefault((str(item["name"]), str(item["proto"])), item)
    return list(seen.values())


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    if not value.isascii():  # valid UTF-8 only: a path's undecodable bytes (\udcff) as \xff
        try:
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)
