"""Value parsers for what the master runs besides workers, and for TLS sockets: hooks,
``attach-daemon*``, ``cron*`` and ``https``. Each takes one written value and returns its
typed record, or raises ValueError with a one-line message (uWSGI's syntax, uWSGI's rules:
``atoi`` for numbers in keyval forms).
"""

from __future__ import annotations

import _signal  # the numbers only: loaded with the interpreter (signal wraps it in enums)
import re

from uzerg.record import record

# the hook actions uzerg runs (uzerg.processes.hook_actions.ACTIONS; a test checks they match)
HOOK_ACTIONS = frozenset(
    "cd chdir mkdir putenv chmod chown chown2 sticky exec safeexec create creat write writen "
    "append appendn writefifo spinningfifo unlink call callret callint callintret hostname "
    "wait_for_fs wait_for_file wait_for_dir wait_for_socket unix_signal exit print log".split()
)
UNSUPPORTED_HOOK_ACTIONS = {
    "mount": "mounting file systems is not provided by uzerg",
    "umount": "mounting file systems is not provided by uzerg",
    "alarm": "uzerg has no alarms",
    "rpc": "uzerg has no uWSGI RPC",
    "retryrpc": "uzerg has no uWSGI RPC",
}

# patterns as text: compiled by re (and cached) when an option first needs one, not at
# every start-up (issue 13)
_ATOI = r"\s*([+-]?\d+)"


def atoi(text: str) -> int:
    """C ``atoi``: the leading integer, 0 when there is none."""
    match = re.match(_ATOI, text)
    return int(match.group(1)) if match else 0


def parse_hook(value: str) -> str:
    """``action:args`` with an action uzerg runs (``!action``: private, not logged)."""
    action, colon, _args = value.partition(":")
    name = action.strip().removeprefix("!")
    if not colon:
        raise ValueError(f"invalid hook syntax, must be hook:args: {value}")
    if name in UNSUPPORTED_HOOK_ACTIONS:
        raise ValueError(f"hook action {name}: {UNSUPPORTED_HOOK_ACTIONS[name]}")
    if name not in HOOK_ACTIONS:
        raise ValueError(f"hook action not found: {name}")
    return value


def parse_hook_touch(value: str) -> str:
    """``hook-touch``: ``FILE action:args``."""
    path, space, hook = value.strip().partition(" ")
    if not space or not path:
        raise ValueError(f"invalid hook-touch syntax, must be: <file> <action>: {value}")
    parse_hook(hook.strip())
    return value.strip()


def parse_command(value: str) -> str:
    if not value.strip():
        raise ValueError("empty command")
    return value


def _kvlist(value: str, keys: frozenset[str], option: str) -> dict[str, str]:
    """uWSGI's ``key=val,key=val`` (uwsgi_kvlist_parse): an unknown key is an error."""
    pairs: dict[str, str] = {}
    for item in value.split(","):
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"invalid {option} keyval syntax: {value}")
        if key not in keys:
            raise ValueError(f"{option}: unknown key {key!r} (known: {', '.join(sorted(keys))})")
        pairs[key] = text
    return pairs


# -- daemons ---------------------------------------------------------------------------------


@record(frozen=True, slots=True)
class DaemonSpec:
    """One process the master keeps running (uWSGI's struct uwsgi_daemon)."""

    command: str
    pidfile: str | None = None  # smart daemon: alive while the pid in this file is
    daemonize: bool = False  # the master daemonizes it and writes the pidfile
    freq: int = 10  # pidfile checks before a smart daemon that did not daemonize is reported
    control: bool = False  # its death stops the instance
    stop_signal: int = _signal.SIGTERM
    reload_signal: int = 0
    touch: tuple[str, ...] = ()  # files whose touch sends it stop_signal (and respawns it)
    honour_stdin: bool = False
    uid: int = 0
    gid: int = 0
    chdir: str | None = None
    max_throttle: int = 0
    notify_pid: bool = False  # a smart daemon gets stop/reload signals too

    @property
    def smart(self) -> bool:
        return self.pidfile is not None


def parse_attach_daemon(value: str) -> DaemonSpec:
    return DaemonSpec(parse_command(value))


def parse_attach_control_daemon(value: str) -> DaemonSpec:
    return DaemonSpec(parse_command(value), control=True)


def _smart(value: str, daemonize: bool) -> DaemonSpec:
    pidfile, space, command = value.strip().partition(" ")
    if not space or not command.strip():
        raise ValueError(f"invalid smart-attach-daemon syntax (PIDFILE COMMAND): {value}")
    pidfile, comma, freq = pidfile.partition(",")
    return DaemonSpec(command.strip(), pidfile=pidfile, daemonize=daemonize,
                      freq=atoi(freq) if comma else 10)


def parse_smart_attach_daemon(value: str) -> DaemonSpec:
    return _smart(value, daemonize=False)


def parse_smart_attach_daemon2(value: str) -> DaemonSpec:
    return _smart(value, daemonize=True)


_DAEMON2_KEYS = frozenset(
    "command cmd exec freq pidfile control daemonize daemon touch stopsignal stop_signal "
    "reloadsignal reload_signal stdin uid gid ns_pid chdir max_throttle notifypid legion".split()
)


def parse_attach_daemon2(value: str) -> DaemonSpec:
    """The keyval form. ``ns_pid`` (a new pid namespace) and ``legion`` are refused."""
    pairs = _kvlist(value, _DAEMON2_KEYS, "attach-daemon2")
    for key, why in (("ns_pid", "pid namespaces are not provided by uzerg"),
                     ("legion", "uzerg has no legions")):
        if key in pairs:
            raise ValueError(f"attach-daemon2: {key}: {why}")
    command = pairs.get("command") or pairs.get("cmd") or pairs.get("exec")
    if not command:
        raise ValueError("attach-daemon2: you need to specify a 'command' key")

    def get(*keys: str) -> str | None:
        return next((pairs[k] for k in keys if k in pairs), None)

    stop = get("stopsignal", "stop_signal")
    reload = get("reloadsignal", "reload_signal")
    touch = get("touch")
    return DaemonSpec(
        command,
        pidfile=get("pidfile"),
        daemonize=get("daemonize", "daemon") is not None,
        freq=atoi(pairs["freq"]) if "freq" in pairs else 10,
        control=get("control") is not None,
        stop_signal=atoi(stop) if stop is not None else _signal.SIGTERM,
        reload_signal=atoi(reload) if reload is not None else 0,
        touch=tuple(t for t in touch.split(";") if t) if touch else (),
        honour_stdin=get("stdin") is not None,
        uid=atoi(pairs.get("uid", "")),
        gid=atoi(pairs.get("gid", "")),
        chdir=get("chdir"),
        max_throttle=atoi(pairs.get("max_throttle", "")),
        notify_pid=get("notifypid") is not None,
    )


# -- cron ------------------------------------------------------------------------------------


@record(frozen=True, slots=True)
class CronSpec:
    """One cron task: fields as uWSGI reads them (-1 every, -N every N, 7 = Sunday)."""

    minute: int
    hour: int
    day: int
    month: int
    week: int
    command: str
    unique: bool = False  # not started again while the previous run is alive
    harakiri: int | None = None  # seconds; None: cron-harakiri; 0: never killed


_CRON = r"\s*([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+(.*)"


def parse_cron(value: str, unique: bool = False) -> CronSpec:
    """``minute hour day month weekday command`` (uWSGI's sscanf of five integers)."""
    match = re.fullmatch(_CRON, value, re.DOTALL)
    if match is None or not match.group(6).strip():
        raise ValueError(f"invalid cron syntax (MINUTE HOUR DAY MONTH WEEKDAY COMMAND): {value}")
    minute, hour, day, month, week = (int(match.group(i)) for i in range(1, 6))
    return CronSpec(minute, hour, day, month, week, match.group(6), unique=unique)


def parse_unique_cron(value: str) -> CronSpec:
    return parse_cron(value, unique=True)


_CRON2_KEYS = frozenset("minute hour day month week unique harakiri legion".split())


def parse_cron2(value: str) -> CronSpec:
    """``key=val[,key=val...] command``; fields not given are -1 (every)."""
    head, space, command = value.strip().partition(" ")
    if not space or "=" not in head or not command.strip():
        raise ValueError(f"unable to parse cron definition (KEY=VAL,... COMMAND): {value}")
    pairs = _kvlist(head, _CRON2_KEYS, "cron2")
    if "legion" in pairs:
        raise ValueError("cron2: legion: uzerg has no legions")

    def field(key: str) -> int:
        return atoi(pairs[key]) if key in pairs else -1

    harakiri = atoi(pairs["harakiri"]) if "harakiri" in pairs else None
    return CronSpec(field("minute"), field("hour"), field("day"), field("month"), field("week"),
                    command.strip(), unique=bool(atoi(pairs.get("unique", "0"))),
                    harakiri=harakiri)


# -- TLS -------------------------------------------------------------------------------------


@record(frozen=True, slots=True)
class TlsSocketSpec:
    """``addr,cert,key[,ciphers[,ca]]``; a ca starting with ``!`` requires a client
    certificate, without it one is asked for and verified when given."""

    address: str
    cert: str
    key: str
    ciphers: str = ""
    client_ca: str = ""
    client_cert_required: bool = False

    def __str__(self) -> str:
        ca = ("!" if self.client_cert_required else "") + self.client_ca
        return ",".join(p for p in (self.address, self.cert, self.key, self.ciphers, ca) if p)


_HTTPS2_KEYS = frozenset("addr cert crt key ciphers clientca client_ca spdy".split())


def parse_https2(value: str) -> TlsSocketSpec:
    """``https2``: ``addr=,cert=,key=[,ciphers=][,clientca=]`` (``spdy`` is refused)."""
    pairs = _kvlist(value, _HTTPS2_KEYS, "https2")
    if "spdy" in pairs:
        raise ValueError("https2: spdy: uzerg does not speak SPDY")
    cert = pairs.get("cert") or pairs.get("crt")
    if not pairs.get("addr") or not cert or not pairs.get("key"):
        raise ValueError("--https2 option needs addr, cert and key items")
    ca = pairs.get("clientca") or pairs.get("client_ca") or ""
    return TlsSocketSpec(pairs["addr"], cert, pairs["key"], pairs.get("ciphers", ""),
                         ca.removeprefix("!"), ca.startswith("!"))


def parse_https(value: str) -> TlsSocketSpec:
    parts = value.split(",")
    if len(parts) < 3 or not all(p.strip() for p in parts[:3]):
        raise ValueError(f"invalid https syntax (ADDR,CERT,KEY[,CIPHERS[,CA]]): {value}")
    ciphers = parts[3].strip() if len(parts) > 3 else ""
    ca = ",".join(parts[4:]).strip() if len(parts) > 4 else ""
    return TlsSocketSpec(parts[0].strip(), parts[1].strip(), parts[2].strip(), ciphers,
                         ca.removeprefix("!"), ca.startswith("!"))


NO_MULE_API = (
    "uzerg does not provide this uWSGI feature: a mule without a script waits for "
    "uwsgi.mule_msg() messages and uWSGI signals, from the uwsgi module, which uzerg does not "
    "provide yet; give each mule a script (mule = worker.py or package.module:callable; on a "
    "command line --mule=worker.py)"
)


def parse_mule(value: str) -> str:
    """``script.py`` (run as ``__main__``) or ``module:callable`` (called), as uWSGI's python
    plugin runs a mule's value; anything else would be a signal/message-only mule."""
    target = value.strip()
    if target.endswith(".py"):
        return target
    module, colon, name = target.partition(":")
    if colon and module and name and all(p.isidentifier() for p in module.split(".")):
        return target
    if target:
        raise ValueError(f"{target}: {NO_MULE_API}")
    raise ValueError(NO_MULE_API)
