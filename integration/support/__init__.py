"""Support package of the integration tests: every helper is defined once, here.

Import from the module that does the job, e.g. ``from support.processes import wait_until``.
``integration/`` is on ``sys.path`` through ``pythonpath = ["integration"]`` in pyproject.toml's
pytest section, so this works under plain pytest, under tox, and for the unit tests in
``tests/`` too (they use ``free_port``, ``wait_until`` and ``unique_abstract``, and start no
processes). integration/conftest.py imports the fixtures (``uzerg``, ``app_file``,
``processes``, ``start_uzerg``, ``start_uwsgi``), so test modules just ask for them.

``processes``: starting and stopping processes. ``InstanceStarter``/``Instance`` (the ``uzerg``
fixture) run ``python -m uzerg`` in its own session with its log in tmp_path, and wait with
deadlines for log lines, bound addresses, workers and exit; ``Processes`` (the ``processes``
fixture) runs any other program the same way. Everything started is killed by pid at teardown
(``kill_with_children`` for one process tree). Also: ``wait_until`` (the one polling loop),
``free_port``, ``unique_abstract`` (an ``@name`` no other run holds), ``pids_of`` (worker pids),
``start_zerg`` (a zerg instance attached to zerg servers or pools), ``io_counters``
(/proc/PID/io), ``python_for_nobody``, the WSGI app writers ``write_app``,
``write_version_app`` and ``write_mount_app``, and the paths ``REPO`` and ``APPS``.

``clients``: our own clients over raw sockets, run in the test process: ``http_get``,
``http_request``, ``read_one_response``, ``seconds_until_closed``, ``send_and_read_to_close``
(send raw bytes, half-close, read to the server's close), ``uwsgi_request``,
``uwsgi_get``, ``get`` (the body of a 200 over either protocol), ``answering_pid``,
``read_stats``, ``connect_to`` (``host:port``, unix path or ``@abstract``), ``parse_reply``,
``read_all``, and ``ClientLoop``, threads doing requests back to back through a scenario.

``peers``: the real programs uzerg works with. nginx in front of a server (``running_nginx``,
``write_nginx_config``, ``stop_nginx``, ``nginx_available``); the real ``uwsgi`` binary beside
uzerg (the ``start_uwsgi`` and ``start_uzerg`` fixtures, both returning a ``Server`` whose
first socket answers); client programs such as curl and uwsgi_curl (``run_client``);
uwsgitop, a curses program, on a pseudo-terminal (``read_uwsgitop_screen``).

``netns``: network + mount namespaces (``Namespaces``, ``Namespace``, ``require_namespaces``,
``start_client_loop``) so that the documentation's configs run unchanged, fixed addresses,
ports and /tmp paths included, without touching the host. Run by path, it is also the client
used inside a namespace.

``activator``: a small fake systemd: ``Activator`` binds listening sockets and execs uzerg with
them as descriptors 3, 4, ... and ``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES``;
``NotifyListener`` is the datagram ``NOTIFY_SOCKET`` that collects ``sd_notify`` messages.

``emperor``: the Emperor and Broodlord tests' helpers: ``start_emperor`` (an Emperor with a
stats socket), ``emperor_stats``, ``stats_when_up``, ``vassals_named``, ``wait_vassal_pid``,
``json_events`` and ``event_time`` (a ``--log-json`` log's events and their times), ``touch``
(a later mtime).

``zerg_server``: a script, not a module to import: ``python support/zerg_server.py ADDR N``
serves N fresh TCP listeners on a uzerg ZergServer, for the interop tests with real uWSGI.
"""
