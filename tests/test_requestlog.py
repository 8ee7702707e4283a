"""The request log line: uWSGI's default shape, log-format variables, JSON mode."""

from __future__ import annotations

import io
import json
import os
import time

from config_helpers import make_config

from uzerg.logs import configure_logging, logs_requests, request_logger
from uzerg.serve.requestlog import RequestInfo, RequestLogger

# the environ real uWSGI 2.0.31 built for `curl http://127.0.0.1:9192/a/b?x=1` on --http-socket;
# it logged `{24 vars in 257 bytes}` for it
UWSGI_HTTP_ENVIRON = {
    "HTTP_ACCEPT": "*/*", "HTTP_HOST": "127.0.0.1:9192", "HTTP_USER_AGENT": "curl/7.88.1",
    "PATH_INFO": "/a/b", "QUERY_STRING": "x=1", "REMOTE_ADDR": "127.0.0.1",
    "REQUEST_METHOD": "GET", "REQUEST_URI": "/a/b?x=1", "SCRIPT_NAME": "", "SERVER_NAME": "vm",
    "SERVER_PORT": "9192", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
}


def info(**fields) -> RequestInfo:
    record = RequestInfo(dict(UWSGI_HTTP_ENVIRON), fields.pop("start", 1_800_000_000.25))
    record.status, record.body_size, record.header_size, record.header_count = 200, 11, 45, 1
    record.worker_requests, record.total_requests, record.micros = 1, 1, 1234
    for key, value in fields.items():
        setattr(record, key, value)
    return record


def test_default_line_matches_uwsgi_exactly():
    logger = RequestLogger(make_config(), 1, pid=5349)
    line = logger.format(info(start=time.mktime((2026, 11, 27, 18, 17, 43, 0, 0, -1))))
    assert line == (
        "[pid: 5349|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 257 bytes} "
        "[Fri Nov 27 18:17:43 2026] GET /a/b?x=1 => generated 11 bytes in 1 msecs "
        "(HTTP/1.1 200) 1 headers in 45 bytes (1 switches on core 0)"
    )


def test_uwsgi_packet_counts_are_used_when_known():
    logger = RequestLogger(make_config(), 1, pid=1)
    line = logger.format(info(var_count=16, var_size=172, worker_requests=3, total_requests=9,
                              core=2))
    assert "[pid: 1|app: 0|req: 3/9]" in line and "{16 vars in 172 bytes}" in line
    assert line.endswith("(1 switches on core 2)")


def test_missing_request_uri_falls_back_to_path_and_query():
    record = info()
    del record.environ["REQUEST_URI"]
    assert " GET /a/b?x=1 => " in RequestLogger(make_config(), 1).format(record)


def test_log_format_variables():
    fmt = ("%(addr) - %(user) [%(ltime)] \"%(method) %(uri) %(proto)\" %(status) %(size) "
           "%(msecs) %(micros) %(bogus) %(var.HTTP_HOST) %(var.NOPE) %(host) %(uagent) "
           "%(referer) %(cl) %(hsize) %(rsize) %(headers) %(core) %(switches) %(vars) "
           "%(pktsize) %(wid) %(pid) %(time) %(secs) %(metric.x) %% 100% %(")
    logger = RequestLogger(make_config(log_format=fmt), 7, pid=42)
    start = 1_800_000_000.25
    ltime = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(start))
    assert logger.format(info(start=start)) == (
        f"127.0.0.1 - - [{ltime}] \"GET /a/b?x=1 HTTP/1.1\" 200 56 1 1234 - 127.0.0.1:9192 - "
        "127.0.0.1:9192 curl/7.88.1 - 0 45 11 1 0 1 24 257 7 42 1800000000 0.001234 0 %% 100% %("
    )


def test_ctime_and_epoch_and_memory_variables():
    logger = RequestLogger(make_config(log_format="%(ctime)|%(epoch)|%(rssM)|%(vsz)"), 1)
    ctime, epoch, rss_m, vsz = logger.format(info(start=1_800_000_000)).split("|")
    assert ctime == time.ctime(1_800_000_000)
    assert abs(int(epoch) - time.time()) < 5
    assert int(rss_m) >= 1 and int(vsz) > 0


def test_wants_honours_disable_logging_and_4xx_5xx():
    assert RequestLogger(make_config(), 1).wants(200)
    quiet = RequestLogger(make_config(disable_logging=True, log_5xx=True), 1)
    assert not quiet.wants(200) and not quiet.wants(404) and quiet.wants(502)


def test_json_mode_adds_fields():
    buf = io.StringIO()
    configure_logging(json=True, stream=buf)
    try:
        RequestLogger(make_config(log_json=True), 3).log(info())
    finally:
        configure_logging()
    event = json.loads(buf.getvalue())
    assert event["event"].startswith(f"[pid: {os.getpid()}|app: 0|req: 1/1]")
    assert event["status"] == 200 and event["uri"] == "/a/b?x=1" and event["wid"] == 3


def test_http_environ_counts_vars_like_uwsgi_http_socket():
    from uzerg.protocols.http import parse_request_head
    from uzerg.serve.request import RequestHandler

    handler = RequestHandler(None, make_config(), 1)
    handler.environs.hostname = "vm"  # the host the reference line was taken on
    head = parse_request_head(
        b"GET /a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9192\r\nUser-Agent: curl/7.88.1\r\n"
        b"Accept: */*\r\n\r\n", 4096)
    env, count, size = handler._http_environ(head, ("127.0.0.1", 41000), "9192")
    assert (count, size) == (24, 257)  # uWSGI 2.0.31: {24 vars in 257 bytes}
    assert env["REMOTE_PORT"] == "41000"


def test_memory_report_prefixes_the_default_line_as_uwsgi():
    import re

    line = RequestLogger(make_config(memory_report=True), 1, pid=7).format(info())
    # uWSGI 2.0.31 --memory-report: `{address space usage: 61624320 bytes/58MB} {rss usage:
    # 19271680 bytes/18MB} [pid: ...`
    match = re.match(r"\{address space usage: (\d+) bytes/(\d+)MB\} "
                     r"\{rss usage: (\d+) bytes/(\d+)MB\} \[pid: 7\|", line)
    assert match, line
    vsz, vsz_mb, rss, rss_mb = map(int, match.groups())
    assert vsz >= rss > 0 and (vsz_mb, rss_mb) == (vsz // 1048576, rss // 1048576)


def test_memory_report_leaves_a_log_format_line_alone():
    logger = RequestLogger(make_config(memory_report=True, log_format="%(method) %(uri)"), 1)
    assert logger.format(info()) == "GET /a/b?x=1"


def test_the_direct_write_gives_the_same_line_as_format(tmp_path):
    from types import SimpleNamespace

    response = SimpleNamespace(body_size=11, header_count=1, header_size=45, via_sendfile=False)
    path = tmp_path / "log"
    with open(path, "w") as stream:
        configure_logging(stream=stream)
        try:
            for overrides, env_changes in (
                ({}, {}),
                ({"log_x_forwarded_for": True},
                 {"HTTP_X_FORWARDED_FOR": "10.0.0.1", "REMOTE_USER": "bob"}),
                ({}, {"REQUEST_URI": None}),
            ):
                logger = RequestLogger(make_config(**overrides), 1, pid=5349)
                assert logger._fast
                record = info(var_count=24, var_size=257, worker_requests=3, total_requests=9,
                              core=1, micros=2345)
                for key, value in env_changes.items():
                    if value is None:
                        del record.environ[key]
                    else:
                        record.environ[key] = value
                start = path.stat().st_size
                logger.log_request(record.environ, record.start, 2345, 200, response, 3, 9, 1,
                                   24, 257, 0, 0)
                stream.flush()
                assert path.read_text()[start:] == logger.format(record) + "\n"
        finally:
            configure_logging()


def test_the_direct_write_keeps_repeated_lines_apart(tmp_path):
    """log_request keeps the text of lines it wrote: a request that differs in any one value
    (or repeats one) still gets its own line, equal to format()'s, and what it keeps stays
    bounded."""
    from types import SimpleNamespace

    from uzerg.serve import requestlog

    path = tmp_path / "log"
    with open(path, "w") as stream:
        configure_logging(stream=stream)
        try:
            logger = RequestLogger(make_config(), 1, pid=5349)
            assert logger._fast
            variants = [
                {}, {"status": 404}, {"body_size": 12}, {"micros": 3001},
                {"header_count": 2}, {"header_size": 46}, {"core": 2}, {"var_count": 26},
                {"var_size": 258}, {"REQUEST_URI": "/other"}, {"REQUEST_METHOD": "POST"},
                {"REMOTE_ADDR": "10.1.1.1"}, {"REMOTE_USER": "ann"},
                {"SERVER_PROTOCOL": "HTTP/1.0"}, {}, {"status": 404},
            ]
            for number, changes in enumerate(variants * 2, 1):
                fields = {"status": 200, "body_size": 11, "micros": 2345, "header_count": 1,
                          "header_size": 45, "core": 1, "var_count": 24, "var_size": 257}
                fields.update({k: v for k, v in changes.items() if k in fields})
                record = info(worker_requests=number, total_requests=number + 7, **fields)
                record.environ.update({k: v for k, v in changes.items() if k not in fields})
                response = SimpleNamespace(
                    body_size=fields["body_size"], header_count=fields["header_count"],
                    header_size=fields["header_size"], via_sendfile=False)
                start = path.stat().st_size
                logger.log_request(record.environ, record.start, fields["micros"],
                                   fields["status"], response, number, number + 7,
                                   fields["core"], fields["var_count"], fields["var_size"], 0, 0)
                stream.flush()
                assert path.read_text()[start:] == logger.format(record) + "\n"
            assert len(logger._parts) == len(variants) - 2
            for number in range(requestlog._PARTS_KEPT + 5):
                record = info(var_count=24, var_size=257, worker_requests=1, total_requests=1)
                record.environ["REQUEST_URI"] = f"/{number}"
                logger.log_request(record.environ, record.start, 0, 200, response, 1, 1, 0,
                                   24, 257, 0, 0)
            assert len(logger._parts) <= requestlog._PARTS_KEPT
        finally:
            configure_logging()


def test_a_worker_gets_a_request_logger_exactly_when_a_line_can_be_written() -> None:
    # logs_requests decides from the configuration whether uzerg.serve.requestlog loads at all
    for argv in ([], ["--disable-logging"], ["--disable-logging", "--log-4xx"],
                 ["--disable-logging", "--log-5xx"], ["--disable-logging", "--log-slow", "100"],
                 ["--disable-logging", "--log-big", "1000"], ["--disable-logging", "--log-zero"],
                 ["--disable-logging", "--log-sendfile"], ["--disable-logging", "--log-ioerror"]):
        config = make_config("--socket", "127.0.0.1:0", *argv)
        assert logs_requests(config) == RequestLogger(config, 1).may_log, argv
        assert (request_logger(config, 1) is not None) == logs_requests(config), argv
    assert not logs_requests(make_config("--socket", "127.0.0.1:0", "--disable-logging"))
