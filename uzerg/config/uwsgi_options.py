"""uWSGI 2.0 options uzerg does not implement, and what uzerg does when a config uses one (SPEC §9).

The data file ``uwsgi_options.tsv`` beside this module lists every option of ``uwsgi --help`` of
uWSGI 2.0.31 as built by ``pip install uwsgi`` (python plugin built in), one ``name arg short``
row each (tab-separated); ``arg`` is ``none``, ``required`` or ``optional`` (probed with getopt).
It was made, and is remade, by ``python tools/gen_uwsgi_options.py``. ``EXTRA_OPTIONS`` adds
well-known options of plugins that build lacks (internal routing needs PCRE; perl, ruby, lua, ...).

Classification of a known uWSGI option that uzerg lacks:
- ``silent``: ``plugins``/``plugin``/``plugins-dir`` naming only Python plugins (and ``http``/
  ``corerouter``: uzerg serves HTTP itself; ``logfile``/``syslog``/``logsocket``: its loggers);
- ``error``: the option changes what the service does or who it runs as, so running without it
  would be wrong (emperor, legions, routing, jail and Emperor hook phases, mules without a
  script (``mules``, ``farm``, ``mule-msg-size``...: the uwsgi module's API), spooler,
  uWSGI's TLS routers, other languages,
  other concurrency models such as gevent, jails, subscriptions, routers);
- ``warning``: everything else (tuning and observability: cheaper, offload threads, log knobs).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: start-up time (issue 13)
    from typing import Any, Literal

    Severity = Literal["silent", "warning", "error"]
TABLE = "uwsgi_options.tsv"


def _read_table() -> tuple[dict[str, str], dict[str, str]]:
    args: dict[str, str] = {}
    shorts: dict[str, str] = {}
    from importlib import resources

    text = resources.files("uzerg.config").joinpath(TABLE).read_text(encoding="utf-8")
    for row in text.splitlines():
        if not row or row.startswith("#"):
            continue
        name, arg, short = row.split("\t")
        args[name] = arg
        if short != "-":
            shorts.setdefault(short, name)
    return args, shorts


# UWSGI_ARGS: name -> "none" | "required" | "optional"; UWSGI_SHORTS: short flag -> first
# option name using it; KNOWN: every uWSGI option name. Read from the table when first used
# (an unknown option, a short flag): a start-up whose options are all uzerg's does not read it
_LAZY = ("UWSGI_ARGS", "UWSGI_SHORTS", "KNOWN")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    args, shorts = _read_table()
    globals().update(UWSGI_ARGS=args, UWSGI_SHORTS=shorts, KNOWN=frozenset(args) | EXTRA_OPTIONS)
    return globals()[name]


def _known() -> frozenset[str]:
    return globals().get("KNOWN") or __getattr__("KNOWN")  # type: ignore[no-any-return]


EXTRA_OPTIONS = frozenset(
    "route route-host route-uri route-qs route-remote-addr route-user-agent route-referer "
    "route-label route-if route-if-not route-run final-route final-route-status final-route-host "
    "final-route-uri final-route-qs final-route-remote-addr final-route-user-agent "
    "final-route-referer final-route-label final-route-if final-route-if-not final-route-run "
    "error-route error-route-status error-route-host error-route-uri error-route-qs "
    "error-route-remote-addr error-route-user-agent error-route-referer error-route-label "
    "error-route-if error-route-if-not error-route-run response-route response-route-status "
    "response-route-host response-route-uri response-route-qs response-route-remote-addr "
    "response-route-user-agent response-route-referer response-route-label response-route-if "
    "response-route-if-not response-route-run log-route log-req-route router-list routers-list "
    # core options of uWSGI 2.0 (core/uwsgi.c) that the pip build lacks: PCRE-only (log and
    # routing regexps), libcap, FreeBSD jails, SpiderMonkey, TLS session cache
    "route-remote-user final-route-remote-user error-route-remote-user "
    "response-route-remote-user log-drain log-filter log-alarm alarm-log not-log-alarm "
    "not-alarm-log pcre-jit sni-regexp cap emperor-cap vassals-cap vassal-cap jail jail2 "
    "jail-ip4 jail-ip6 jidfile jid-file libjail jail-attach js ssl-sessions-use-cache "
    "ssl-session-use-cache ssl-sessions-timeout ssl-session-timeout "
    "rack rails rbrequire ruby-require rubyrequire rbshell rb-gc-freq rbthreads rvm rvm-path "
    "psgi perl-no-die-catch perl-local-lib perl-version perl-args perl-exec perl-auto-reload "
    "lua lua-load lua-shell php-ini php-set php-docroot php-index php-allowed-ext "
    "jvm-classpath jwsgi ring gccgo mono-app cgi cgi-map-helper cgi-helper cgi-allowed-ext "
    "greenlet tornado asyncio stackless carbon carbon-id zeromq else "
    # core options that need PCRE, like internal routing
    "static-gzip static-expires static-expires-mtime static-expires-uri static-expires-uri-mtime "
    "static-expires-path-info static-expires-path-info-mtime".split()
)

# plugins whose job uzerg does itself: the Python interpreter, HTTP (served by the workers) and
# the loggers (file/fd/stdio, syslog, socket: uzerg.logsinks)
PYTHON_PLUGINS = ("python", "python2", "python3", "http", "corerouter", "logfile", "syslog",
                  "logsocket")

# prefixes (matching "name" or "name-...") of options whose absence changes the service
_ERROR_PREFIXES = (
    "emperor vassal vassals legion cron unique-cron unique-legion-cron route final-route "
    "error-route response-route hook exec call mule mules farm spooler https https2 ssl "
    "sslrouter sni rails rack rbrequire psgi perl lua php jvm jwsgi ring gccgo mono cgi "
    "gevent async ugreen greenlet tornado asyncio stackless fastrouter rawrouter forkptyrouter "
    "tuntap subscribe subscribe-to subscribe2 http-subscription-server http-to http-to-https "
    "http-websockets shared-socket undeferred-shared-socket fastcgi-socket fastcgi-nph-socket "
    "scgi-socket scgi-nph-socket raw-socket puwsgi-socket suwsgi-socket ssl-socket "
    "https-socket chroot jailed pivot-root pivot_root namespace unshare unshare2 cgroup "
    "setns cap add-cap secure-cap cache cache2 sharedarea pull-header "
    "collect-header paste-name ini-paste "
    "ini-paste-logged post-pymodule-alias wsgi-lite web3 pump pecan "
    "inherit xmlconfig xml yaml yml json js sqlite sqlite3 ldap signal timer rbtimer "
    "worker-exec worker-exec2 worker-mount touch-exec touch-signal "
    "unenv envdir early-envdir mount-asap mount-pre-jail mount-post-jail mount-in-jail "
    "mount-as-root mount-as-vassal mount-as-emperor"
).split()
# FreeBSD jails (who and where the service runs); the PROXY protocol (uzerg's HTTP reader would
# take the PROXY line for a bad request line: every request would fail)
_MORE_ERROR_PREFIXES = ("jail", "jail2", "jidfile", "jid-file", "libjail", "enable-proxy-protocol",
                        "http-enable-proxy-protocol")


# what to do instead, for the refused features configs use most
_REFUSAL_HINTS = {
    "emperor": "run one uzerg per app under systemd or another supervisor",
    "vassal": "run one uzerg per app under systemd or another supervisor",
    "legion": "uzerg has no legions: run one instance where the lord would be",
    "gevent": "uzerg runs synchronous workers x threads, not gevent's loop; long-lived "
              "connections would starve it: size processes/threads and remove the line knowingly",
    "http-websockets": "uzerg has no WebSocket support",
    "route": "do the routing in the front proxy (nginx)",
    "hook": "run that step in your deployment or supervisor",
    "exec": "run that step in your deployment or supervisor",
    "mules": "mules without a script are driven through the uwsgi module's "
             "uwsgi.mule_msg() and signals, which uzerg does not provide yet; give each mule "
             "a script: mule = worker.py",
    "farm": "a farm groups mules that receive uwsgi.mule_msg() messages, from the uwsgi "
            "module, which uzerg does not provide yet; give each mule a script: "
            "mule = worker.py",
    "mule": "this tunes the uwsgi module's mule messages and signals, which uzerg does not "
            "provide yet; script mules (mule = worker.py) need no tuning",
    "spooler": "run background work in a separate process",
    "https": "terminate TLS in the front proxy",
    "ssl": "terminate TLS in the front proxy",
    "enable-proxy-protocol": "uzerg's HTTP reader does not take the PROXY protocol line: "
                             "have the proxy send X-Forwarded-For instead",
    "http-enable-proxy-protocol": "uzerg's HTTP reader does not take the PROXY protocol line: "
                                  "have the proxy send X-Forwarded-For instead",
    "need-plugin": "uzerg cannot load uWSGI's C plugins, and uWSGI exits when a need-plugin "
                   "does not load",
    "need-plugins": "uzerg cannot load uWSGI's C plugins, and uWSGI exits when a need-plugin "
                    "does not load",
}


# tuning options that stay warnings: what uzerg does instead (issue 10)
INSTEAD = {
    "offload-threads": "uzerg's workers send files themselves with sendfile()",
    "offload-thread": "uzerg's workers send files themselves with sendfile()",
    "cpu-affinity": "uzerg leaves the placement of workers on CPUs to the kernel's scheduler",
    "procname": "uzerg names its processes with auto-procname/procname-prefix",
    "touch-logreopen": "reopen the logs with the master fifo's 'l' or a reload",
    # a plugin that does not load: uWSGI logs it and goes on (need-plugin exits: an error)
    "plugin": "uzerg cannot load uWSGI's C plugins and goes on without it, as uWSGI does "
              "with a plugin it cannot load",
    "plugins": "uzerg cannot load uWSGI's C plugins and goes on without them, as uWSGI does "
               "with a plugin it cannot load",
    "cap": "uzerg binds its sockets before dropping privileges and keeps them across reloads",
    "reload-mercy": "uzerg gives each stopping worker worker-reload-mercy seconds (default 60) "
                    "before SIGKILL",
    "harakiri-verbose": "uzerg logs each harakiri with the worker's id and pid",
    "limit-as": "uzerg sets no address-space limit: recycle big workers with reload-on-rss",
    "reload-on-as": "uzerg recycles workers on resident memory: use reload-on-rss",
    "reload-on-uss": "uzerg recycles workers on resident memory: use reload-on-rss",
    "reload-on-pss": "uzerg recycles workers on resident memory: use reload-on-rss",
    "max-requests-delta": "uzerg recycles each worker after exactly max-requests requests",
    "logformat-strftime": "uzerg writes log-format as given: use %(ltime) or %(ftime) for dates",
    "log-format-strftime": "uzerg writes log-format as given: use %(ltime) or %(ftime) for "
                           "dates",
    "http-connect-timeout": "uzerg has no HTTP router: its workers serve HTTP directly",
    "file-serve-mode": "uzerg's workers send files themselves with sendfile()",
    "ksm": "uzerg leaves page merging to the kernel's defaults",
    "pcre-jit": "uzerg has no PCRE regexps to compile",
    "no-defer-accept": "uzerg sets TCP_DEFER_ACCEPT on its TCP sockets (socket-timeout seconds)",
    "http-auto-chunked": "uzerg itself chunks an HTTP/1.1 keep-alive response that has no "
                         "Content-Length",
    "chunked-input-timeout": "uzerg reads request bodies, chunked ones included, with "
                             "socket-timeout",
    "no-threads-wait": "a stopping uzerg worker lets its threads finish, within "
                       "worker-reload-mercy",
    "py-call-uwsgi-fork-hooks": "uzerg forks with os.fork(), which always runs the hooks of "
                                "os.register_at_fork",
    "logfile-chmod": "uzerg creates log files with mode 0640 (less the umask)",
    "log-drain": "uzerg logs every line: filter in the log collector",
    "log-filter": "uzerg logs every line: filter in the log collector",
}


def refusal_hint(name: str) -> str:
    """A short suggestion for a refused option, or ""."""
    for prefix, hint in _REFUSAL_HINTS.items():
        if _prefixed(name, [prefix]):
            return hint
    return ""


def _prefixed(name: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(name == p or name.startswith(p + "-") for p in prefixes)


def is_uwsgi_option(name: str) -> bool:
    return name in _known()


def plugins_are_python(value: str) -> bool:
    """True when a ``plugins`` value names only Python plugins (``python3``, ``python311``...)."""
    names = [n.strip() for n in value.replace(",", " ").split() if n.strip()]
    return all(_python_plugin(n) for n in names)


def _python_plugin(name: str) -> bool:
    base = name.rsplit("/", 1)[-1].removesuffix("_plugin.so").removesuffix(".so")
    stripped = base.rstrip("0123456789_.")
    return stripped in PYTHON_PLUGINS


def classify(name: str, value: str) -> Severity:
    """What to do with a known uWSGI option uzerg lacks (``name`` must be in KNOWN)."""
    if name == "cap":  # keep capabilities past the uid drop: only binding is done otherwise
        caps = {c.strip().lower() for c in value.split(",") if c.strip()}
        return "warning" if caps and caps <= {"net_bind_service"} else "error"
    if name in ("need-plugin", "need-plugins"):  # uWSGI exits when one does not load
        return "silent" if plugins_are_python(value) else "error"
    if name in ("plugins", "plugin", "plugins-dir", "plugin-dir", "plugin-list",
                "plugins-list", "autoload"):
        if name.endswith(("-dir", "-list")) or name == "autoload" or plugins_are_python(value):
            return "silent"
        return "warning"
    if _prefixed(name, _ERROR_PREFIXES) or _prefixed(name, _MORE_ERROR_PREFIXES):
        return "error"
    return "warning"


def closest(name: str, candidates: list[str]) -> str | None:
    """The known option name closest to a mistyped key (difflib), or None."""
    import difflib  # only for a mistake: not on every start-up

    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return matches[0] if matches else None
