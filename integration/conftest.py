"""Fixtures shared by the integration tests, all from the ``support`` package:

``uzerg`` (an InstanceStarter: every process it started, and every child they had, is killed by
pid at teardown), ``app_file`` (a small WSGI app) and ``processes`` (other programs, stopped by
pid) from support.processes; ``start_uzerg`` and ``start_uwsgi`` (a server whose first socket
answers) from support.peers.
"""

from support.peers import start_uwsgi, start_uzerg
from support.processes import app_file, processes, uzerg

__all__ = ["app_file", "processes", "start_uwsgi", "start_uzerg", "uzerg"]
