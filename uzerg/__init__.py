"""uzerg: a uWSGI-compatible pre-fork WSGI server built around Zerg mode."""

__version__ = "0.1.0"
