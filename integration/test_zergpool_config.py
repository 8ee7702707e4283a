"""Zergpool configuration (SPEC §5): entries from INI (repeated, alias included) and the
command line, one listener per entry handing out exactly its own sockets, pool-only instances
without workers, errors that name the entry, IPv6 pool sockets served by a zerg."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.clients import uwsgi_request
from support.processes import Instance, InstanceStarter

from uzerg.protocols.uwsgi import encode_uwsgi_packet
from uzerg.zerg import fetch_sockets

BOUND = re.compile(r"zergpool (\S+) bound to (TCP|UNIX) socket (\S+) \(fd: \d+\)")


def pool_bindings(pool: Instance) -> list[tuple[str, str]]:
    """(pool address, socket) of every bind line, in order."""
    return [(m.group(1), m.group(3)) for m in BOUND.finditer(pool.log_text())]


def handed_out(pool_address: str) -> list[str]:
    """What the pool hands to a zerg, as addresses (one handshake from this process)."""
    received = fetch_sockets(pool_address, timeout=5)
    try:
        names = []
        for sock in received.sockets:
            name = sock.getsockname()
            names.append(name if isinstance(name, str) else f"{name[0]}:{name[1]}")
        return names
    finally:
        for sock in received.sockets:
            sock.close()


def run_uzerg(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A uzerg that is expected to exit by itself (an error at start-up)."""
    return subprocess.run([sys.executable, "-m", "uzerg", *args], capture_output=True,
                          text=True, timeout=30, cwd=cwd, stdin=subprocess.DEVNULL)


def test_ini_and_command_line_entries_each_hand_out_their_own_sockets(
    uzerg: InstanceStarter, tmp_path: Path
) -> None:
    a, b, c, d = (str(tmp_path / f"{name}.pool") for name in "abcd")
    shared = str(tmp_path / "shared.sock")
    (tmp_path / "pools.ini").write_text(
        "[uwsgi]\n"
        f"zergpool = {a}:127.0.0.1:0,127.0.0.1:0\n"  # two port-0 listings: two sockets
        f"zerg-pool = {b}:{shared}, 127.0.0.1:0\n"  # alias, whitespace trimmed
        f"zergpool = {c}:{shared}\n"  # listed again: the same socket, bound once
    )
    pool = uzerg.start(["--ini", "pools.ini", "--zergpool", f"{d}:127.0.0.1:0"],
                       wait_workers=None)
    pool.wait_for_log(f"*** Zerg server enabled on {d} ***")
    bindings = pool_bindings(pool)
    assert [where for where, _ in bindings] == [a, a, b, b, d], bindings
    ports = [sock for _, sock in bindings]
    assert len(set(ports)) == 5
    assert pool.log_text().count("*** Zerg server enabled on ") == 4  # one listener per entry
    assert handed_out(a) == ports[0:2]
    assert handed_out(b) == [shared, ports[3]]
    assert handed_out(c) == [shared]
    assert handed_out(d) == [ports[4]]


@pytest.mark.parametrize("master", [["--master"], []], ids=["master", "no-master"])
def test_pool_only_instance_runs_no_workers(
    uzerg: InstanceStarter, tmp_path: Path, master: list[str]
) -> None:
    pool_address = str(tmp_path / "p.pool")
    pool = uzerg.start([*master, "--processes", "4", "--zergpool", f"{pool_address}:127.0.0.1:0"],
                       wait_workers=None)
    pool.wait_for_log("spawned uWSGI master process")
    assert pool.worker_pids() == []
    assert len(handed_out(pool_address)) == 1
    assert pool.worker_pids() == []
    assert "spawned uWSGI worker" not in pool.log_text()


def test_syntax_errors_name_the_file_line_and_entry(tmp_path: Path) -> None:
    (tmp_path / "site.ini").write_text(
        "[uwsgi]\nmaster = true\nzergpool = /tmp/ok:127.0.0.1:0\nzergpool = /tmp/zergpool_x\n"
    )
    result = run_uzerg(["--ini", "site.ini"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "uzerg: site.ini:4: zergpool: invalid zergpool syntax: /tmp/zergpool_x"
    )
    result = run_uzerg(["--zergpool", "/tmp/nocolon"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "uzerg: command line: --zergpool: invalid zergpool syntax: /tmp/nocolon"
    )


def test_a_bad_socket_in_a_long_list_names_its_entry(tmp_path: Path) -> None:
    items = ",".join(f"127.0.0.1:{3000 + i}" for i in range(20)) + ",127.0.0.1:99999"
    (tmp_path / "site.ini").write_text(f"[uwsgi]\nzergpool = /tmp/ok:1.sock\n"
                                       f"zergpool = /tmp/big.pool:{items}\n")
    result = run_uzerg(["--ini", "site.ini"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "uzerg: site.ini:3: zergpool: port out of range in socket address: '127.0.0.1:99999' "
        f"in zergpool /tmp/big.pool:{items}"
    )


def test_bind_error_names_entry_and_address_and_serves_nothing(tmp_path: Path) -> None:
    holder = socket.socket()  # a live listener without SO_REUSEPORT (another program)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        first, second = str(tmp_path / "first.pool"), str(tmp_path / "second.pool")
        entry = f"{second}:127.0.0.1:0,127.0.0.1:{port}"
        result = run_uzerg(["--master", "--zergpool", f"{first}:127.0.0.1:0",
                            "--zergpool", entry], tmp_path)
    finally:
        holder.close()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = next(ln for ln in output.splitlines() if "cannot bind" in ln)
    assert line.startswith(f"zergpool {entry}: cannot bind 127.0.0.1:{port}: "
                           "Address already in use"), line
    assert "stop them first" in line
    assert "spawned uWSGI master process" not in output
    assert not Path(first).exists() and not Path(second).exists()  # nothing left to attach to
    assert "Traceback" not in output

    missing = f"{tmp_path / 'third.pool'}:{tmp_path / 'no' / 'such' / 'dir.sock'}"
    result = run_uzerg(["--zergpool", missing], tmp_path)
    assert result.returncode == 1
    assert f"zergpool {missing}: cannot bind " in result.stdout + result.stderr


def test_ipv6_pool_sockets_are_served_by_a_zerg(
    uzerg: InstanceStarter, tmp_path: Path, app_file: Path
) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    pool_address = str(tmp_path / "v6.pool")
    pool = uzerg.start(["--zergpool", f"{pool_address}:[::1]:0,127.0.0.1:0"], wait_workers=None)
    pool.wait_for_log(f"*** Zerg server enabled on {pool_address} ***")
    v6, v4 = [sock for _, sock in pool_bindings(pool)]
    assert v6.startswith("[::1]:")
    zerg = uzerg.start(["--zerg", pool_address, "--wsgi-file", str(app_file),
                        "--processes", "2"], wait_workers=2)
    zerg.wait_for_log(f"uwsgi zerg socket 0 attached to INET6 address {v6}")
    workers = set(zerg.worker_pids())
    port = int(v6.rpartition(":")[2])
    with socket.create_connection(("::1", port), timeout=10) as sock:
        sock.sendall(encode_uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/",
                                          "SERVER_PROTOCOL": "HTTP/1.1"}, b""))
        response = b""
        while piece := sock.recv(65536):
            response += piece
    assert response.startswith(b"HTTP/1.1 200"), response
    assert int(response.split()[-1]) in workers
    response = uwsgi_request(v4, "/")
    assert int(response.split()[-1]) in workers
