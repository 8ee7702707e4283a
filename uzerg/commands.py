"""Commands for the person on call: ``--rollback``, ``--zerg-probe``, ``--zerg-status``.

Each returns an exit status and writes its result on stdout, errors as one line on stderr
(``uzerg: ...``).
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Sequence

from uzerg.addresses import AddressError, describe_socket, parse_address
from uzerg.processes.takeover import TakeoverError, rollback
from uzerg.zerg.handshake import HandshakeError, fetch_sockets

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATS_TIMEOUT = 5.0
RAW_STATS_WAIT = 0.3  # a raw stats server talks first; an HTTP one waits for our request

Err = Callable[[str], None]


def run_rollback(pidfile: str, err: Err) -> int:
    try:
        resumed, stopped = rollback(pidfile)
    except TakeoverError as exc:
        err(f"--rollback: {exc}")
        return 1
    print(f"rolled back: pid {resumed} resumed and written to {pidfile}; "
          f"pid {stopped} is stopping gracefully")
    return 0


# -- zerg-probe -------------------------------------------------------------------------------

def zerg_probe(addresses: Sequence[str], timeout: float, as_json: bool, err: Err) -> int:
    """Attach to each zerg server or pool, list what it hands out, close it all at once:
    probing never serves traffic. Exit status 1 if any server failed."""
    report: list[dict[str, Any]] = []
    status = 0
    for address in addresses:
        try:
            received = fetch_sockets(address, timeout)
        except HandshakeError as exc:
            status = 1
            report.append({"server": address, "error": str(exc), "detail": exc.detail})
            continue
        protocols = received.protocols or [None] * len(received.sockets)
        sockets = []
        for index, (sock, protocol) in enumerate(zip(received.sockets, protocols, strict=True)):
            family, where = describe_socket(sock)
            sockets.append(
                {"index": index, "family": family, "address": where, "protocol": protocol}
            )
            sock.close()
        hint = received.protocols is not None
        report.append(
            {"server": address, "messages": received.messages, "hint": hint, "sockets": sockets}
        )
    if as_json:
        print(json.dumps(report, indent=2))
    for entry in report:
        if "error" in entry:
            err(f"{entry['server']}: {entry['error']} ({entry['detail']})")
        elif not as_json:
            _print_probe(entry)
    return status


def _print_probe(entry: dict[str, Any]) -> None:
    sockets = entry["sockets"]
    hint = "with protocol hint" if entry["hint"] else "no protocol hint"
    print(f"{entry['server']}: {len(sockets)} sockets in {entry['messages']} message(s), {hint}")
    for item in sockets:
        protocol = item["protocol"] or "-"
        print(f"  {item['index']:>3}  {item['family']:<5}  {item['address']}  protocol={protocol}")


# -- zerg-status ------------------------------------------------------------------------------

def zerg_status(stats_address: str, as_json: bool, err: Err) -> int:
    """The zergs attached to the zerg server and pools of the instance whose stats server
    (``stats``, raw or ``stats-http``) is at ``stats_address``."""
    try:
        document = read_stats(stats_address)
    except (OSError, ValueError, AddressError) as exc:
        err(f"--zerg-status: cannot read the stats server at {stats_address}: {exc}")
        return 1
    servers = document.get("zerg")
    if not isinstance(servers, list):
        err(f"--zerg-status: the instance at {stats_address} (pid {document.get('pid')}) has "
            "no zerg server or zergpool")
        return 1
    if as_json:
        print(json.dumps(servers, indent=2))
        return 0
    now = time.time()
    for server in servers:
        zergs = server.get("zergs", [])
        print(f"{server.get('kind')} {server.get('address')}: {server.get('sockets')} sockets, "
              f"{len(zergs)} zergs attached ({server.get('attached')} attaches, "
              f"{server.get('refused')} refused)")
        for zerg in zergs:
            since = float(zerg["since"])
            held = zerg["sockets"]
            shown = "unknown" if held is None else ",".join(str(i) for i in held)
            print(f"  pid {zerg['pid']:<8} uid {zerg['uid']:<6} since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))} "
                  f"({_ago(now - since)} ago)  sockets {shown}")
    return 0


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def read_stats(address_text: str, timeout: float = STATS_TIMEOUT) -> dict[str, Any]:
    """The stats document of a raw (``stats``) or HTTP (``stats-http``) stats server."""
    address = parse_address(address_text)
    with socket.socket(address.family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address.sockaddr())
        readable, _, _ = select.select([sock], [], [], RAW_STATS_WAIT)
        if not readable:  # an HTTP stats server waits for a request
            sock.sendall(b"GET / HTTP/1.0\r\nHost: uzerg\r\n\r\n")
        chunks = []
        while piece := sock.recv(65536):
            chunks.append(piece)
    data = b"".join(chunks)
    if data.startswith(b"uwsgi-zerg"):
        raise ValueError("that is a zerg server or zergpool, not a stats server: give the "
                         "address of the `stats` option of the instance that runs it")
    if data.startswith(b"HTTP/"):
        data = data.partition(b"\r\n\r\n")[2]
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError("not a stats document")
    return document

