"""Artifacts by sha256: the content-addressed cache and verified downloads.

`<user cache>/mlenv/artifacts/sha256/<hex>` holds every artifact mlenv has
fetched (conda packages, wheels, sdists), named by its sha256 only. A file enters
the cache through a temporary name and is renamed into place only when its hash
matches; a cached file is hashed again whenever it is used (the cache is on disk,
and a disk is input like any other). Downloads run concurrently; credentials come
from credentialed index URLs held in memory (never from the lock) or ~/.netrc;
TLS is verified against the CA bundle given by the caller, else the default paths.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import InstallError
from .fsutil import link_or_copy
from .plan import Artifact

# What an artifact's file name may look like: installers need the real name (a
# wheel's tags, a conda package's extension), but it comes from a URL in a lock
# that may have come from someone else, so it must be one plain path component.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!~-]{0,254}\Z", re.ASCII)
# Wheels mlenv builds itself (mlenv.wheelbuild): their URL names the source (a git commit,
# a local path), not a download; they come from the cache, the registry or a rebuild.
BUILT_SOURCES = ("git", "path")


def default_cache_root() -> Path:
    """platformdirs.user_cache_dir("mlenv") where platformdirs is installed (the
    host), else $XDG_CACHE_HOME/mlenv or ~/.cache/mlenv (inside a build step)."""
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("mlenv"))
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "mlenv"


def artifact_cache_dir() -> Path:
    return default_cache_root() / "artifacts" / "sha256"


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_filename(artifact: Artifact) -> str:
    """The artifact's file name: its `filename` field (a wheel mlenv built from git or a
    local directory, whose URL names the source), else the last segment of its URL,
    percent-decoded; either must be one plain file name (no separator, no `..`, ASCII)."""
    given = artifact.get("filename")
    if isinstance(given, str) and given:
        name = given
    else:
        raw = artifact.url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1]
        name = unquote(raw)
    if not _FILENAME.match(name) or ".." in name:
        shown = name[:80].encode("unicode_escape").decode("ascii")
        raise InstallError(
            f"{kind(artifact)} {artifact.name}: its URL ends in {shown!r}, which is not a plain file name",
            hint="the lock was crafted or corrupted; re-lock from a trusted spec",
        )
    return name


def kind(artifact: Artifact) -> str:
    return {"conda": "conda package", "apt": "Debian package"}.get(artifact.manager, "PyPI package")


def mismatch(artifact: Artifact, got: str, where: str) -> InstallError:
    return InstallError(
        f"sha256 mismatch for {kind(artifact)} {artifact.name} {artifact.version}: "
        f"mlenv.lock says {artifact.sha256}, {where} has {got}",
        hint="the artifact or the lock was altered; re-lock (`mlenv lock --upgrade`) from a trusted channel or index",
    )


def _touch(path: Path) -> None:
    try:
        os.utime(path)  # last use, for `mlenv cache prune`
    except OSError:
        pass


def fetch_artifacts(
    artifacts: list[Artifact],
    *,
    cache: Path | None = None,
    files: Path | None = None,
    offline: bool = False,
    index_urls: tuple[str, ...] = (),
    artifact_url: str | None = None,
    ca_bundle: str | None = None,
    workers: int = 8,
    progress=None,
) -> dict[str, Path]:
    """sha256 -> a local file with exactly that content, for every artifact.

    Looked up in order: `files/<filename>` (a directory of local files), the cache
    (`cache/<sha256>`, hashed again), a file:// URL (hashed, then linked into the
    cache), a download (hashed while streamed; renamed into the cache only when it
    matches). `offline`: never download. `artifact_url` (an image build step): every
    artifact not found locally comes from ARTIFACT_URL<sha256>, mlenv's build-time
    artifact server on the build host (no credentials)."""
    cache = cache or artifact_cache_dir()
    out: dict[str, Path] = {}
    todo: list[Artifact] = []
    for art in artifacts:
        if art.sha256 in out:
            continue
        filename = artifact_filename(art)
        if files is not None and (files / filename).is_file():
            got = sha256_file(files / filename)
            if got != art.sha256:
                raise mismatch(art, got, f"the file {files / filename}")
            out[art.sha256] = files / filename
            continue
        cached = cache / art.sha256
        if cached.is_file():
            if sha256_file(cached) == art.sha256:
                out[art.sha256] = cached
                _touch(cached)
                continue
            cached.unlink(missing_ok=True)  # a damaged entry: fetched again below
        if artifact_url:
            todo.append(art)
            continue
        if art.get("source") in BUILT_SOURCES:
            raise InstallError(
                f"{kind(art)} {art.name} {art.version} is a wheel mlenv built from {art.get('source')} "
                f"({strip_userinfo(art.url)}) and it is not in {cache}",
                hint="`mlenv install` and `mlenv build` rebuild it from its source (or `mlenv restore NAME@V "
                     "--prefix` fetches it from the registry)",
            )
        parts = urlsplit(art.url)
        if parts.scheme == "file":
            local = Path(unquote(parts.path))
            if not local.is_file():
                raise InstallError(f"{kind(art)} file {local} not found", hint="is the local channel or index still there? re-lock")
            got = sha256_file(local)
            if got != art.sha256:
                raise mismatch(art, got, f"the file {local}")
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / f".{art.sha256}.{os.getpid()}.{threading.get_ident()}.part"
            link_or_copy(local, tmp)
            os.replace(tmp, cached)
            out[art.sha256] = cached
            continue
        if offline:
            raise InstallError(f"{kind(art)} {art.name} {art.version}: {filename} is not in {files or cache}",
                               hint="run without --offline, or fetch it first")
        todo.append(art)
    if todo:
        creds = credentials_by_host(index_urls)
        ctx = ssl_context(ca_bundle)
        cache.mkdir(parents=True, exist_ok=True)
        say = progress or (lambda msg: None)
        total = sum(a.size for a in todo)
        say(f"downloading {len(todo)} artifacts" + (f" ({total / 1e6:.1f} MB)" if total else ""))
        if len(todo) == 1 or workers <= 1:
            for art in todo:
                out[art.sha256] = download_verified(art, cache, creds, ctx, artifact_url)
        else:
            from concurrent.futures import ThreadPoolExecutor

            todo.sort(key=lambda a: -a.size)  # biggest first: the longest downloads start at once
            with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="mlenv-fetch") as pool:
                futures = [(art, pool.submit(download_verified, art, cache, creds, ctx, artifact_url)) for art in todo]
                error = None
                for art, fut in futures:
                    try:
                        out[art.sha256] = fut.result()
                    except InstallError as exc:
                        error = error or exc
                if error:
                    raise error
    return out


def ssl_context(ca_bundle: str | None = None):
    """Verification against ca_bundle if given, else the default paths (which honour
    SSL_CERT_FILE / SSL_CERT_DIR)."""
    import ssl

    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


def credentials_by_host(index_urls: tuple[str, ...]) -> dict[str, str]:
    """host[:port] -> 'user:password' from credentialed index URLs (held in memory only)."""
    out = {}
    for url in index_urls:
        parts = urlsplit(url)
        if parts.username and parts.hostname:
            out[parts.hostname + (f":{parts.port}" if parts.port else "")] = parts.netloc.rsplit("@", 1)[0]
    return out


def netrc_auth(host: str) -> str | None:
    import netrc

    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    if not entry:
        return None
    login, _, password = entry
    return f"{login or ''}:{password or ''}"


def strip_userinfo(text: str) -> str:
    """https://user:token@host/... -> https://host/... everywhere in a message."""
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s`'\"]*@", r"\1", text)


def download_verified(art: Artifact, cache: Path, creds: dict[str, str], ctx, artifact_url: str | None = None) -> Path:
    import base64
    import urllib.request

    url = artifact_url + art.sha256 if artifact_url else art.url
    parts = urlsplit(url)
    auth = None
    if artifact_url:
        creds = {}  # the build host's artifact server: no credentials, ever
    elif parts.username:  # never in a lock mlenv wrote, but a hand-made one may carry them
        auth = parts.netloc.rsplit("@", 1)[0]
        url = url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)
        parts = urlsplit(url)
    auth = auth or creds.get(parts.netloc) or creds.get(parts.hostname or "") or netrc_auth(parts.hostname or "")
    req = urllib.request.Request(url, headers={"User-Agent": "mlenv"})
    if auth:
        req.add_unredirected_header("Authorization", "Basic " + base64.b64encode(unquote(auth).encode()).decode())
    tmp = cache / f".{art.sha256}.{os.getpid()}.{threading.get_ident()}.part"
    h = hashlib.sha256()
    # the build host's artifact server is on 127.0.0.1: never through a proxy
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if artifact_url else None
    try:
        with (
            opener.open(req, timeout=120)
            if opener
            else urllib.request.urlopen(req, timeout=120, context=ctx if parts.scheme == "https" else None)
        ) as resp, open(tmp, "wb") as out:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
    except Exception as exc:  # URLError, HTTPError, SSL errors, timeouts, OSError
        tmp.unlink(missing_ok=True)
        text = strip_userinfo(str(exc))
        hint = None
        if "CERTIFICATE" in text.upper():
            hint = "a TLS-intercepting proxy? pass --ca-bundle FILE (or set MLENV_CA_BUNDLE / the ca-bundle setting)"
        elif re.search(r"\b(401|403)\b|Unauthorized|Forbidden", text):
            text = "the index refused the download (authentication): " + text
            hint = "put credentials in the spec's index URL as ${VAR}, in MLENV_INDEX_URL, or in ~/.netrc"
        raise InstallError(
            f"could not download {kind(art)} {art.name} {art.version} from {strip_userinfo(url)}: {text}", hint=hint
        ) from None
    got = h.hexdigest()
    if got != art.sha256:
        tmp.unlink(missing_ok=True)
        raise mismatch(art, got, f"the download from {strip_userinfo(url)}")
    dest = cache / art.sha256
    os.replace(tmp, dest)
    return dest


def named_links(artifacts: list[Artifact], found: dict[str, Path], directory: Path) -> Path:
    """directory/<filename> for each artifact (installers need the real file name)."""
    directory.mkdir(parents=True, exist_ok=True)
    for art in artifacts:
        src = found[art.sha256]
        dest = directory / artifact_filename(art)
        if src != dest:
            try:
                dest.symlink_to(src.absolute())  # the cache may be on another filesystem than the temp dir
            except OSError:
                link_or_copy(src, dest)
    return directory
