"""What the static-file options decide about a file found by `static-map`/`check-static`: its
content type (`mimefile`), whether a precompressed twin is sent instead (`static-gzip*`), its
`Expires` (`static-expires*`), and whether it may be served at all (`static-skip-ext`,
`static-safe`).

As uWSGI 2.0 (core/static.c), with these differences, each saying why:
- `Accept-Encoding` is parsed (a coding with `q=0` is refused; uWSGI looks for the substring
  "gzip" or "br" anywhere in the header);
- a file that has a compressed twin is sent with `Vary: Accept-Encoding`, whichever variant
  goes out, so that a cache in front never hands the gzip bytes to a client that did not ask
  (uWSGI sends no Vary);
- at most one `Expires` (uWSGI can send one per option family that matches); the file-name
  regexps see the file's own path, not its `.gz` twin's;
- a relative `static-gzip-dir` or `static-safe` is taken from the working directory (uWSGI
  compares it with absolute paths, where it can never match).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from uzerg.config.model import Config
from uzerg.logs import get_logger
from uzerg.record import record, replace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger()

# mtime -> its HTTP date (formatdate: ~5 us a call; a site has few distinct mtimes)
_LAST_MODIFIED: dict[float, str] = {}

# (Content-Encoding, suffix of the twin) in the order uWSGI tries them
_CODINGS = (("br", ".br"), ("gzip", ".gz"))


@record(frozen=True, slots=True)
class StaticFile:
    path: str  # the file sent: FILE, or its FILE.gz/FILE.br twin
    size: int
    mtime: float
    content_type: str
    encoding: str = ""  # Content-Encoding of a twin sent instead of the file
    vary: bool = False  # the file has a twin: the response depends on Accept-Encoding
    source: str = ""  # the file itself when its twin is sent

    # one per request: written out, as dataclass compiles it (record's is generic, slower)
    def __init__(self, path: str, size: int, mtime: float, content_type: str,
                 encoding: str = "", vary: bool = False, source: str = "") -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "mtime", mtime)
        object.__setattr__(self, "content_type", content_type)
        object.__setattr__(self, "encoding", encoding)
        object.__setattr__(self, "vary", vary)
        object.__setattr__(self, "source", source)

    @property
    def name(self) -> str:
        """The file's own path (not its twin's): what the file-name rules see."""
        return self.source or self.path

    @property
    def last_modified(self) -> str:
        found = _LAST_MODIFIED.get(self.mtime)
        if found is None:
            from email.utils import formatdate  # see static.load_file_support()

            found = formatdate(self.mtime, usegmt=True)
            if len(_LAST_MODIFIED) >= 4096:
                _LAST_MODIFIED.clear()
            _LAST_MODIFIED[self.mtime] = found
        return found

    def not_modified_since(self, header: str | None) -> bool:
        if not header:
            return False
        try:
            from email.utils import parsedate_to_datetime

            since = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(self.mtime) <= since


def accepted_codings(header: str | None) -> frozenset[str]:
    """The content codings an Accept-Encoding header accepts (lower case, q > 0)."""
    if not header:
        return frozenset()
    found = set()
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if coding and q > 0:
            found.add(coding)
    return frozenset(found)


def _absolute(path: str) -> str:
    """An absolute path as written; a relative one from the working directory, resolved, with
    its trailing slash kept (these are prefixes compared as text, as uWSGI does)."""
    if os.path.isabs(path):
        return path
    resolved = os.path.realpath(path)
    return resolved + "/" if path.endswith("/") else resolved


def read_mime_files(paths: tuple[str, ...]) -> dict[str, str]:
    """extension → content type from mime.types files (later files win). A file that cannot
    be read is logged (uWSGI's line) and skipped."""
    types: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            log.error(f"!!! no {path} file found !!!", event_kind="mimefile_missing")
            continue
        for line in lines:
            fields = line.split("#", 1)[0].split()
            for ext in fields[1:]:
                types[ext] = fields[0]
    return types


class StaticRules:
    """The static-file options of one instance; built once per worker (after chdir)."""

    def __init__(self, config: Config) -> None:
        self.index = config.static_index
        self.skip_ext = tuple(config.static_skip_ext)
        self.safe = tuple(_absolute(p) for p in config.static_safe)
        self.gzip_all = config.static_gzip_all
        self.gzip_dirs = tuple(_absolute(p) for p in config.static_gzip_dir)
        self.gzip_exts = tuple(config.static_gzip_ext)
        self.gzip_res = tuple(re.compile(p) for p in config.static_gzip)
        self.gzip = bool(self.gzip_all or self.gzip_dirs or self.gzip_exts or self.gzip_res)
        self.mime = read_mime_files(config.mimefile)
        # (regexp, seconds, from mtime) per family, tried in uWSGI's order; types apart
        rx = [(config.static_expires, config.static_expires_mtime),
              (config.static_expires_path_info, config.static_expires_path_info_mtime),
              (config.static_expires_uri, config.static_expires_uri_mtime)]
        self.expires_rx = tuple(
            tuple([(re.compile(p), s, False) for p, s in now]
                  + [(re.compile(p), s, True) for p, s in mtime])
            for now, mtime in rx
        )
        self.expires_types = tuple(
            [(t, s, False) for t, s in config.static_expires_type]
            + [(t, s, True) for t, s in config.static_expires_type_mtime])
        self.expires = bool(self.expires_types or any(self.expires_rx))

    def skipped(self, name: str) -> bool:
        """static-skip-ext: a PATH_INFO or file name ending so is left to the app."""
        return bool(self.skip_ext) and name.endswith(self.skip_ext)

    def is_safe(self, path: str) -> bool:
        return any(path.startswith(p) for p in self.safe)

    def content_type(self, path: str) -> str:
        if self.mime:
            ext = path.rpartition(".")[2] if "." in os.path.basename(path) else ""
            found = self.mime.get(ext) or self.mime.get(ext.lower())
            if found:
                return found
        import mimetypes  # see static.load_file_support()

        return mimetypes.guess_type(path)[0] or "application/octet-stream"

    def _wants_twin(self, path: str) -> bool:
        return (self.gzip_all or path.startswith(self.gzip_dirs)
                or (bool(self.gzip_exts) and path.endswith(self.gzip_exts))
                or any(r.search(path) for r in self.gzip_res))

    def variant(self, found: StaticFile, accept_encoding: str | None,
                within: Callable[[str], bool]) -> StaticFile:
        """`found`, or its FILE.br / FILE.gz twin when the gzip rules cover it and the client
        accepts that coding. `within(path)`: whether a twin's real path may be served."""
        if not self.gzip or not self._wants_twin(found.path):
            return found
        accepted = accepted_codings(accept_encoding)
        vary = False
        for coding, suffix in _CODINGS:
            twin = found.path + suffix
            try:
                st = os.stat(twin)
            except (OSError, ValueError):
                continue
            if not os.path.isfile(twin) or not within(os.path.realpath(twin)):
                continue
            vary = True
            if coding in accepted:
                return replace(found, path=twin, size=st.st_size, mtime=st.st_mtime,
                               encoding=coding, vary=True, source=found.path)
        return replace(found, vary=vary) if vary else found

    def expires_header(self, env: dict[str, Any], sent: StaticFile) -> str | None:
        """The Expires value of a file about to be sent, or None."""
        subjects = (sent.name, env.get("PATH_INFO") or "", env.get("REQUEST_URI") or "")
        for rules, subject in zip(self.expires_rx, subjects, strict=True):
            for pattern, seconds, from_mtime in rules:
                if pattern.search(subject):
                    return _http_date(sent.mtime if from_mtime else time.time(), seconds)
        for ctype, seconds, from_mtime in self.expires_types:
            if ctype == sent.content_type:
                return _http_date(sent.mtime if from_mtime else time.time(), seconds)
        return None


def _http_date(base: float, seconds: int) -> str:
    from email.utils import formatdate

    return formatdate(int(base) + seconds, usegmt=True)
