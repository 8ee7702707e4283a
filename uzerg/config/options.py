"""THE option table: every uzerg option declared once.

From these records come the command-line parser (``uzerg.cli``), the INI keys and the
``UWSGI_*``/``UZERG_*`` environment variables (``uzerg.config.load``), ``uzerg --help`` and the
generated ``docs/options.md`` (``python -m uzerg.config.docs > docs/options.md``).

Kinds: ``flag`` (bool, uWSGI booleans), ``int``, ``string`` (``str | None``), ``list`` (tuple,
values accumulate in order). Each record carries ``parse``, the function (``uzerg.config.values``)
that turns one written value into the typed value stored on ``Config``; the attribute on
``Config`` is the name with ``-`` → ``_``.
"""

from __future__ import annotations

from uzerg.config.option import LazyParser, Option
from uzerg.config.serving_options import SERVING_OPTIONS
from uzerg.config.values import (
    FALSE_WORDS,
    pair_parser,
    parse_bool,
    parse_int,
    parse_mode,
    parse_protocol,
    parse_zergpool,
)

__all__ = ["FALSE_WORDS", "OPTIONS", "Option", "lookup", "parse_bool"]

# loggers, log routes and encoders, log-date: parsed by uzerg.config.log_values, imported when
# one of these options is first set (issue 13)
parse_encoder = LazyParser("log_values", "parse_encoder")
parse_log_date = LazyParser("log_values", "parse_log_date")
parse_logger = LazyParser("log_values", "parse_logger")
parse_route = LazyParser("log_values", "parse_route")
# hooks, daemons, cron, https and mules: parsed by uzerg.config.service_values, imported when
# one of these options is first set (issue 13)
parse_attach_control_daemon = LazyParser("service_values", "parse_attach_control_daemon")
parse_attach_daemon = LazyParser("service_values", "parse_attach_daemon")
parse_attach_daemon2 = LazyParser("service_values", "parse_attach_daemon2")
parse_command = LazyParser("service_values", "parse_command")
parse_cron = LazyParser("service_values", "parse_cron")
parse_cron2 = LazyParser("service_values", "parse_cron2")
parse_hook = LazyParser("service_values", "parse_hook")
parse_hook_touch = LazyParser("service_values", "parse_hook_touch")
parse_https = LazyParser("service_values", "parse_https")
parse_https2 = LazyParser("service_values", "parse_https2")
parse_mule = LazyParser("service_values", "parse_mule")
parse_smart_attach_daemon = LazyParser("service_values", "parse_smart_attach_daemon")
parse_smart_attach_daemon2 = LazyParser("service_values", "parse_smart_attach_daemon2")
parse_unique_cron = LazyParser("service_values", "parse_unique_cron")

P, S, Z, L, K, E, V, G, C, M, U = (
    "processes and apps",
    "sockets",
    "zerg",
    "lifecycle",
    "hooks, daemons and cron",
    "emperor and vassals",
    "serving",
    "logs and stats",
    "configuration",
    "management",
    "uzerg extensions",
)

# uWSGI's hook phases (uzerg.processes.hooks): hook-PHASE for all, exec-/call-PHASE for some
HOOK_PHASES = (
    ("asap", "as soon as the configuration is read", True),
    ("as-root", "before privileges are dropped", True),
    ("as-user", "after privileges are dropped", True),
    ("as-user-atexit", "when the master exits or reloads", True),
    ("pre-app", "before the app is loaded", True),
    ("post-app", "after the app is loaded", True),
    ("post-fork", "in each new worker", False),
    ("accepting", "when a worker starts accepting", False),
    ("accepting-once", "when a worker starts accepting, on its first spawn only", False),
    ("accepting1", "when worker 1 starts accepting", False),
    ("accepting1-once", "when worker 1 starts accepting, on its first spawn only", False),
    ("master-start", "when the master's loop starts", False),
    ("as-mule", "in each mule, before its script", False),
)


def _phase_options() -> tuple[Option, ...]:
    made = []
    for phase, when, commands in HOOK_PHASES:
        made.append(Option(f"hook-{phase}", "list", f"run this hook (ACTION:ARGS) {when}", K,
                           metavar="ACTION:ARGS", parse=parse_hook))
        if commands:
            made.append(Option(f"exec-{phase}", "list", f"run this shell command {when}", K,
                               metavar="COMMAND", parse=parse_command))
            made.append(Option(f"call-{phase}", "list", f"call this function (C symbol or "
                               f"python module.function) {when}", K, metavar="FUNCTION"))
    return tuple(made)


OPTIONS: tuple[Option, ...] = (
    # processes and apps
    Option("master", "flag", "enable the master process", P, short="M"),
    Option("processes", "int", "number of worker processes", P, 1, ("workers",), "p",
           metavar="N", minimum=1),
    Option("threads", "int", "threads per worker", P, 1, metavar="N", minimum=1),
    Option("enable-threads", "flag", "enable Python threads in the app", P, short="T"),
    Option("module", "string", "WSGI module to load (`pkg.mod` or `pkg.mod:callable`)", P,
           aliases=("wsgi",), short="w", metavar="MODULE"),
    Option("wsgi-file", "string", "load a WSGI app from a .py/.wsgi file", P,
           aliases=("file",), metavar="FILE"),
    Option("callable", "string", "name of the WSGI callable", P, "application", metavar="NAME"),
    Option("chdir", "string", "chdir to this directory before loading the app", P, metavar="DIR"),
    Option("pythonpath", "list", "add a directory (or glob) to sys.path", P,
           aliases=("python-path", "pp"), metavar="DIR"),
    Option("home", "string", "virtualenv of the app", P,
           aliases=("virtualenv", "venv", "pyhome"), short="H", metavar="DIR"),
    Option("env", "list", "set an environment variable", P, metavar="NAME=VALUE",
           parse=pair_parser("NAME=VALUE")),
    Option("lazy-apps", "flag", "load the app in each worker instead of the master (`lazy`: "
           "uWSGI's lazy mode, which also loads the app in each worker)", P, aliases=("lazy",)),
    Option("need-app", "flag", "exit if the app cannot be loaded", P),
    Option("single-interpreter", "flag", "accepted: uzerg always runs one interpreter", P,
           short="i", accepted_only=True),
    Option("mount", "list", "mount an app under a URL prefix", P, metavar="/PREFIX=APP",
           parse=pair_parser("/PREFIX=APP")),
    Option("python-import", "list", "import this module (or .py file) before the app, where "
           "the app loads", P, aliases=("import", "pyimport", "py-import"), metavar="MODULE"),
    Option("shared-import", "list", "import this module in the master, before any app", P,
           aliases=("shared-pyimport", "shared-py-import", "shared-python-import"),
           metavar="MODULE"),
    Option("pymodule-alias", "list", "make `import NAME` give this module (or .py file)", P,
           metavar="NAME=MODULE", parse=pair_parser("NAME=MODULE")),
    Option("eval", "string", "Python code defining the WSGI callable", P, metavar="CODE"),
    Option("paste", "string", "load the app from a PasteDeploy config (the paste extra)", P,
           metavar="config:FILE"),
    Option("paste-logger", "flag", "configure logging from the paste config's [loggers]", P),
    Option("chdir2", "string", "chdir to this directory after loading the app", P,
           metavar="DIR"),
    Option("pyargv", "string", "the app's sys.argv after 'uwsgi' (split on spaces)", P,
           metavar="ARGS"),
    Option("optimize", "int", "Python optimisation level (the interpreter is re-run with -O)",
           P, 0, short="O", metavar="N", minimum=0, maximum=2),
    Option("py-autoreload", "int", "reload gracefully when a loaded module's file changes, "
           "checking every N seconds (0: off)", P, 0,
           aliases=("py-auto-reload", "python-auto-reload", "python-autoreload"),
           metavar="SECONDS", minimum=0),
    Option("manage-script-name", "flag", "set SCRIPT_NAME/PATH_INFO from the mountpoint", P),
    Option("uid", "string", "drop privileges to this user (name or number)", P, metavar="USER"),
    Option("gid", "string", "drop privileges to this group (name or number)", P,
           metavar="GROUP"),
    Option("auto-procname", "flag", "give processes meaningful names", P),
    Option("procname-prefix", "string", "prefix process names with this", P, metavar="TEXT"),
    Option("procname-prefix-spaced", "string", "prefix process names with this and a space", P,
           metavar="TEXT"),
    # adaptive workers: the cheaper subsystem (uzerg.processes.cheaper)
    Option("cheaper", "int", "adaptive workers: run at least N, at most `processes` (0: off)", P,
           0, metavar="N", minimum=0),
    Option("cheaper-initial", "int", "workers to start with in cheaper mode (default: cheaper)",
           P, 0, metavar="N", minimum=0),
    Option("cheaper-algo", "string", "cheaper algorithm: spare, spare2, backlog, busyness or "
           "manual", P, "spare", metavar="NAME"),
    Option("cheaper-step", "int", "workers to spawn at a time in cheaper mode", P, 1,
           metavar="N", minimum=0),
    Option("cheaper-overload", "int", "spare: cycles (seconds) all busy before spawning; backlog: "
           "queue length; busyness: seconds per check", P, 3, metavar="N", minimum=0),
    Option("cheaper-idle", "int", "spare2: cycles (seconds) with too many idle workers before "
           "cheaping one", P, 10, metavar="N", minimum=0),
    Option("cheaper-rss-limit-soft", "int", "spawn no more workers while their total RSS is "
           "this high (bytes; needs memory-report)", P, 0, metavar="BYTES", minimum=0),
    Option("cheaper-rss-limit-hard", "int", "cheap a worker while the workers' total RSS is this "
           "high (bytes)", P, 0, metavar="BYTES", minimum=0),
    Option("cheaper-algo-list", "flag", "log the available cheaper algorithms", P,
           aliases=("cheaper-algos-list", "cheaper-list")),
    Option("cheaper-busyness-max", "int", "busyness: above this percent, spawn", P, 50,
           metavar="PERCENT", minimum=0),
    Option("cheaper-busyness-min", "int", "busyness: below this percent, a cycle is idle", P, 25,
           metavar="PERCENT", minimum=0),
    Option("cheaper-busyness-multiplier", "int", "busyness: idle checks before a worker is "
           "cheaped", P, 10, metavar="N", minimum=0),
    Option("cheaper-busyness-penalty", "int", "busyness: added to the multiplier when a worker "
           "comes back too fast", P, 2, metavar="N", minimum=0),
    Option("cheaper-busyness-verbose", "flag", "busyness: log every check", P),
    Option("cheaper-busyness-backlog-alert", "int", "busyness: spawn an emergency worker when a "
           "listen queue holds more than this", P, 33, metavar="N", minimum=0),
    Option("cheaper-busyness-backlog-multiplier", "int", "busyness: the multiplier while "
           "emergency workers run", P, 3, metavar="N", minimum=0),
    Option("cheaper-busyness-backlog-step", "int", "busyness: emergency workers to spawn at a "
           "time", P, 1, metavar="N", minimum=0),
    Option("cheaper-busyness-backlog-nonzero", "int", "busyness: spawn when a listen queue is "
           "not empty for this many seconds", P, 60, metavar="SECONDS", minimum=0),
    # sockets
    Option("socket", "list", "bind a socket speaking the default protocol (uwsgi)", S,
           aliases=("uwsgi-socket",), short="s", metavar="ADDR"),
    Option("http-socket", "list", "bind a socket speaking HTTP", S, metavar="ADDR"),
    Option("http11-socket", "list", "bind a socket speaking HTTP/1.1 with keep-alive", S,
           metavar="ADDR"),
    Option("http", "list", "bind an HTTP socket (served by the workers: no router process)", S,
           metavar="ADDR"),
    Option("https-socket", "list", "bind an HTTPS socket (TLS served by the workers); a ca "
           "asks for client certificates, !ca requires one", S,
           metavar="ADDR,CERT,KEY[,CIPHERS[,CA]]", parse=parse_https),
    Option("https", "list", "bind an HTTPS socket (served by the workers: no router process)",
           S, metavar="ADDR,CERT,KEY[,CIPHERS[,CA]]", parse=parse_https),
    Option("https2", "list", "bind an HTTPS socket, keyval form (addr=,cert=,key=,ciphers=,"
           "clientca=)", S, metavar="KEY=VAL,...", parse=parse_https2),
    Option("ssl-option", "list", "OR this OpenSSL SSL_OP_* number into the HTTPS contexts' "
           "options", S, metavar="N", parse=parse_int),
    Option("ssl-tmp-dir", "string", "accepted: uzerg reads certificates from their files (no "
           "inline PEM to store)", S, metavar="DIR", accepted_only=True),
    Option("ssl-verbose", "flag", "accepted: failed TLS handshakes are always logged", S,
           accepted_only=True),
    Option("https-export-cert", "flag", "put the client certificate (PEM) in HTTPS_CC", S),
    Option("shared-socket", "list", "declare a socket that other socket options use as =N "
           "(N counts shared-socket, then undeferred-shared-socket)", S, metavar="ADDR"),
    Option("undeferred-shared-socket", "list", "a shared-socket without TCP_DEFER_ACCEPT", S,
           metavar="ADDR"),
    Option("http-to-https", "list", "bind an HTTP socket answering every request with a "
           "redirect to https (,PORT: to that port)", S, metavar="ADDR[,PORT]"),
    Option("http-to", "list", "accepted when ADDR is one of this instance's own sockets (the "
           "workers serve --http directly); refused otherwise", S, metavar="ADDR"),
    Option("protocol", "string", "protocol of default and received sockets: uwsgi or http", S,
           aliases=("socket-protocol",), metavar="PROTO", parse=parse_protocol),
    Option("listen", "int", "listen queue size", S, 100, short="l", metavar="N", minimum=1),
    Option("chmod-socket", "string", "mode of unix sockets (bare: 666)", S,
           aliases=("chmod",), short="C", bare="666", metavar="MODE", parse=parse_mode),
    Option("chown-socket", "string", "owner of unix sockets (user[:group])", S,
           metavar="USER[:GROUP]"),
    Option("vacuum", "flag", "remove unix sockets and pidfile at exit", S),
    Option("reuse-port", "flag", "set SO_REUSEPORT on TCP sockets", S),
    Option("thunder-lock", "flag", "accepted: the kernel serialises accept() already", S,
           accepted_only=True, warns="no effect: uzerg's workers block in accept() on the "
           "shared socket and the kernel wakes one of them per connection (no lock needed)"),
    Option("buffer-size", "int", "maximum size of a request header block", S, 4096, short="b",
           metavar="BYTES", minimum=1, maximum=65535),
    Option("socket-timeout", "int", "socket timeout in seconds", S, 4, short="z",
           metavar="SECONDS", minimum=1),
    Option("http-timeout", "int", "HTTP client timeout in seconds", S, 4, metavar="SECONDS",
           minimum=1),
    Option("http-headers-timeout", "int",
           "deadline for a whole request head (HTTP or uwsgi vars) from accept, in seconds "
           "(0: socket-timeout)", S, 0, metavar="SECONDS", minimum=0),
    Option("max-pending-heads", "int",
           "connections per worker held while their request head arrives (at most half the "
           "descriptor limit); beyond it the oldest is closed (408)", U, 1000, metavar="N",
           minimum=1),
    Option("http-keepalive", "flag", "keep HTTP/1.1 connections open", S),
    Option("post-buffering", "int", "accepted: request bodies are read on demand", S, 0,
           metavar="BYTES", accepted_only=True),
    # zerg
    Option("zerg", "list", "attach to a zerg server and serve its sockets", Z, metavar="ADDR"),
    Option("zerg-server", "string", "hand this instance's sockets to zergs connecting here", Z,
           metavar="ADDR"),
    Option("zerg-fallback", "flag", "bind the configured sockets if a zerg server is down", Z),
    Option("zergpool", "list", "bind SOCKs and hand them to zergs connecting to ADDR", Z,
           aliases=("zerg-pool",), metavar="ADDR:SOCK[,SOCK...]", parse=parse_zergpool),
    Option("zerg-timeout", "int", "deadline to attach to a zerg server, in seconds", Z, 10,
           metavar="SECONDS", minimum=1),
    Option("zerg-allow-uid", "list", "also serve zergs running as this uid", Z,
           metavar="UID"),
    Option("zerg-allow-gid", "list", "also serve zergs running with this gid", Z,
           metavar="GID"),
    Option("zerg-wait", "int", "retry attaching to a zerg server not up yet for this long", Z,
           0, metavar="SECONDS", minimum=0),
    # lifecycle
    Option("harakiri", "int", "kill a worker stuck on one request this long (0: off)", L, 0,
           short="t", metavar="SECONDS", minimum=0),
    Option("max-requests", "int", "recycle a worker after this many requests (0: off)", L, 0,
           short="R", metavar="N", minimum=0),
    Option("max-worker-lifetime", "int", "recycle a worker after this many seconds (0: off)", L,
           0, metavar="SECONDS", minimum=0),
    Option("max-worker-lifetime-delta", "int", "add this many seconds per worker id to "
           "max-worker-lifetime, so workers are not recycled all at once", L, 0,
           metavar="SECONDS", minimum=0),
    Option("reload-on-rss", "int", "recycle a worker above this RSS in MB (0: off)", L, 0,
           metavar="MB", minimum=0),
    Option("worker-reload-mercy", "int", "seconds a stopping worker gets before SIGKILL", L, 60,
           metavar="SECONDS", minimum=0),
    Option("max-fd", "int", "set the descriptor limit (RLIMIT_NOFILE) to N (0: leave it)", L, 0,
           metavar="N", minimum=0),
    Option("no-orphans", "flag", "accepted: workers always exit when their master dies", L,
           accepted_only=True),
    Option("die-on-term", "flag", "accepted: SIGTERM always shuts down", L),
    Option("touch-reload", "list", "reload when this file is touched", L, metavar="FILE"),
    Option("touch-chain-reload", "list", "replace the workers one after the other (each new one "
           "ready before the next goes) when this file is touched", L, metavar="FILE"),
    Option("pidfile", "string", "write the master pid to this file", L, metavar="FILE"),
    Option("pidfile2", "string", "write the master pid to this file after privileges are "
           "dropped (as that user)", L, metavar="FILE"),
    Option("daemonize", "string", "detach and log to this file", L, short="d", metavar="LOGFILE"),
    Option("master-fifo", "list", "control the master through this fifo", L, metavar="FILE"),
    Option("takeover", "string", "once ready, pause the instance in PIDFILE and take its place",
           U, metavar="PIDFILE"),
    Option("takeover-stop", "flag", "with takeover: stop the old instance instead of pausing it",
           U),
    Option("start-paused", "flag", "a warm standby: load the app and fork the workers, then "
           "wait paused (accepting nothing) until resumed by SIGTSTP, --resume or the master "
           "fifo's p", U),
    # hooks, daemons and cron
    *_phase_options(),
    Option("hook-touch", "list", "run the hook when FILE is touched (checked every second)", K,
           metavar="FILE ACTION:ARGS", parse=parse_hook_touch),
    Option("attach-daemon", "list", "run this command beside the instance, respawned when it "
           "dies, stopped with the instance", K, metavar="COMMAND", parse=parse_attach_daemon),
    Option("attach-control-daemon", "list", "like attach-daemon; its death stops the instance",
           K, metavar="COMMAND", parse=parse_attach_control_daemon),
    Option("smart-attach-daemon", "list", "run COMMAND unless the pid in PIDFILE is alive; kept "
           "across reloads and stops", K, metavar="PIDFILE[,FREQ] COMMAND",
           parse=parse_smart_attach_daemon),
    Option("smart-attach-daemon2", "list", "like smart-attach-daemon; uzerg daemonizes COMMAND "
           "and writes PIDFILE", K, metavar="PIDFILE[,FREQ] COMMAND",
           parse=parse_smart_attach_daemon2),
    Option("attach-daemon2", "list", "attach a daemon, keyval form (cmd=...,pidfile=...,"
           "stopsignal=...)", K, metavar="KEY=VAL,...", parse=parse_attach_daemon2),
    Option("mule", "list", "run this Python script (as __main__) or module:callable in a "
           "process of its own, respawned when it exits (a mule without one is refused: it "
           "needs the uwsgi module)", K, bare="", metavar="SCRIPT.py", parse=parse_mule),
    Option("mule-reload-mercy", "int", "seconds a stopping mule gets before SIGKILL", K, 60,
           metavar="SECONDS", minimum=0),
    Option("touch-mules-reload", "list", "restart the mules when this file is touched", K,
           metavar="FILE"),
    Option("daemons-honour-stdin", "flag", "daemons keep the instance's stdin (default: "
           "/dev/null)", K),
    Option("cron", "list", "run COMMAND at the given time (-1: every; -N: every N)", K,
           metavar="MIN HOUR DAY MONTH WDAY COMMAND", parse=parse_cron),
    Option("unique-cron", "list", "like cron; not started again while the last run is alive", K,
           metavar="MIN HOUR DAY MONTH WDAY COMMAND", parse=parse_unique_cron),
    Option("cron2", "list", "cron, keyval form (minute=,hour=,day=,month=,week=,unique=,"
           "harakiri=) COMMAND", K, metavar="KEY=VAL,... COMMAND", parse=parse_cron2),
    Option("cron-harakiri", "int", "kill a cron command still running after this many seconds "
           "(0: never)", K, 0, metavar="SECONDS", minimum=0),
    Option("idle", "int", "after this many seconds without a request: cheap mode, or exit with "
           "die-on-idle (0: off)", L, 0, metavar="SECONDS", minimum=0),
    Option("die-on-idle", "flag", "exit (a vassal: ask the Emperor to stop it) when idle", L),
    Option("cheap", "flag", "spawn the workers only when the first connection arrives", L),
    # the Emperor
    Option("emperor", "list", "run the Emperor: watch vassal files in DIR (or matching a glob)", E,
           metavar="DIR|GLOB"),
    Option("emperor-pidfile", "string", "write the Emperor's pid to this file", E,
           metavar="FILE"),
    Option("emperor-stats", "string", "serve the Emperor's stats JSON on this address", E,
           aliases=("emperor-stats-server",), metavar="ADDR"),
    Option("emperor-tyrant", "flag", "run each vassal as the owner (uid/gid) of its file", E),
    Option("emperor-freq", "int", "seconds between two scans of the vassal files", E, 3,
           metavar="SECONDS", minimum=1),
    Option("emperor-throttle", "int", "first respawn delay of a vassal that dies before it is "
           "loyal, in ms (grows by this much each time)", E, 1000, metavar="MS", minimum=0),
    Option("emperor-max-throttle", "int", "the largest respawn delay, in ms", E, 180000,
           metavar="MS", minimum=0),
    Option("emperor-required-heartbeat", "int", "kill a vassal that sent heartbeats and then "
           "none for this long", E, 30, metavar="SECONDS", minimum=1),
    Option("emperor-broodlord", "int", "at most this many zergs started on vassals' sos "
           "(0: off)", E, 0, metavar="N", minimum=0),
    Option("emperor-broodlord-standby", "int", "keep this many zergs per vassal started with "
           "their workers paused; an sos resumes one at once", U, 0, metavar="N", minimum=0),
    Option("emperor-wrapper", "string", "run vassals with this program instead of uzerg (e.g. "
           "a real uwsgi binary)", E, metavar="PROGRAM"),
    Option("emperor-graceful-shutdown", "flag", "stop vassals gracefully when the Emperor "
           "stops", E),
    Option("vassals-include", "list", "add --include FILE to every vassal's command line", E,
           metavar="FILE"),
    Option("vassals-inherit", "list", "add --ini FILE (a template) to every vassal's command "
           "line", E, metavar="FILE"),
    Option("vassal-set", "list", "set an option of every vassal", E, aliases=("vassals-set",),
           metavar="NAME=VALUE"),
    Option("heartbeat", "int", "a vassal: send the Emperor a heartbeat every N seconds", E, 0,
           metavar="SECONDS", minimum=0),
    Option("vassal-sos", "int", "a vassal: ask the Emperor for zergs when every worker is busy, "
           "at most once every N seconds (0: off)", E, 0, metavar="SECONDS", minimum=0),
    Option("vassal-sos-backlog", "int", "a vassal: ask the Emperor for zergs when a listen "
           "queue holds this many connections (TCP and unix)", E, 0, metavar="N", minimum=0),
    # serving
    Option("check-static", "list", "serve the file DIR + PATH_INFO when it exists (else the app)",
           V, aliases=("static-check",), metavar="DIR"),
    Option("wsgi-disable-file-wrapper", "flag", "offer no wsgi.file_wrapper to the app", V),
    Option("static-map", "list", "serve files of a directory under a URL prefix", V,
           metavar="/URL=/DIR", parse=pair_parser("/URL=/DIR")),
    *SERVING_OPTIONS,
    # logs and stats
    Option("logto", "string", "log to this file", G, metavar="FILE"),
    Option("disable-logging", "flag", "do not log requests", G, short="L"),
    Option("log-format", "string", "request log format, with uWSGI %(vars)", G,
           aliases=("logformat",), metavar="FORMAT"),
    Option("log-4xx", "flag", "log requests answered 4xx even with disable-logging", G),
    Option("log-5xx", "flag", "log requests answered 5xx even with disable-logging", G),
    Option("memory-report", "flag", "add memory usage to request logs", G, short="m"),
    Option("stats", "string", "serve the stats JSON on this address", G,
           aliases=("stats-server",), metavar="ADDR"),
    Option("stats-http", "flag", "wrap the stats JSON in an HTTP response", G),
    Option("stats-prometheus", "string", "serve Prometheus metrics over HTTP on this address",
           U, metavar="ADDR"),
    Option("logger", "list", "add a logger: [NAME ]file:PATH|fd:N|stdio|syslog[:ID[,FAC]]|"
           "socket:ADDR (the master writes every line)", G, metavar="[NAME ]PLUGIN[:ARG]",
           parse=parse_logger),
    Option("req-logger", "list", "add a request logger (same plugins as logger)", G,
           aliases=("logger-req",), metavar="[NAME ]PLUGIN[:ARG]", parse=parse_logger),
    Option("log-route", "list", "send lines matching REGEX to the named logger only", G,
           metavar="NAME REGEX", parse=parse_route),
    Option("log-req-route", "list", "send request lines matching REGEX to the named logger", G,
           metavar="NAME REGEX", parse=parse_route),
    Option("log-encoder", "list", "encode log lines: prefix|suffix|nl|format|json[:NAME] ARGS", G,
           metavar="ENCODER[:NAME] ARGS", parse=parse_encoder),
    Option("log-req-encoder", "list", "encode request lines (as log-encoder)", G,
           metavar="ENCODER[:NAME] ARGS", parse=parse_encoder),
    Option("log-master", "flag", "the master writes the log lines of every process", G),
    Option("log-master-bufsize", "int", "largest log line the master passes whole", G, 8192,
           metavar="BYTES", minimum=1),
    Option("log-master-stream", "flag", "accepted: uzerg's log pipe keeps lines whole", G,
           accepted_only=True),
    Option("logto2", "string", "log to this file, opened after dropping privileges", G,
           metavar="FILE"),
    Option("log-date", "string", "prefix server lines with the date (or a strftime format)", G,
           aliases=("logdate",), bare="true", metavar="[FORMAT]", parse=parse_log_date),
    Option("log-reopen", "flag", "reopen the log file on every reload", G),
    Option("log-maxsize", "int", "rotate the log file past this size (0: never)", G, 0,
           metavar="BYTES", minimum=0),
    Option("log-backupname", "string", "name of the rotated log file (default: FILE.<time>)", G,
           metavar="FILE"),
    Option("log-x-forwarded-for", "flag", "log the X-Forwarded-For address as the client's", G),
    Option("log-slow", "int", "log requests slower than this many msecs (0: off)", G, 0,
           metavar="MSECS", minimum=0),
    Option("log-big", "int", "log responses of at least this many bytes (0: off)", G, 0,
           metavar="BYTES", minimum=0),
    Option("log-zero", "flag", "log responses without a body", G),
    Option("log-sendfile", "flag", "log responses sent with sendfile", G),
    Option("log-ioerror", "flag", "log requests with both read and write errors", G),
    Option("ignore-sigpipe", "flag", "accepted: workers always ignore SIGPIPE", G,
           accepted_only=True),
    Option("ignore-write-errors", "flag", "do not log 'write error' lines of disconnected "
           "clients", G),
    Option("disable-write-exception", "flag", "the app's write() raises no exception when the "
           "client is gone", G),
    Option("log-json", "flag", "log one JSON object per event", U),
    # configuration
    Option("ini", "list", "load an INI file (FILE[:SECTION]; :SECTION = same file)", C,
           metavar="FILE[:SECTION]"),
    Option("include", "list", "load an INI file in place", C, metavar="FILE"),
    Option("strict", "flag", "fail on keys uWSGI does not know, as uWSGI's strict (uzerg's other "
           "warnings stay warnings)", C),
    Option("declare-option", "list", "declare a custom option: NAME=OPT=VAL[;OPT=VAL...] with "
           "$1, $2... for its arguments", C, metavar="NAME=OPT=VALUE[;...]",
           parse=pair_parser("NAME=OPT=VALUE[;...]")),
    Option("declare-option2", "list", "declare a custom option (as declare-option)", C,
           metavar="NAME=OPT=VALUE[;...]", parse=pair_parser("NAME=OPT=VALUE[;...]")),
    Option("print", "list", "print this text while loading the configuration", C,
           metavar="TEXT"),
    Option("show-config", "flag", "accepted: uzerg prints the config with --check-config", C),
    Option("check-config", "flag", "print the resolved configuration and exit", U),
    Option("version", "flag", "print the version and exit", C),
    Option("help", "flag", "print this help and exit", C, aliases=("usage",), short="h"),
    # management
    Option("reload", "string", "gracefully reload the instance whose pid is in PIDFILE", M,
           metavar="PIDFILE"),
    Option("stop", "string", "stop the instance whose pid is in PIDFILE", M, metavar="PIDFILE"),
    Option("pause", "string", "pause the instance whose pid is in PIDFILE", M,
           metavar="PIDFILE"),
    Option("resume", "string", "resume the instance whose pid is in PIDFILE", M,
           metavar="PIDFILE"),
    Option("rollback", "string", "resume the instance a takeover paused and stop the one in "
           "PIDFILE", M, metavar="PIDFILE"),
    Option("zerg-probe", "list", "attach to a zerg server or pool and list its sockets "
           "(repeatable; deadline: zerg-timeout)", M, metavar="ADDR"),
    Option("zerg-status", "string", "list the zergs attached to a zerg server or pool (ADDR: "
           "its stats server)", M, metavar="STATS-ADDR"),
    Option("json", "flag", "zerg-probe, zerg-status: print JSON", M),
)

# options handled while reading the configuration itself, not stored as settings
DIRECTIVES = frozenset({"ini", "include", "print"})
MANAGEMENT = ("reload", "stop", "pause", "resume")
CATEGORIES = (P, S, Z, L, K, E, V, G, C, M, U)


def _index(table: tuple[Option, ...]) -> tuple[dict[str, Option], dict[str, Option]]:
    """The options by name and alias, and by short letter (a function: its local names cost
    less than the module's, ~0.4M instructions at every start, issue 13)."""
    by_name: dict[str, Option] = {}
    by_short: dict[str, Option] = {}
    for opt in table:
        for name in (opt.name, *opt.aliases):
            assert name not in by_name, name
            by_name[name] = opt
        if opt.short:
            assert opt.short not in by_short, opt.short
            by_short[opt.short] = opt
    return by_name, by_short


BY_NAME, BY_SHORT = _index(OPTIONS)


def lookup(name: str) -> Option | None:
    """The option called ``name`` (canonical name or alias), or None."""
    return BY_NAME.get(name)
