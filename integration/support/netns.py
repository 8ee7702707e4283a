"""Network namespaces for the integration tests: run the documentation's configs unchanged,
fixed addresses (192.168.173.22), fixed ports and fixed /tmp paths included, without any traffic
leaving the machine and without touching the host's network or /tmp.

A ``Namespace`` is a new network + mount namespace held open by a ``sleep`` process
(``unshare --net --mount``): its loopback is up, it may get extra addresses on ``lo`` or on veth
links to other namespaces, and its ``/tmp`` is a private directory of the test (bind-mounted, so
``/tmp/zergpool_1`` of one namespace is ``ROOT/zergpool_1`` on the host and never collides with
a real ``/tmp/zergpool_1``; the host's /tmp entries the test needs, such as a checkout or a
virtualenv under /tmp, are linked in). Commands run inside with ``ns.prefix()`` (``nsenter``,
which execs them in place: the pid seen by the test is the command's own, so the harness
tracks and kills it). ``Namespaces.cleanup()`` kills every holder by pid; a namespace
disappears with its last process.

Run as a script inside a namespace, this module is the test client (uwsgi or HTTP requests,
concurrent or in a loop), so the clients of a namespaced test run in the namespace too::

    python support/netns.py requests --protocol uwsgi --count 8 --path /slow ADDR [ADDR...]
    python support/netns.py loop --protocol http --until FILE ADDR [ADDR...]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
IP = shutil.which("ip") or "/usr/sbin/ip"
CLIENT = Path(__file__).resolve()
_probe: list[str | None] = []  # cached answer of unavailable_reason()


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be created here (None when they can)."""
    if _probe:
        return _probe[0]
    reason: str | None = None
    missing = [tool for tool in (UNSHARE, NSENTER, IP) if not os.access(tool, os.X_OK)]
    if missing:
        reason = f"missing {', '.join(missing)} (util-linux, iproute2)"
    else:
        try:
            result = subprocess.run(
                [UNSHARE, "--net", "--mount", "--", IP, "link", "set", "lo", "up"],
                capture_output=True, timeout=10, stdin=subprocess.DEVNULL,
            )
            if result.returncode != 0:
                reason = ("`unshare --net --mount` failed (needs root or CAP_SYS_ADMIN): "
                          + result.stderr.decode(errors="replace").strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"`unshare --net --mount` failed: {exc}"
    _probe.append(reason)
    return reason


def require_namespaces() -> None:
    """Skip the test when namespaces are unavailable; fail instead where they must work (CI, or
    UZERG_REQUIRE_NETNS=1): the documentation's configs must be exercised there."""
    import pytest

    reason = unavailable_reason()
    if reason is None:
        return
    message = f"network namespaces unavailable: {reason}"
    if os.environ.get("UZERG_REQUIRE_NETNS") or os.environ.get("CI"):
        pytest.fail(message + " (required under CI / UZERG_REQUIRE_NETNS)")
    pytest.skip(message)


class Namespace:
    """One network + mount namespace with a private /tmp (``root`` on the host)."""

    def __init__(self, name: str, holder: subprocess.Popen[bytes], root: Path) -> None:
        self.name = name
        self.holder = holder
        self.root = root

    @property
    def pid(self) -> int:
        return self.holder.pid

    def prefix(self, workdir: str = "/tmp") -> list[str]:
        """The command prefix that runs a program inside (same pid, cwd ``workdir`` there)."""
        return [NSENTER, f"--target={self.pid}", "--net", "--mount", f"--wdns={workdir}", "--"]

    def host_path(self, inside: str) -> Path:
        """Where a path under the namespace's /tmp is on the host."""
        relative = Path(inside).relative_to("/tmp")
        return self.root / relative

    def run(self, argv: Sequence[str], timeout: float = 30,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside to completion (killed if it overruns)."""
        result = subprocess.run([*self.prefix(), *argv], capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"in namespace {self.name}: {' '.join(argv)} exited with "
                                 f"{result.returncode}: {result.stderr.strip()}")
        return result

    def ip(self, *args: str) -> None:
        self.run([IP, *args])

    def add_address(self, address: str, device: str = "lo") -> None:
        self.ip("addr", "add", address, "dev", device)

    def requests(self, addresses: Sequence[str], *, protocol: str = "uwsgi", path: str = "/",
                 count: int = 1, concurrency: int = 8, timeout: float = 60) -> list[dict[str, Any]]:
        """``count`` requests to each address, ``concurrency`` at a time, from a client process
        inside the namespace; one result dict per request (addr, ok, status, body, error)."""
        argv = [sys.executable, str(CLIENT), "requests", "--protocol", protocol, "--path", path,
                "--count", str(count), "--concurrency", str(concurrency), *addresses]
        result = self.run(argv, timeout=timeout)
        return list(json.loads(result.stdout))

    def close(self) -> None:
        if self.holder.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.holder.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.holder.wait(10)


class ClientLoop:
    """A background client inside a namespace (or on the host) requesting the addresses in
    turn until ``stop()``; ``stop()`` returns its summary (ok count, failures)."""

    def __init__(self, process: subprocess.Popen[str], until: Path) -> None:
        self.process = process
        self.until = until

    def stop(self, timeout: float = 30) -> dict[str, Any]:
        self.until.touch()
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"client loop did not stop within {timeout} s: {err}") from None
        if self.process.returncode != 0:
            raise AssertionError(f"client loop failed ({self.process.returncode}): {err}")
        return dict(json.loads(out))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_client_loop(addresses: Sequence[str], until: Path, *, protocol: str = "uwsgi",
                      path: str = "/", namespace: Namespace | None = None,
                      inside_until: str | None = None) -> ClientLoop:
    """Start a client loop (see ClientLoop); ``until`` is the host path of its stop file,
    ``inside_until`` the same file as seen inside ``namespace``."""
    argv = [sys.executable, str(CLIENT), "loop", "--protocol", protocol, "--path", path,
            "--until", inside_until or str(until), *addresses]
    if namespace is not None:
        argv = [*namespace.prefix(), *argv]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    return ClientLoop(process, until)


class Namespaces:
    """Creates namespaces for one test and removes them all (by holder pid) at cleanup."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.created: list[Namespace] = []
        self._links = itertools.count()

    def create(self, name: str, addresses: Sequence[str] = ()) -> Namespace:
        """A new namespace: loopback up, ``addresses`` (e.g. ``192.168.173.22/32``) on lo,
        /tmp private (``tmp_path/ns-NAME`` on the host, mode 1777 like a real /tmp)."""
        root = self.tmp_path / f"ns-{name}"
        root.mkdir()
        root.chmod(0o1777)
        holder = subprocess.Popen(
            [UNSHARE, "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        namespace = Namespace(name, holder, root)
        self.created.append(namespace)
        _wait_for_exec(holder, "sleep")
        # The host's /tmp stays reachable inside as /tmp/.host, and whatever the test's own
        # processes need from it (the checkout, the virtualenv, pytest's tmp_path: a CI clone
        # or a tox venv may live under /tmp) is linked back in by its top-level name.
        host_view = root / ".host"
        host_view.mkdir()
        for name in _host_tmp_entries_needed(self.tmp_path):
            (root / name).symlink_to(f"/tmp/.host/{name}")
        # nsenter without --wdns here: the namespace's /tmp is not mounted yet
        for mount in (["mount", "--bind", "/tmp", str(host_view)],
                      ["mount", "--rbind", str(root), "/tmp"]):
            subprocess.run([NSENTER, f"--target={holder.pid}", "--net", "--mount", "--",
                            *mount], check=True, timeout=30,
                           capture_output=True, stdin=subprocess.DEVNULL)
        namespace.ip("link", "set", "lo", "up")
        for address in addresses:
            namespace.add_address(address)
        return namespace

    def bridge(self, hub: Namespace, hub_address: str,
               members: Sequence[tuple[Namespace, str]]) -> None:
        """A bridge ``br0`` in ``hub`` (with ``hub_address``, e.g. ``192.168.173.1/24``) and a
        veth link from it to each member namespace, whose end ``eth0`` gets the address given."""
        hub.ip("link", "add", "br0", "type", "bridge")
        hub.add_address(hub_address, "br0")
        hub.ip("link", "set", "br0", "up")
        for member, address in members:
            port = f"veth{next(self._links)}"
            hub.ip("link", "add", port, "type", "veth", "peer", "name", "eth0",
                   "netns", str(member.pid))
            hub.ip("link", "set", port, "master", "br0", "up")
            member.add_address(address, "eth0")
            member.ip("link", "set", "eth0", "up")

    def cleanup(self) -> None:
        for namespace in self.created:
            namespace.close()


def _host_tmp_entries_needed(tmp_path: Path) -> set[str]:
    """Top-level names under the host's /tmp that processes run in a namespace need."""
    needed = {sys.prefix, sys.base_prefix, sys.executable, os.path.realpath(sys.executable),
              str(Path(__file__).resolve().parents[2]), str(tmp_path), os.getcwd()}
    names = set()
    for path in needed:
        parts = Path(os.path.abspath(path)).parts
        if len(parts) > 2 and parts[1] == "tmp":
            names.add(parts[2])
    return names


def _wait_for_exec(process: subprocess.Popen[bytes], command: str, timeout: float = 10) -> None:
    """Wait until ``process`` runs ``command``: unshare has created the namespaces by then."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AssertionError(f"unshare exited with {process.returncode}: {err.strip()}")
        try:
            if Path(f"/proc/{process.pid}/comm").read_text().strip() == command:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"unshare did not start {command} within {timeout} s")
        time.sleep(0.01)


# -- the client, run as a script (inside a namespace) --------------------------------------------

def _one_request(address: str, protocol: str, path: str) -> dict[str, Any]:
    from support.clients import http_get, uwsgi_request

    try:
        if protocol == "http":
            status, body = http_get(address, path, timeout=20)
        else:
            response = uwsgi_request(address, path, timeout=20)
            head, _, body = response.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return {"addr": address, "ok": status == 200, "status": status,
                "body": body.decode(errors="replace"), "error": ""}
    except (OSError, ValueError, IndexError) as exc:
        return {"addr": address, "ok": False, "status": 0, "body": "", "error": repr(exc)}


def _client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="support/netns.py")
    parser.add_argument("mode", choices=("requests", "loop"))
    parser.add_argument("--protocol", choices=("uwsgi", "http"), default="uwsgi")
    parser.add_argument("--path", default="/")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--until")
    parser.add_argument("addresses", nargs="+")
    args = parser.parse_args(argv)
    if args.mode == "requests":
        targets = [a for a in args.addresses for _ in range(args.count)]
        with ThreadPoolExecutor(max(1, args.concurrency)) as pool:
            results = list(pool.map(lambda a: _one_request(a, args.protocol, args.path),
                                    targets))
        print(json.dumps(results))
        return 0
    ok, failures, bodies = 0, [], []
    until = Path(args.until)
    for address in itertools.cycle(args.addresses):
        if until.exists():
            break
        result = _one_request(address, args.protocol, args.path)
        if result["ok"]:
            ok += 1
            bodies.append(result["body"])
        else:
            failures.append(result)
    print(json.dumps({"ok": ok, "failures": failures, "bodies": bodies}))
    return 0


if __name__ == "__main__":
    # run by path: make the ``support`` package importable, as pytest does for the tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(_client_main(sys.argv[1:]))
