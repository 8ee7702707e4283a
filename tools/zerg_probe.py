"""Attach to a zerg server (uzerg or uWSGI) or zergpool and print what it hands out.

    python tools/zerg_probe.py /run/app/zerg.sock [@other ...] [--timeout 5] [--json]

Prints one line per socket (index, family, address, protocol hint, server) and exits 0; on a
failed handshake prints uWSGI's error line and the detail, and exits 1. The received sockets are
closed at once: probing never serves traffic.
"""

from __future__ import annotations

import argparse
import json
import sys

from uzerg.addresses import describe_socket
from uzerg.zerg.handshake import HandshakeError, fetch_sockets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addresses", nargs="+", metavar="ADDR", help="unix path or @name")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per server")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    report: list[dict[str, object]] = []
    status = 0
    for address in args.addresses:
        try:
            received = fetch_sockets(address, args.timeout)
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
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for entry in report:
            _print_text(entry)
    return status


def _print_text(entry: dict[str, object]) -> None:
    if "error" in entry:
        print(f"{entry['server']}: {entry['error']} ({entry['detail']})", file=sys.stderr)
        return
    sockets = entry["sockets"]
    assert isinstance(sockets, list)
    hint = "with protocol hint" if entry["hint"] else "no protocol hint"
    print(f"{entry['server']}: {len(sockets)} sockets in {entry['messages']} message(s), {hint}")
    for item in sockets:
        protocol = item["protocol"] or "-"
        print(f"  {item['index']:>3}  {item['family']:<5}  {item['address']}  protocol={protocol}")


if __name__ == "__main__":
    sys.exit(main())
