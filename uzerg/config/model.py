"""``Config``: the resolved configuration, frozen and typed, one attribute per option.

Its fields mirror the option table (``uzerg.config.options``; a test checks that they match):
the name with ``-`` → ``_``, the type its parser returns, the value of an option not set.
Build one with ``load_config`` (or ``Config()`` for the defaults, plus ``uzerg.record.replace``).
"""

from __future__ import annotations

from uzerg.record import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: not imported at run time (issue 13)
    from typing import Any

    from uzerg.config.ini import Origin
    from uzerg.config.log_values import EncoderSpec, LoggerSpec, RouteSpec
    from uzerg.config.service_values import CronSpec, DaemonSpec, TlsSocketSpec
    from uzerg.config.values import Protocol, ZergPoolEntry

__all__ = ["Config"]


# not slotted: a class with ~240 slots costs ~1.1M instructions more to build at every start
# (issue 13); one Config is built, and read only at start-up
@record(frozen=True)
class Config:
    """The resolved configuration: one attribute per option (``-`` → ``_``)."""

    master: bool = False
    processes: int = 1
    threads: int = 1
    enable_threads: bool = False
    module: str | None = None
    wsgi_file: str | None = None
    callable: str = "application"
    chdir: str | None = None
    pythonpath: tuple[str, ...] = ()
    home: str | None = None
    env: tuple[str, ...] = ()
    lazy_apps: bool = False
    need_app: bool = False
    single_interpreter: bool = False
    mount: tuple[str, ...] = ()
    python_import: tuple[str, ...] = ()
    shared_import: tuple[str, ...] = ()
    pymodule_alias: tuple[str, ...] = ()
    eval: str | None = None
    paste: str | None = None
    paste_logger: bool = False
    chdir2: str | None = None
    pyargv: str | None = None
    optimize: int = 0
    py_autoreload: int = 0
    manage_script_name: bool = False
    uid: str | None = None
    gid: str | None = None
    auto_procname: bool = False
    procname_prefix: str | None = None
    procname_prefix_spaced: str | None = None
    cheaper: int = 0
    cheaper_initial: int = 0
    cheaper_algo: str = "spare"
    cheaper_step: int = 1
    cheaper_overload: int = 3
    cheaper_idle: int = 10
    cheaper_rss_limit_soft: int = 0
    cheaper_rss_limit_hard: int = 0
    cheaper_algo_list: bool = False
    cheaper_busyness_max: int = 50
    cheaper_busyness_min: int = 25
    cheaper_busyness_multiplier: int = 10
    cheaper_busyness_penalty: int = 2
    cheaper_busyness_verbose: bool = False
    cheaper_busyness_backlog_alert: int = 33
    cheaper_busyness_backlog_multiplier: int = 3
    cheaper_busyness_backlog_step: int = 1
    cheaper_busyness_backlog_nonzero: int = 60
    socket: tuple[str, ...] = ()
    http_socket: tuple[str, ...] = ()
    http11_socket: tuple[str, ...] = ()
    http: tuple[str, ...] = ()
    https_socket: tuple[TlsSocketSpec, ...] = ()
    https: tuple[TlsSocketSpec, ...] = ()
    https2: tuple[TlsSocketSpec, ...] = ()
    ssl_option: tuple[int, ...] = ()
    ssl_tmp_dir: str | None = None
    ssl_verbose: bool = False
    https_export_cert: bool = False
    shared_socket: tuple[str, ...] = ()
    undeferred_shared_socket: tuple[str, ...] = ()
    http_to_https: tuple[str, ...] = ()
    http_to: tuple[str, ...] = ()
    protocol: Protocol | None = None
    listen: int = 100
    chmod_socket: int | None = None
    chown_socket: str | None = None
    vacuum: bool = False
    reuse_port: bool = False
    thunder_lock: bool = False
    buffer_size: int = 4096
    socket_timeout: int = 4
    http_timeout: int = 4
    http_headers_timeout: int = 0
    max_pending_heads: int = 1000
    http_keepalive: bool = False
    post_buffering: int = 0
    zerg: tuple[str, ...] = ()
    zerg_server: str | None = None
    zerg_fallback: bool = False
    zergpool: tuple[ZergPoolEntry, ...] = ()
    zerg_timeout: int = 10
    zerg_allow_uid: tuple[str, ...] = ()
    zerg_allow_gid: tuple[str, ...] = ()
    zerg_wait: int = 0
    harakiri: int = 0
    max_requests: int = 0
    max_worker_lifetime: int = 0
    max_worker_lifetime_delta: int = 0
    reload_on_rss: int = 0
    worker_reload_mercy: int = 60
    max_fd: int = 0
    no_orphans: bool = False
    die_on_term: bool = False
    touch_reload: tuple[str, ...] = ()
    touch_chain_reload: tuple[str, ...] = ()
    pidfile: str | None = None
    pidfile2: str | None = None
    daemonize: str | None = None
    master_fifo: tuple[str, ...] = ()
    takeover: str | None = None
    takeover_stop: bool = False
    start_paused: bool = False
    hook_asap: tuple[str, ...] = ()
    exec_asap: tuple[str, ...] = ()
    call_asap: tuple[str, ...] = ()
    hook_as_root: tuple[str, ...] = ()
    exec_as_root: tuple[str, ...] = ()
    call_as_root: tuple[str, ...] = ()
    hook_as_user: tuple[str, ...] = ()
    exec_as_user: tuple[str, ...] = ()
    call_as_user: tuple[str, ...] = ()
    hook_as_user_atexit: tuple[str, ...] = ()
    exec_as_user_atexit: tuple[str, ...] = ()
    call_as_user_atexit: tuple[str, ...] = ()
    hook_pre_app: tuple[str, ...] = ()
    exec_pre_app: tuple[str, ...] = ()
    call_pre_app: tuple[str, ...] = ()
    hook_post_app: tuple[str, ...] = ()
    exec_post_app: tuple[str, ...] = ()
    call_post_app: tuple[str, ...] = ()
    hook_post_fork: tuple[str, ...] = ()
    hook_accepting: tuple[str, ...] = ()
    hook_accepting_once: tuple[str, ...] = ()
    hook_accepting1: tuple[str, ...] = ()
    hook_accepting1_once: tuple[str, ...] = ()
    hook_master_start: tuple[str, ...] = ()
    hook_as_mule: tuple[str, ...] = ()
    hook_touch: tuple[str, ...] = ()
    attach_daemon: tuple[DaemonSpec, ...] = ()
    attach_control_daemon: tuple[DaemonSpec, ...] = ()
    smart_attach_daemon: tuple[DaemonSpec, ...] = ()
    smart_attach_daemon2: tuple[DaemonSpec, ...] = ()
    attach_daemon2: tuple[DaemonSpec, ...] = ()
    mule: tuple[str, ...] = ()
    mule_reload_mercy: int = 60
    touch_mules_reload: tuple[str, ...] = ()
    daemons_honour_stdin: bool = False
    cron: tuple[CronSpec, ...] = ()
    unique_cron: tuple[CronSpec, ...] = ()
    cron2: tuple[CronSpec, ...] = ()
    cron_harakiri: int = 0
    check_static: tuple[str, ...] = ()
    wsgi_disable_file_wrapper: bool = False
    idle: int = 0
    die_on_idle: bool = False
    cheap: bool = False
    emperor: tuple[str, ...] = ()
    emperor_pidfile: str | None = None
    emperor_stats: str | None = None
    emperor_tyrant: bool = False
    emperor_freq: int = 3
    emperor_throttle: int = 1000
    emperor_max_throttle: int = 180000
    emperor_required_heartbeat: int = 30
    emperor_broodlord: int = 0
    emperor_broodlord_standby: int = 0
    emperor_wrapper: str | None = None
    emperor_graceful_shutdown: bool = False
    vassals_include: tuple[str, ...] = ()
    vassals_inherit: tuple[str, ...] = ()
    vassal_set: tuple[str, ...] = ()
    heartbeat: int = 0
    vassal_sos: int = 0
    vassal_sos_backlog: int = 0
    static_map: tuple[str, ...] = ()
    add_header: tuple[tuple[str, str], ...] = ()
    del_header: tuple[str, ...] = ()
    static_map2: tuple[str, ...] = ()
    check_static_docroot: bool = False
    static_index: tuple[str, ...] = ()
    static_skip_ext: tuple[str, ...] = ()
    static_safe: tuple[str, ...] = ()
    mimefile: tuple[str, ...] = ()
    static_gzip_all: bool = False
    static_gzip_dir: tuple[str, ...] = ()
    static_gzip_ext: tuple[str, ...] = ()
    static_gzip: tuple[str, ...] = ()
    static_expires_type: tuple[tuple[str, int], ...] = ()
    static_expires_type_mtime: tuple[tuple[str, int], ...] = ()
    static_expires: tuple[tuple[str, int], ...] = ()
    static_expires_mtime: tuple[tuple[str, int], ...] = ()
    static_expires_uri: tuple[tuple[str, int], ...] = ()
    static_expires_uri_mtime: tuple[tuple[str, int], ...] = ()
    static_expires_path_info: tuple[tuple[str, int], ...] = ()
    static_expires_path_info_mtime: tuple[tuple[str, int], ...] = ()
    logto: str | None = None
    disable_logging: bool = False
    log_format: str | None = None
    log_4xx: bool = False
    log_5xx: bool = False
    memory_report: bool = False
    stats: str | None = None
    stats_http: bool = False
    stats_prometheus: str | None = None
    logger: tuple[LoggerSpec, ...] = ()
    req_logger: tuple[LoggerSpec, ...] = ()
    log_route: tuple[RouteSpec, ...] = ()
    log_req_route: tuple[RouteSpec, ...] = ()
    log_encoder: tuple[EncoderSpec, ...] = ()
    log_req_encoder: tuple[EncoderSpec, ...] = ()
    log_master: bool = False
    log_master_bufsize: int = 8192
    log_master_stream: bool = False
    logto2: str | None = None
    log_date: str | None = None
    log_reopen: bool = False
    log_maxsize: int = 0
    log_backupname: str | None = None
    log_x_forwarded_for: bool = False
    log_slow: int = 0
    log_big: int = 0
    log_zero: bool = False
    log_sendfile: bool = False
    log_ioerror: bool = False
    ignore_sigpipe: bool = False
    ignore_write_errors: bool = False
    disable_write_exception: bool = False
    log_json: bool = False
    ini: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    strict: bool = False
    declare_option: tuple[str, ...] = ()
    declare_option2: tuple[str, ...] = ()
    print: tuple[str, ...] = ()
    show_config: bool = False
    check_config: bool = False
    version: bool = False
    help: bool = False
    reload: str | None = None
    stop: str | None = None
    pause: str | None = None
    resume: str | None = None
    rollback: str | None = None
    zerg_probe: tuple[str, ...] = ()
    zerg_status: str | None = None
    json: bool = False
    warnings: tuple[str, ...] = ()
    # canonical option name → where its (last) value came from, for every option that was set
    origins: dict[str, Origin] = field(default_factory=dict, compare=False)
    # canonical option names in the order they were first set (what --check-config prints)
    set_options: tuple[str, ...] = ()
    # canonical option name → the value as written (lists: every item), for --check-config
    shown: dict[str, Any] = field(default_factory=dict, compare=False)

    def values_of(self, option: str) -> tuple[str, ...]:
        """The values of a repeatable option named at run time (the hook phases: ``hook-asap``,
        ``exec-pre-app``...); everywhere else code reads the attribute itself."""
        values: tuple[str, ...] = getattr(self, option.replace("-", "_"))
        return values
