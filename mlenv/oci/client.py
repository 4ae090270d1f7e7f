"""The OCI distribution API: manifests and blobs, moved between a registry and a BlobStore.

One `RegistryClient` per registry host. Every call names the repository and
the scopes it needs (`repository:<repo>:pull[,push]`), so a bearer token is
asked for once per scope set and reused (mlenv.oci.auth.Authorizer).

- manifests: HEAD / GET (Accept: OCI index and manifest, Docker list and v2
  manifest), PUT with the manifest's own media type. A GET by digest is checked
  against that digest; a GET by tag against the registry's Docker-Content-Digest.
- blobs: HEAD; GET streamed into the store through a digest-checked writer (the
  blob enters the store only if its bytes hash right and its size matches the
  descriptor); push = HEAD (present: skip), else a cross-repository mount from a
  repository the blob was seen in, else an upload: monolithic (POST, PUT
  ?digest=) up to `chunk_threshold` bytes, chunked above it (POST, PATCH with
  Content-Range per chunk, PUT ?digest=). Uploads are not resumed: a failed one
  starts over (the registry discards the abandoned session).
- failures are one-line MlenvErrors: refused auth (names the registry and the
  credential source, says how to log in), a connection lost mid-transfer, a
  missing manifest/blob, a 5xx, a full disk while pulling (names the path).

`remote_has(reference)` is the one-HEAD reuse check of `mlenv build`: urllib only
(no requests import) unless the registry asks for a token. `resolve_digest(ref)` is
`mlenv lock`'s tag -> digest pin of a base image (one HEAD through RegistryClient).
"""

from __future__ import annotations

import errno
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..errors import MlenvError
from .auth import AuthError, Authorizer, refused
from .store import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    BlobError,
    BlobStore,
    Descriptor,
    check_digest,
)
from .transport import api_base, check_url, is_loopback, new_session, session_for

if TYPE_CHECKING:
    from ..image_ref import ImageRef

MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST = 4 << 20  # distribution refuses larger manifests too
CHUNK_THRESHOLD = 32 << 20  # blobs above this go up in chunks
CHUNK_SIZE = 16 << 20
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*\Z")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


class RegistryTransferError(MlenvError):
    """A registry answered with an error, or the connection to it failed."""


class TransientError(RegistryTransferError):
    """A dropped connection or a 5xx: the same call may succeed when retried."""


class ManifestNotFound(RegistryTransferError):
    pass


class BlobNotFound(RegistryTransferError):
    pass


def check_repository(repository: str) -> str:
    if not isinstance(repository, str) or len(repository) > 255 or not REPOSITORY_RE.match(repository):
        raise MlenvError(
            f"invalid repository name {str(repository)[:80]!r}",
            hint="lowercase letters and digits separated by '.', '_', '__', '-' and '/'",
        )
    return repository


def check_reference(ref: str) -> str:
    """A tag or a digest: the last path segment of a manifest URL."""
    if isinstance(ref, str) and ref.startswith("sha256:"):
        return check_digest(ref)
    if not isinstance(ref, str) or not TAG_RE.match(ref):
        raise MlenvError(f"invalid tag {str(ref)[:80]!r}", hint="tags are [A-Za-z0-9_.-], at most 128 characters")
    return ref


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    # requests wraps urllib3 errors in long reprs; the innermost reason is what helps
    m = re.search(r"\((?:Caused by )?(\w+(?:Error|Exception|Reset|Aborted|Timeout)\w*)", text)
    return m.group(1) if m else type(exc).__name__


def disk_full(exc: OSError, path: Any, what: str) -> MlenvError:
    return MlenvError(
        f"no space left on the device holding {path} while {what}",
        hint="free some space, or point XDG_CACHE_HOME (the blob store) at a larger disk",
    )


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as fetched: the exact bytes, their digest and media type."""

    data: bytes
    digest: str
    media_type: str

    def json(self) -> dict:
        return json.loads(self.data)


class RegistryClient:
    def __init__(self, registry: str, *, timeout: float = 120.0, authorizer: Authorizer | None = None):
        self.registry = registry
        self.base = api_base(registry)
        self.loopback = is_loopback(registry)
        self.timeout = timeout
        self.auth = authorizer or Authorizer(registry, timeout=timeout)
        self._local = threading.local()  # one requests session per thread

    @property
    def session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = new_session(self.loopback)
        return s

    def close(self) -> None:
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()
            self._local.session = None

    # --- plumbing --------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return path if "://" in path else self.base + path

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: list[str],
        ok: tuple[int, ...] = (200,),
        what: str,
        retries: int = 0,
        **kw: Any,
    ):
        """One API call: the cached Authorization, the 401 handshake, retries on 5xx
        and on a refused connection (idempotent calls only: the caller says how many)."""
        import requests

        url = self.url(path)
        headers = dict(kw.pop("headers", None) or {})
        same_host = urlsplit(url).netloc == urlsplit(self.base).netloc
        for attempt in range(retries + 1):
            value = self.auth.header(scopes) if same_host else None
            if value:
                headers["Authorization"] = value
            try:
                session = self.session if same_host else session_for(url, self.session)
                resp = session.request(method, url, headers=headers, timeout=self.timeout, **kw)
                if resp.status_code == 401 and same_host:
                    sent = headers.get("Authorization")
                    value = self.auth.answer(session, resp.headers.get("WWW-Authenticate", ""), scopes, sent)
                    if value:
                        headers["Authorization"] = value
                        resp.close()
                        resp = session.request(method, url, headers=headers, timeout=self.timeout, **kw)
            except requests.exceptions.SSLError as exc:
                raise RegistryTransferError(
                    f"registry {self.registry}: TLS verification failed ({_short(exc)})",
                    hint="a TLS-intercepting proxy? set MLENV_CA_BUNDLE to its CA",
                ) from None
            except requests.RequestException as exc:
                if attempt < retries and isinstance(exc, requests.ConnectionError):
                    _backoff(attempt)
                    continue
                raise TransientError(
                    f"registry {self.registry}: connection lost while {what} ({_short(exc)})",
                    hint=f"check that {self.registry} is reachable and retry",
                ) from None
            if resp.status_code >= 500 and attempt < retries:
                resp.close()
                _backoff(attempt)
                continue
            break
        if resp.status_code in (401, 403):
            resp.close()
            raise refused(self.registry, resp.status_code, self.auth.credentials(), _repo_of(url))
        if resp.status_code not in ok:
            detail = _error_text(resp)
            resp.close()
            raise (TransientError if resp.status_code >= 500 else RegistryTransferError)(
                f"registry {self.registry} answered HTTP {resp.status_code} while {what}{detail}"
            )
        return resp

    # --- manifests -------------------------------------------------------------------------
    def head_manifest(self, repo: str, ref: str) -> Descriptor | None:
        """The manifest's descriptor (digest from Docker-Content-Digest), None when absent."""
        check_repository(repo), check_reference(ref)
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[pull_scope(repo)],
            ok=(200, 404),
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"looking up {repo}:{ref}",
            retries=2,
        )
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest") or (ref if ref.startswith("sha256:") else "")
        try:
            check_digest(digest)
        except BlobError:
            raise RegistryTransferError(f"registry {self.registry} gave no usable digest for {repo}:{ref}") from None
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        size = int(resp.headers.get("Content-Length") or 0)
        return Descriptor(media, digest, size)

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        check_repository(repo), check_reference(ref)
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[pull_scope(repo)],
            ok=(200, 404),
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"fetching the manifest {repo}:{ref}",
            retries=2,
            stream=True,
        )
        with resp:
            if resp.status_code == 404:
                raise ManifestNotFound(
                    f"{self.registry}/{repo}:{ref} not found (the registry has no such manifest)",
                    hint="check the image reference (name, tag, digest) and that it was pushed",
                )
            data = _read_limited(resp, MAX_MANIFEST, f"the manifest {repo}:{ref} of {self.registry}")
        digest = sha256_bytes(data)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryTransferError(
                f"registry {self.registry}: the manifest {repo}@{ref[:19]}… does not match "
                "its digest (corrupt or tampered); refusing it"
            )
        claimed = resp.headers.get("Docker-Content-Digest")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise RegistryTransferError(
                f"registry {self.registry}: the manifest {repo}:{ref} does not match the "
                "digest the registry announced; refusing it"
            )
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            declared = json.loads(data).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryTransferError(f"registry {self.registry}: {repo}:{ref} is not a JSON manifest") from None
        if isinstance(declared, str) and declared in MANIFEST_TYPES:
            media = declared
        return Manifest(data, digest, media)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; the digest the registry stored."""
        check_repository(repo), check_reference(ref)
        digest = sha256_bytes(data)
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[push_scope(repo)],
            ok=(200, 201),
            data=data,
            headers={"Content-Type": media_type},
            retries=3,
            what=f"writing the manifest {repo}:{ref}",
        )
        stored = resp.headers.get("Docker-Content-Digest")
        resp.close()
        if stored and stored != digest:
            raise RegistryTransferError(
                f"registry {self.registry} stored {repo}:{ref} as {stored[:19]}…, not as the pushed {digest[:19]}…"
            )
        return digest

    # --- blobs -----------------------------------------------------------------------------
    def has_blob(self, repo: str, digest: str, *, for_push: bool = False) -> bool:
        """HEAD a blob in repo. for_push asks with the push scope, so that a push
        needs one token, not a pull token and then a push token."""
        check_repository(repo), check_digest(digest)
        scope = push_scope(repo) if for_push else pull_scope(repo)
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/blobs/{digest}",
            scopes=[scope],
            ok=(200, 404),
            what=f"checking blob {digest[:19]}… in {repo}",
            retries=2,
        )
        resp.close()
        return resp.status_code == 200

    def fetch_blob(
        self, repo: str, desc: Descriptor, store: BlobStore, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        """Stream a blob into the store; it lands only when size and digest match."""
        check_repository(repo)
        what = f"downloading blob {desc.digest[:19]}… of {repo}"
        resp = self.request(
            "GET",
            f"/v2/{repo}/blobs/{desc.digest}",
            scopes=[pull_scope(repo)],
            ok=(200, 404),
            stream=True,
            what=what,
            retries=2,
        )
        import requests

        with resp:
            if resp.status_code == 404:
                raise BlobNotFound(
                    f"registry {self.registry}: blob {desc.digest[:19]}… is missing from {repo}",
                    hint="the image in the registry is incomplete; push it again",
                )
            try:
                with store.writer(expected=desc.digest) as w:
                    for chunk in resp.iter_content(1 << 20):
                        if w.size + len(chunk) > desc.size:
                            raise BlobError(f"blob {desc.digest[:19]}… is larger than its descriptor's {desc.size} B")
                        w.write(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
                    if w.size != desc.size:
                        raise BlobError(f"blob {desc.digest[:19]}… has {w.size} B, its descriptor says {desc.size}")
            except BlobError as exc:
                raise RegistryTransferError(
                    f"registry {self.registry}: {exc} (corrupt or tampered; not stored)"
                ) from None
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise disk_full(exc, store.blob_dir, what) from None
                raise MlenvError(f"cannot write {store.blob_dir} while {what} ({exc.strerror or exc})") from None
            except requests.RequestException as exc:
                raise TransientError(
                    f"registry {self.registry}: connection lost while {what} ({_short(exc)})",
                    hint="retry; blobs already stored are kept",
                ) from None

    def mount_blob(self, repo: str, digest: str, source: str) -> tuple[bool, str | None]:
        """Cross-repository mount: (True, None) when mounted; (False, upload URL) when
        the registry did not mount and opened an upload session instead."""
        check_repository(repo), check_repository(source), check_digest(digest)
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}",
            scopes=[push_scope(repo), pull_scope(source)],
            ok=(201, 202),
            what=f"mounting blob {digest[:19]}… from {source} into {repo}",
        )
        resp.close()
        if resp.status_code == 201:
            return True, None
        return False, self._location(resp)

    def upload_blob(
        self,
        repo: str,
        desc: Descriptor,
        store: BlobStore,
        *,
        location: str | None = None,
        chunk_threshold: int = CHUNK_THRESHOLD,
        chunk_size: int = CHUNK_SIZE,
    ) -> int:
        """Upload a blob from the store (monolithic or chunked); the bytes sent."""
        check_repository(repo)
        scopes = [push_scope(repo)]
        what = f"uploading blob {desc.digest[:19]}… to {repo}"
        if location is None:
            resp = self.request(
                "POST",
                f"/v2/{repo}/blobs/uploads/",
                scopes=scopes,
                ok=(202,),
                what=what,
                headers={"Content-Length": "0"},
            )
            resp.close()
            location = self._location(resp)
        sent = 0
        with store.open(desc.digest) as fh:
            if desc.size <= chunk_threshold:
                data = fh.read()
                resp = self.request(
                    "PUT",
                    _with_digest(location, desc.digest),
                    scopes=scopes,
                    ok=(201,),
                    what=what,
                    data=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
                resp.close()
                return len(data)
            while True:
                chunk = fh.read(chunk_size)
                if not chunk:
                    break
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{sent}-{sent + len(chunk) - 1}",
                }
                resp = self.request("PATCH", location, scopes=scopes, ok=(202,), what=what, data=chunk, headers=headers)
                resp.close()
                location = self._location(resp)
                sent += len(chunk)
        resp = self.request(
            "PUT",
            _with_digest(location, desc.digest),
            scopes=scopes,
            ok=(201,),
            what=what,
            headers={"Content-Length": "0"},
        )
        resp.close()
        return sent

    def _location(self, resp) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryTransferError(f"registry {self.registry} opened an upload without a Location header")
        url = urljoin(self.base + "/", loc)
        return check_url(url, self.registry, what="upload")


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _read_limited(resp, limit: int, what: str) -> bytes:
    out = bytearray()
    for chunk in resp.iter_content(1 << 16):
        out += chunk
        if len(out) > limit:
            raise RegistryTransferError(f"{what} is larger than {limit >> 20} MiB; refusing it")
    return bytes(out)


def _repo_of(url: str) -> str:
    m = re.search(r"/v2/(.+?)/(?:manifests|blobs|tags)/", urlsplit(url).path)
    return m.group(1) if m else ""


def _error_text(resp) -> str:
    try:
        errors = resp.json().get("errors") or []
        if errors:
            return ": " + "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))[:240]
    except (ValueError, AttributeError):
        pass
    return ""


def _backoff(attempt: int) -> None:
    time.sleep(0.1 * (2**attempt) * (1 + random.random()))


# --- the reuse check ------------------------------------------------------------------------


def names_registry(reference: str) -> bool:
    """Does the reference start with a registry host (`host.tld/`, `host:port/`, `localhost/`)?
    `mlenv/NAME:HASH` is a local Engine name, not a registry to ask."""
    first = reference.split("/", 1)[0]
    return "/" in reference and ("." in first or ":" in first or first == "localhost")


def remote_has(reference: str, *, timeout: float = 5.0) -> str | None:
    """The digest of reference's manifest in its registry (one HEAD), None when the
    registry does not have it or cannot be reached. urllib only: `mlenv build`'s
    cache-hit path imports no HTTP library; a registry that answers 401 goes
    through RegistryClient (requests, the auth handshake)."""
    import urllib.error
    import urllib.request

    from ..image_ref import parse

    if not names_registry(reference):
        return None
    try:
        ref = parse(reference)
    except ValueError:
        return None
    target = ref.digest or ref.tag or "latest"
    url = f"{api_base(ref.registry)}/v2/{ref.repository}/manifests/{target}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_ACCEPT, "User-Agent": "mlenv-oci"})
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(ref.registry) else []
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as resp:
            return resp.headers.get("Docker-Content-Digest") or (ref.digest if ref.digest else None)
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            return None
    except (OSError, ValueError):
        return None
    try:
        desc = RegistryClient(ref.registry, timeout=timeout).head_manifest(ref.repository, target)
    except MlenvError:
        return None
    return desc.digest if desc else None


class ResolveError(Exception):
    """A tag could not be resolved to a digest (the caller records the tag and warns)."""


def resolve_digest(ref: ImageRef, *, timeout: float = 6.0) -> str:
    """The registry's digest for ref's tag (the index digest for multi-arch images):
    one manifest HEAD through RegistryClient (auth: mlenv.oci.auth)."""
    if ref.digest:
        return ref.digest
    try:
        desc = RegistryClient(ref.registry, timeout=timeout).head_manifest(ref.repository, ref.tag or "latest")
    except MlenvError as exc:
        raise ResolveError(exc.message) from None
    if desc is None:
        raise ResolveError(f"{ref} not found in registry {ref.registry}")
    return desc.digest


__all__ = [
    "CHUNK_SIZE",
    "CHUNK_THRESHOLD",
    "MANIFEST_ACCEPT",
    "AuthError",
    "BlobNotFound",
    "Manifest",
    "ManifestNotFound",
    "RegistryClient",
    "RegistryTransferError",
    "ResolveError",
    "TransientError",
    "check_reference",
    "check_repository",
    "names_registry",
    "pull_scope",
    "push_scope",
    "remote_has",
    "resolve_digest",
]  # fmt: skip
