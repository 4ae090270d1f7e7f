"""Where a locked artifact may come from: the rule every command applies before it
hands a lock's URLs to a downloader (install, restore --prefix, build, register,
export, lock --check; `lock` checks what it solved before writing it).

A lock travels without its spec (a registry restore, `install --lock FILE`), so the
rule is read from the lock itself: its `[inputs]` declare the conda channels, the
index URL (default https://pypi.org/simple) and the extra index URLs it was solved
from. When the spec is at hand, the lock may declare no source the spec does not.
docs/security.md ("File names and artifact sources") states the rule precisely:

- every URL is http(s) or file, with no credentials, no control character, space
  or backslash, and no `.` or `..` path segment (also percent-encoded);
- an http(s) URL's host is never link-local, unspecified, multicast or broadcast;
- a conda package's URL is under one of the declared channels (same scheme, host and
  port, and the channel's path as a prefix); a channel name is
  https://conda.anaconda.org/NAME, as the solver reads it;
- a PyPI package's URL is on the host of the index it records (`index`, which must be
  a declared index) or, without one, of any declared index; pypi.org's files are on
  files.pythonhosted.org (test.pypi.org's on test-files.pythonhosted.org);
- https is required unless the source itself is declared as http://;
- a file:// URL's real path (symlinks resolved) is inside a declared file:// channel
  directory, or inside a declared file:// index's directory (its parent, when the
  index directory is called `simple`);
- a Debian package (manager apt) is an http(s) URL of a `.deb` (no file://) under one
  of the archives the lock declares in `[inputs] apt-sources` (the base image's apt
  sources, whose signed indexes named it at lock time); its snapshot-url, if any, is
  an http(s) URL of a `.deb` too.
- a PyPI package found on a find-links page (`find-links`, which must be a declared
  page) is on that page's host (any path) or, for a file:// page, in its directory;
- a package mlenv built or fetched from a requirement of [pypi] dependencies
  (`source`, issue 13): `git` names a repository a git requirement declares
  (`git+REPO@COMMIT[#subdirectory=DIR]`, the commit and subdirectory those of the
  entry, REPO http(s) or file without credentials); `path` names a local package a
  path requirement declares (`.` or `./a/b`, no `..`), resolved inside the project by
  whoever builds it; `url` is exactly an archive URL a requirement declares. These
  URLs are never downloaded as such: a git or path wheel comes from the cache, the
  registry or a rebuild that must give the locked sha256.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

from .errors import LockError, MlenvError
from .runtime.checks import blocked_address, check_artifact, kind
from .runtime.secrets import scrub, strip_credentials
from .runtime.text import clip

DEFAULT_INDEX = "https://pypi.org/simple"
CHANNEL_ALIAS = "https://conda.anaconda.org/"  # rattler's default: a channel name is ALIAS/NAME
FILE_HOSTS = {"pypi.org": "files.pythonhosted.org", "test.pypi.org": "test-files.pythonhosted.org"}
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_PORTS = {"http": 80, "https": 443}
HINT = ("re-lock from a trusted mlenv.toml; a source must be declared in [conda] channels or [pypi] index-url / "
        "extra-index-urls / find-links / a dependency's git, URL or path (docs/security.md)")  # fmt: skip


class Source(NamedTuple):
    """One place artifacts may come from."""

    declared: str  # as the lock declares it (credentials stripped), for messages
    scheme: str  # http, https or file
    host: str = ""
    port: int = 0
    path: str = ""  # http(s): a path prefix ("" = any path on the host); file: the real directory


def _expand(url: str) -> str:
    """${VAR} in a declared source's host or path, from the environment (unset: kept)."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: os.environ.get(m.group(1), m.group(0)), url)


def _source(declared: str, url: str, *, prefix: bool, simple_parent: bool = False) -> Source | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _PORTS:
        try:
            port = parts.port or _PORTS[scheme]
        except ValueError:
            return None
        return Source(declared, scheme, (parts.hostname or "").lower(), port,
                      unquote(parts.path).rstrip("/") if prefix else "")  # fmt: skip
    if scheme == "file" and parts.netloc in ("", "localhost"):
        path = os.path.realpath(unquote(parts.path) or "/")
        if simple_parent and os.path.basename(path) == "simple":
            path = os.path.dirname(path)
        if os.path.dirname(path) == path:  # the root directory is no channel or index: it would allow any file
            return None
        return Source(declared, "file", path=path)
    return None


def channel_sources(channels) -> list[Source]:
    out = []
    for c in channels or []:
        if not isinstance(c, str) or not c:
            continue
        c = strip_credentials(c).rstrip("/")
        if "://" in c:
            url = c
        elif c.startswith(("/", "./", "../", "~")) or c in (".", ".."):
            url = "file://" + os.path.abspath(os.path.expanduser(c))  # as the solver reads a path: from the cwd
        else:
            url = CHANNEL_ALIAS + c
        src = _source(c, _expand(url), prefix=True)
        if src is not None:
            out.append(src)
    return out


def index_sources(index: str) -> list[Source]:
    """An index and its file host: the index's host (any path) or, for file://, its directory."""
    plain = strip_credentials(index).rstrip("/")
    src = _source(plain, _expand(plain), prefix=False, simple_parent=True)
    if src is None:
        return []
    out = [src]
    if src.scheme == "https" and src.host in FILE_HOSTS:
        out.append(Source(plain, "https", FILE_HOSTS[src.host], 443))
    return out


def declared_indexes(inputs: dict) -> list[str]:
    """The PyPI indexes a lock's [inputs] (or a spec's) declare, normalized."""
    index = inputs.get("index-url") or DEFAULT_INDEX
    extras = inputs.get("extra-index-urls") or []
    out = [index, *extras]
    return [strip_credentials(u).rstrip("/") for u in out if isinstance(u, str)]


def declared_find_links(inputs: dict) -> list[str]:
    return [strip_credentials(u) for u in inputs.get("find-links") or [] if isinstance(u, str)]


def declared_direct(inputs: dict) -> dict[str, set[str]]:
    """The git repositories, archive URLs and local paths [inputs] pypi-dependencies name
    (credentials stripped): {"git": {...}, "url": {...}, "path": {...}}."""
    from .reqforms import quick

    out: dict[str, set[str]] = {"git": set(), "url": set(), "path": set()}
    for dep in inputs.get("pypi-dependencies") or []:
        if isinstance(dep, str) and "@" in dep:
            found = quick(dep)
            if found:
                out[found[0]].add(strip_credentials(found[1]) if found[0] != "path" else found[1])
    return out


def declared(inputs: dict) -> set[str]:
    chans = [strip_credentials(c).rstrip("/") for c in inputs.get("channels") or [] if isinstance(c, str)]
    return ({f"conda channel {c}" for c in chans} | {f"PyPI index {i}" for i in declared_indexes(inputs)}
            | {f"find-links page {u}" for u in declared_find_links(inputs)})  # fmt: skip


def url_problem(url: str, parts: SplitResult | None = None) -> str | None:
    """What makes a locked URL unacceptable whatever the sources, or None."""
    if len(url) > 4096:
        return "is longer than 4096 characters"
    if _BAD_CHARS.search(url):
        return "contains a control character, a space or a backslash"
    parts = parts or urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http", "file"):
        return f"has the scheme {scheme or '(none)'}:// (mlenv downloads https://, http:// and file:// only)"
    if "@" in parts.netloc:
        return "carries credentials (a lock never does: they come from the environment or ~/.netrc)"
    path = unquote(parts.path)
    if "/." in path and any(seg in (".", "..") for seg in path.split("/")):
        return "has a . or .. path segment"
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            return "is not a local absolute file:// path"
        return None
    try:
        parts.port  # noqa: B018 - a port that is not a number raises
    except ValueError:
        return "has an invalid port"
    if not parts.hostname:
        return "has no host"
    why = blocked_address(parts.hostname) if parts.hostname[:1].isdigit() or ":" in parts.hostname else None
    return f"points at {why}" if why else None


def apt_url_problem(url: str) -> str | None:
    """What makes a Debian package's URL unacceptable, or None: the rules of every URL,
    and an http(s) URL of a .deb (apt mirrors serve over http; the sha256 is the check)."""
    parts = urlsplit(url)
    problem = url_problem(url, parts)
    if problem:
        return problem
    if parts.scheme.lower() not in _PORTS:
        return "is not an http(s) URL (a Debian package comes from an apt mirror)"
    if not unquote(parts.path).endswith(".deb"):
        return "does not name a .deb"
    return None


def matches(url: str, src: Source, parts: SplitResult | None = None) -> bool:
    parts = parts or urlsplit(url)
    scheme = parts.scheme.lower()
    if src.scheme == "file":
        if scheme != "file":
            return False
        real = os.path.realpath(unquote(parts.path))
        return real == src.path or real.startswith(src.path.rstrip("/") + "/")
    if scheme not in _PORTS or not (scheme == src.scheme or (src.scheme == "http" and scheme == "https")):
        return False
    if (parts.hostname or "").lower() != src.host or (parts.port or _PORTS[scheme]) != src.port:
        return False
    if not src.path:
        return True
    path = unquote(parts.path)
    return path == src.path or path.startswith(src.path + "/")


def apt_sources(inputs: dict) -> list[Source]:
    """The Debian archives an apt lock was resolved from (`[inputs] apt-sources`: the
    base image's own apt sources, whose signed indexes named every .deb; mlenv.apt)."""
    out = []
    for uri in inputs.get("apt-sources") or []:
        if isinstance(uri, str) and uri.startswith(("http://", "https://")):
            src = _source(uri.rstrip("/"), uri.rstrip("/"), prefix=True)
            if src is not None:
                out.append(src)
    return out


class Sources:
    """The sources a lock declares, ready for matching."""

    def __init__(self, inputs: dict):
        self.inputs = inputs
        self.channels = channel_sources(inputs.get("channels"))
        self.indexes = {i: index_sources(i) for i in declared_indexes(inputs)}  # declared index -> its sources
        self.pages = {u: find_links_sources(u) for u in declared_find_links(inputs)}  # find-links page -> its host/dir
        self.any_index = [s for srcs in self.indexes.values() for s in srcs] + [
            s for srcs in self.pages.values() for s in srcs
        ]
        self.apt = apt_sources(inputs)
        self._direct: dict[str, set[str]] | None = None

    @property
    def direct(self) -> dict[str, set[str]]:
        if self._direct is None:
            self._direct = declared_direct(self.inputs)
        return self._direct

    def allowed(self, pkg) -> list[Source]:
        if pkg.manager == "conda":
            return self.channels
        if pkg.manager == "apt":
            return self.apt
        page = pkg.get("find-links")
        if isinstance(page, str) and page:
            return self.pages.get(strip_credentials(page), [])
        recorded = pkg.get("index")
        if isinstance(recorded, str) and recorded:
            found = self.indexes.get(recorded) or self.indexes.get(recorded.rstrip("/"))
            return found if found is not None else self.indexes.get(strip_credentials(recorded).rstrip("/"), [])
        return self.any_index


def find_links_sources(page: str) -> list[Source]:
    """A find-links page's files: on its host (any path), or in its directory (file://)."""
    plain = strip_credentials(page)
    url = _expand(plain)
    if url.startswith("file:"):
        path = unquote(urlsplit(url).path)
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        src = _source(plain, "file://" + directory, prefix=True)
    else:
        src = _source(plain, url, prefix=False)
    return [src] if src is not None else []


_GIT_URL = re.compile(r"git\+(?P<repo>[a-z]+://[^@#\s]+)@(?P<commit>[0-9a-f]{40})(?:#subdirectory=(?P<sub>[^#\s]+))?\Z")
_REL_PATH = re.compile(r"\.(?:/[A-Za-z0-9._+-]+)*\Z")


def _direct_problem(pkg, sources: Sources) -> str | None:
    """Why a package built or fetched from a git / path / URL requirement may not be used."""
    source, url = pkg.get("source"), str(pkg.url)
    if source == "git":
        m = _GIT_URL.match(url)
        if (
            not m
            or m.group("commit") != pkg.get("commit")
            or (m.group("sub") or None) != (pkg.get("subdirectory") or None)
        ):
            return f"the git URL {clip(url, 200)} does not match its commit and subdirectory fields"
        repo = m.group("repo")
        problem = url_problem(repo)
        if problem or urlsplit(repo).scheme not in ("https", "http", "file"):
            return f"the repository {clip(repo, 200)} {problem or 'is not an https, http or file URL'}"
        if repo not in sources.direct["git"]:
            return f"the repository {clip(repo, 200)} is not one a [pypi] requirement declares"
        return None
    if source == "path":
        if not _REL_PATH.match(url) or any(seg == ".." for seg in url.split("/")):
            return f"the local path {clip(url, 200)} is not ./relative/path inside the project"
        rel = "." if url == "." else url[2:]
        if rel not in sources.direct["path"]:
            return f"the local path {clip(url, 200)} is not one a [pypi] requirement declares"
        return None
    if source == "url":
        problem = url_problem(url)
        if problem:
            return f"the URL {clip(url, 200)} {problem}"
        if url not in sources.direct["url"]:
            return f"the URL {clip(url, 200)} is not one a [pypi] requirement declares"
        return None
    return f"unknown source {clip(str(source), 40)!r}"


def _what(pkg) -> str:
    return f"{kind(pkg)} {clip(str(pkg.name), 80)} {clip(str(pkg.version), 40)}"


def check_sources(lock, spec=None, *, where: str = "mlenv.lock") -> None:
    """Refuse (LockError, one line) a lock with an artifact mlenv must not fetch: a bad
    file name or field (mlenv.runtime.checks.check_artifact), a bad URL, or a URL from no
    source the lock declares; with `spec`, also a lock declaring a source the spec does
    not. Nothing is downloaded or written."""
    inputs = lock.inputs if isinstance(lock.inputs, dict) else {}
    if spec is not None:
        from .spec import inputs_of

        extra = sorted(declared(inputs) - declared(inputs_of(spec)))
        if extra:
            raise LockError(f"{where} declares a source {spec.path.name} does not: {scrub(clip(extra[0], 200))}",
                            hint="re-lock (`mlenv lock`) from mlenv.toml; a lock may only use the sources its spec declares")  # fmt: skip
    sources = Sources(inputs)
    for pkg in lock.packages:
        try:
            check_artifact(pkg)
        except MlenvError as exc:
            raise LockError(f"{where}: {exc.message}", hint=exc.hint) from None
        url = pkg.url
        if pkg.manager == "pypi" and pkg.get("source") is not None:
            why = _direct_problem(pkg, sources)
            if why:
                raise LockError(f"{where}: {_what(pkg)}: {scrub(why)}; refusing to use this lock", hint=HINT)
            continue
        parts = urlsplit(url)
        problem = url_problem(url, parts)
        if problem:
            raise LockError(f"{where}: {_what(pkg)}: the URL {scrub(clip(url, 200))} {problem}; refusing to use this "
                            "lock", hint=HINT)  # fmt: skip
        if pkg.manager == "apt":
            for field_, value in (("URL", url), ("snapshot-url", pkg.get("snapshot-url") or "")):
                problem = apt_url_problem(value) if value else None
                if problem:
                    raise LockError(f"{where}: {_what(pkg)}: the {field_} {scrub(clip(value, 200))} {problem}; "
                                    "refusing to use this lock", hint=HINT)  # fmt: skip
        allowed = sources.allowed(pkg)
        if pkg.manager == "pypi" and not allowed:
            named = pkg.get("find-links") or pkg.get("index")
            what = "find-links page" if pkg.get("find-links") else "index"
            raise LockError(f"{where}: {_what(pkg)} names the {what} {scrub(clip(str(named), 200))}, which "
                            "the lock does not declare; refusing to use this lock", hint=HINT)  # fmt: skip
        if not any(matches(url, s, parts) for s in allowed):
            shown = scrub(clip(url, 200))
            names = ", ".join(sorted({s.declared for s in allowed})) or "none"
            what = {"conda": "channels", "apt": "Debian archives"}.get(pkg.manager, "indexes")
            raise LockError(f"{where}: {_what(pkg)}: {shown} is not from a source the lock declares "
                            f"({what}: {scrub(clip(names, 200))}); refusing to use this lock", hint=HINT)  # fmt: skip
