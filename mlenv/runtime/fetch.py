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

from .cachedir import artifact_cache_dir, default_cache_root  # noqa: F401 - re-exported: one home, cachedir.py
from .checks import artifact_filename, blocked_address, check_artifact, kind
from .errors import InstallError, WriteError
from .fsutil import interrupts_held, link_or_copy, make_temp, sweep_temp_files
from .plan import Artifact
from .secrets import remember, scrub

# Wheels mlenv builds itself (mlenv.wheelbuild): their URL names the source (a git commit,
# a local path), not a download; they come from the cache, the registry or a rebuild.
BUILT_SOURCES = ("git", "path")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mismatch(artifact: Artifact, got: str | None, where: str) -> InstallError:
    """got None: a local file's hash is not printed (a lock must not make mlenv an
    oracle for the hashes of files on this machine)."""
    has = f"{where} has {got}" if got else f"{where} has other content"
    return InstallError(
        f"sha256 mismatch for {kind(artifact)} {artifact.name} {artifact.version}: mlenv.lock says {artifact.sha256}, {has}",
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
        filename = check_artifact(art)  # every artifact, before anything is read or written
        if art.sha256 in out:
            continue
        if files is not None and (files / filename).is_file():
            got = sha256_file(files / filename)
            if got != art.sha256:
                raise mismatch(art, None, f"the file {files / filename}")
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
                f"({scrub(art.url)}) and it is not in {cache}",
                hint="`mlenv install` and `mlenv build` rebuild it from its source (or `mlenv restore NAME@V "
                "--prefix` fetches it from the registry)",
            )
        parts = urlsplit(art.url)
        if parts.scheme == "file":
            local = Path(unquote(parts.path))
            if not local.is_file():
                raise InstallError(
                    f"{kind(art)} file {local} not found", hint="is the local channel or index still there? re-lock"
                )
            got = sha256_file(local)
            if got != art.sha256:
                raise mismatch(art, None, f"the file {local}")
            tmp = cache / f".{art.sha256}.{os.getpid()}.{threading.get_ident()}.part"
            try:
                cache.mkdir(parents=True, exist_ok=True)
                link_or_copy(local, tmp)
                os.replace(tmp, cached)
            except BaseException as exc:  # OSError; and interrupts: the name is ours from the start
                tmp.unlink(missing_ok=True)
                if not isinstance(exc, OSError):
                    raise
                raise exc if isinstance(exc, WriteError) else WriteError(cached, exc) from None
            out[art.sha256] = cached
            continue
        if offline:
            raise InstallError(
                f"{kind(art)} {art.name} {art.version}: {filename} is not in {files or cache}",
                hint="run without --offline, or fetch it first",
            )
        todo.append(art)
    if todo:
        creds = credentials_by_host(index_urls)
        ctx = ssl_context(ca_bundle)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(cache, exc) from None
        sweep_temp_files(cache)  # partial downloads of killed processes
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
    """host[:port] -> 'user:password' from credentialed index URLs (held in memory only;
    the passwords are remembered by the scrubber)."""
    out = {}
    for url in index_urls:
        parts = urlsplit(url)
        if parts.username and parts.hostname:
            userinfo = parts.netloc.rsplit("@", 1)[0]
            remember(parts.password or parts.username)
            out[parts.hostname + (f":{parts.port}" if parts.port else "")] = userinfo
    return out


def basic_authorization(userinfo: str) -> str:
    """The HTTP Basic Authorization header value for a URL's (percent-encoded) userinfo."""
    import base64

    return "Basic " + base64.b64encode(unquote(userinfo).encode()).decode()


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
    remember(password)
    return f"{login or ''}:{password or ''}"


def _redirect_handler():
    """Redirects of a download are checked like the first URL: no scheme change from
    https to http, no blocked address, http(s) only (urllib already refuses others)."""
    import urllib.request

    class Checked(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            old, new = urlsplit(req.full_url), urlsplit(newurl)
            why = None
            if new.scheme not in ("http", "https") or (old.scheme == "https" and new.scheme != "https"):
                why = f"a redirect from {old.scheme}:// to {new.scheme}://"
            elif blocked_address(new.hostname or ""):
                why = f"a redirect to {blocked_address(new.hostname or '')}"
            if why:
                raise InstallError(f"refused {why}: {scrub(req.full_url)} -> {scrub(newurl)}",
                                   hint="the index or channel redirects somewhere mlenv does not download from")  # fmt: skip
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return Checked()


def download_verified(art: Artifact, cache: Path, creds: dict[str, str], ctx, artifact_url: str | None = None) -> Path:
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
        req.add_unredirected_header("Authorization", basic_authorization(auth))
    h = hashlib.sha256()
    if blocked_address(parts.hostname or ""):
        raise InstallError(f"refused to download {kind(art)} {art.name} from {scrub(url)}: "
                           f"{blocked_address(parts.hostname or '')}", hint="re-lock from a trusted spec")  # fmt: skip
    if artifact_url:  # the build host's artifact server is on 127.0.0.1: never through a proxy
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _redirect_handler())
    else:  # the CA bundle also for a redirect from http to https
        opener = urllib.request.build_opener(_redirect_handler(), urllib.request.HTTPSHandler(context=ctx))
    fd, tmp = -1, None
    try:
        try:  # locked while written: `sweep_temp_files` removes it only once this process is gone
            with interrupts_held():  # the file exists only once `tmp` names it, for the finally below
                fd, tmp = make_temp(cache, art.sha256, ".part")
            os.chmod(tmp, 0o644)
        except OSError as exc:
            raise exc if isinstance(exc, WriteError) else WriteError(cache / art.sha256, exc) from None
        with opener.open(req, timeout=120) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                try:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                except OSError as exc:  # disk full: name the file, not the URL
                    raise WriteError(cache / art.sha256, exc) from None
        got = h.hexdigest()
        if got != art.sha256:
            raise mismatch(art, got, f"the download from {scrub(url)}")
        dest = cache / art.sha256
        try:
            os.replace(tmp, dest)  # still locked: a sweeper cannot take it in between
        except OSError as exc:
            raise WriteError(dest, exc) from None
        tmp = None  # renamed: nothing left to remove
        return dest
    except (InstallError, WriteError):
        raise
    except BaseException as exc:  # URLError, HTTPError, SSL errors, timeouts, OSError; and interrupts
        if not isinstance(exc, Exception):
            raise
        text = scrub(str(exc))
        hint = None
        if "CERTIFICATE" in text.upper():
            hint = "a TLS-intercepting proxy? pass --ca-bundle FILE (or set MLENV_CA_BUNDLE / the ca-bundle setting)"
        elif re.search(r"\b(401|403)\b|Unauthorized|Forbidden", text):
            text = "the index refused the download (authentication): " + text
            hint = "put credentials in the spec's index URL as ${VAR}, in MLENV_INDEX_URL, or in ~/.netrc"
        raise InstallError(
            f"could not download {kind(art)} {art.name} {art.version} from {scrub(url)}: {text}", hint=hint
        ) from None
    finally:  # every way out, interrupts included: the partial file goes, while still locked
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if fd >= 0:
            os.close(fd)


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
