"""Going past one machine: configs/nginx-multihost.conf, unchanged, in front of two uzerg
"hosts". Each host is a network namespace (192.168.173.22, 192.168.173.23) running a zergpool
and a zerg; nginx runs in a third namespace joined to both by a bridge and veth links the test
creates. Traffic reaches both hosts, and survives the loss of one (pool and zergs killed).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.netns import Namespace, Namespaces, require_namespaces, start_client_loop
from support.peers import (
    NGINX,
    STOCK_UWSGI_PARAMS,
    SYSTEM_UWSGI_PARAMS,
    Nginx,
    nginx_available,
    stop_nginx,
)
from support.processes import Instance, InstanceStarter, wait_until

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "configs" / "nginx-multihost.conf"
HOSTS = {"host1": "192.168.173.22", "host2": "192.168.173.23"}
MAIN_CONF = """\
worker_processes 1;
pid /tmp/nginx/nginx.pid;
error_log /tmp/nginx/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log /tmp/nginx/access.log;
    client_body_temp_path /tmp/nginx/temp/body;
    proxy_temp_path /tmp/nginx/temp/proxy;
    fastcgi_temp_path /tmp/nginx/temp/fastcgi;
    uwsgi_temp_path /tmp/nginx/temp/uwsgi;
    scgi_temp_path /tmp/nginx/temp/scgi;
    include {site};
}}
"""
MYAPP = '''
import os

def application(environ, start_response):
    body = ("pid %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, Namespace]]:
    """Namespaces lb (192.168.173.1 on a bridge), host1 and host2 linked to it."""
    require_namespaces()
    if not nginx_available():
        pytest.skip(f"{NGINX} not installed")
    namespaces = Namespaces(tmp_path)
    try:
        lb = namespaces.create("lb")
        hosts = {name: namespaces.create(name) for name in HOSTS}
        namespaces.bridge(lb, "192.168.173.1/24",
                          [(hosts[name], f"{address}/24") for name, address in HOSTS.items()])
        yield {"lb": lb, **hosts}
    finally:
        namespaces.cleanup()


def start_host(uzerg: InstanceStarter, host: Namespace, address: str) -> tuple[Instance, Instance]:
    (host.root / "myapp.wsgi").write_text(MYAPP)
    pool = uzerg.start(["--master", "--zergpool",
                        f"/tmp/zergpool_1:{address}:3031,{address}:3032"],
                       wait_workers=None, prefix=host.prefix())
    pool.wait_for_log("*** Zerg server enabled on /tmp/zergpool_1 ***")
    zerg = uzerg.start("--zerg /tmp/zergpool_1 --wsgi-file myapp.wsgi --master --processes 2"
                       .split(), wait_workers=2, prefix=host.prefix())
    return pool, zerg


def start_nginx(lb: Namespace) -> Nginx:
    prefix = lb.root / "nginx"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    params = SYSTEM_UWSGI_PARAMS.read_text() if SYSTEM_UWSGI_PARAMS.exists() else STOCK_UWSGI_PARAMS
    (prefix / "uwsgi_params").write_text(params)  # the site's `include uwsgi_params`
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(site=SITE))
    stderr = open(prefix / "stderr.log", "wb")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            [*lb.prefix(), NGINX, "-p", "/tmp/nginx/", "-c", "/tmp/nginx/nginx.conf",
             "-e", "/tmp/nginx/error.log", "-g", "daemon off; master_process on;"],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True)
    finally:
        stderr.close()
    server = Nginx(process, prefix, 80)

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}: "
                                 + (prefix / "stderr.log").read_text() + server.error_log_text())
        return (prefix / "nginx.pid").exists() and "start worker process" in \
            server.error_log_text()
    try:
        wait_until(started, 15, "nginx started")
    except BaseException:
        stop_nginx(server)
        raise
    return server


def kill_instance(instance: Instance) -> None:
    """SIGKILL a master and all its workers, by pid (a host losing power, as far as it goes)."""
    try:
        family = [instance.pid] + [c.pid for c in psutil.Process(instance.pid).children(True)]
    except psutil.Error:
        family = [instance.pid]
    for pid in family:
        try:
            psutil.Process(pid).send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    instance.wait_exit(10)


def test_nginx_spreads_over_two_hosts_and_survives_losing_one(
    uzerg: InstanceStarter, network: dict[str, Namespace], tmp_path: Path
) -> None:
    lb = network["lb"]
    workers = {}
    instances = {}
    for name, address in HOSTS.items():
        pool, zerg = start_host(uzerg, network[name], address)
        instances[name] = (pool, zerg)
        workers[name] = set(zerg.worker_pids())
    nginx = start_nginx(lb)
    loop = None
    try:
        results = lb.requests(["127.0.0.1:80"], protocol="http", count=24, concurrency=4)
        assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
        answered = {int(str(r["body"]).split()[-1]) for r in results}
        assert answered & workers["host1"] and answered & workers["host2"], answered
        assert answered <= workers["host1"] | workers["host2"]

        # a client keeps asking through the loss of host2 (its pool, then its zerg)
        loop = start_client_loop(["127.0.0.1:80"], lb.host_path("/tmp/stop-loop"),
                                 protocol="http", namespace=lb, inside_until="/tmp/stop-loop")
        access_log = nginx.prefix / "access.log"
        wait_until(lambda: access_log.exists() and access_log.read_text().count("\n") > 30,
                   15, "the loop's first requests")
        for instance in instances["host2"]:
            kill_instance(instance)
        size = access_log.read_text().count("\n")
        wait_until(lambda: access_log.read_text().count("\n") > size + 30, 20,
                   "30 more requests after losing host2")
        summary = loop.stop()
        loop = None
        assert summary["failures"] == [], summary["failures"][:3]

        after = lb.requests(["127.0.0.1:80"], protocol="http", count=24, concurrency=4)
        assert all(r["ok"] for r in after), [r for r in after if not r["ok"]][:3]
        assert {int(str(r["body"]).split()[-1]) for r in after} <= workers["host1"]
        # nginx did meet the dead host (refused, or reset for a request caught in its queue)
        failed = [line for line in nginx.error_log_text().splitlines()
                  if "[error]" in line and "192.168.173.23" in line]
        assert failed, nginx.error_log_text()[-2000:]
    finally:
        if loop is not None:
            loop.kill()
        stop_nginx(nginx)
