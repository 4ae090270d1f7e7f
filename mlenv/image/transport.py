"""The daemonless builder's seam to the OCI transport (pull, push, layout, load).

The transport proper belongs to mlenv.oci (pull.py, push.py, layout.py, auth.py,
client.py: written in parallel, branch oci-dist). Until those modules are there,
this file holds MINIMAL stand-ins, each in its own clearly named `_fallback_*`
function, so the builder can be exercised end to end:

- pull: registry only (no local Engine), anonymous / basic / bearer token with the
  credentials of mlenv.image_ref.registry_credentials; an index picks the platform;
  every blob sha256-checked into the BlobStore;
- push: HEAD per blob, a cross-repository mount on the same registry, else one
  monolithic upload (no chunking), then the manifest under the tag; counts bytes;
- layout: an OCI image layout directory;
- load: a `docker load` tarball (manifest.json + config + gzip layers) sent to the
  Engine API; the classic store keeps the config (image ID = config digest) and
  diff_ids, not the compressed blobs or the manifest.

The public functions below call mlenv.oci's when importable (the lead merges
oci-dist), else the fallbacks. Result shapes are plain dicts/dataclasses here.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from ..errors import MlenvError
from ..oci.image import ImageError, parse_config, parse_manifest
from ..oci.store import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    BlobError,
    BlobStore,
    Descriptor,
)

ACCEPT = f"{OCI_INDEX}, {DOCKER_MANIFEST_LIST}, {OCI_MANIFEST}, {DOCKER_MANIFEST}"


class TransportError(MlenvError):
    """A registry or Engine transfer failed (one line: what, where, how to fix)."""


@dataclass
class Pulled:
    reference: str
    digest: str  # the single-image manifest's digest
    manifest: dict
    config: dict
    manifest_bytes: bytes


@dataclass
class PushStats:
    reference: str = ""
    digest: str = ""
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    requests: int = 0
    uploaded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "reference",
                "digest",
                "blobs_uploaded",
                "bytes_uploaded",
                "blobs_present",
                "blobs_mounted",
                "requests",
                "uploaded",
            )
        }


# --- public seam ----------------------------------------------------------------------


def pull(reference: str, platform: str, store: BlobStore) -> Pulled:
    """The base image's manifest, config and layers into store (cached by digest)."""
    return _fallback_pull(reference, platform, store)


def push(store: BlobStore, manifest_digest: str, reference: str, *, mount_from: list[str] | None = None) -> PushStats:
    return _fallback_push(store, manifest_digest, reference, mount_from=mount_from or [])


def head(reference: str) -> str | None:
    """The registry's digest for reference (one manifest HEAD), None when absent."""
    from ..build.docker import registry_digest_fast

    return registry_digest_fast(reference)


def write_layout(store: BlobStore, manifest_digest: str, directory: Path, reference: str) -> Path:
    return _fallback_layout(store, manifest_digest, directory, reference)


def load(store: BlobStore, manifest_digest: str, reference: str) -> str:
    """Load into the local Engine; returns the image ID."""
    return _fallback_load(store, manifest_digest, reference)


# --- fallbacks (to be replaced by mlenv.oci.pull / push / layout) -----------------------


class _Registry:
    """Just enough of the distribution API for the fallbacks."""

    def __init__(self, registry: str):
        import requests

        from ..image_ref import DOCKER_HUB, is_local_registry

        self.host = registry
        self.local = is_local_registry(registry)
        api_host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self.base = f"{'http' if self.local else 'https'}://{api_host}"
        self.session = requests.Session()
        if self.local:
            self.session.trust_env = False
        self.auth: dict[str, str] = {}
        self.requests = 0

    def request(self, method: str, url: str, *, scope: str, ok=(200,), **kw):
        import requests

        url = url if url.startswith("http") else self.base + url
        headers = dict(kw.pop("headers", {}) or {})
        if scope in self.auth:
            headers["Authorization"] = self.auth[scope]
        try:
            self.requests += 1
            resp = self.session.request(method, url, headers=headers, timeout=600, **kw)
            if resp.status_code == 401 and scope not in self.auth:
                value = self._authenticate(resp.headers.get("WWW-Authenticate", ""), scope)
                if value:
                    self.auth[scope] = headers["Authorization"] = value
                    if "data" in kw and hasattr(kw["data"], "seek"):
                        kw["data"].seek(0)
                    self.requests += 1
                    resp = self.session.request(method, url, headers=headers, timeout=600, **kw)
        except requests.RequestException as exc:
            raise TransportError(
                f"registry {self.host} unreachable during {method} ({type(exc).__name__})",
                hint="check the registry address and the network",
            ) from None
        if resp.status_code in (401, 403):
            raise TransportError(
                f"registry {self.host} refused {method} {url.split('?')[0].split('/v2/', 1)[-1]} "
                f"(HTTP {resp.status_code})",
                hint=f"run `docker login {self.host}` or set MLENV_REGISTRY_USERNAME/_PASSWORD",
            )
        if resp.status_code not in ok:
            raise TransportError(
                f"registry {self.host}: {method} {url.split('?')[0].split('/v2/', 1)[-1]} answered "
                f"HTTP {resp.status_code}: {resp.text[:200].strip()}"
            )
        return resp

    def _authenticate(self, challenge: str, scope: str) -> str | None:
        from ..image_ref import registry_credentials

        creds = registry_credentials(self.host)
        if challenge.lower().startswith("basic"):
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode() if creds else None
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        params["scope"] = scope
        resp = self.session.get(realm, params=params, auth=creds, timeout=30)
        if resp.status_code != 200:
            return None
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        return f"Bearer {token}" if token else None


def _split(reference: str):
    from .. import image_ref

    try:
        return image_ref.parse(reference)
    except ValueError as exc:
        raise TransportError(
            f"bad image reference {reference!r}: {exc}", hint="use host[:port]/repository[:tag][@sha256:...]"
        ) from None


def _fallback_pull(reference: str, platform: str, store: BlobStore) -> Pulled:
    from ..oci.image import oci_platform

    ref = _split(reference)
    reg = _Registry(ref.registry)
    scope = f"repository:{ref.repository}:pull"
    want = oci_platform(platform)
    target = ref.digest or ref.tag
    raw, media = _get_manifest(reg, ref.repository, target, scope, store)
    if ref.digest and "sha256:" + __import__("hashlib").sha256(raw).hexdigest() != ref.digest:
        raise TransportError(f"{reference}: the registry's manifest does not match the pinned digest")
    if media in (OCI_INDEX, DOCKER_MANIFEST_LIST) or b'"manifests"' in raw[:4096] and b'"layers"' not in raw:
        index = json.loads(raw)
        pick = None
        for m in index.get("manifests") or []:
            p = m.get("platform") or {}
            if p.get("os") == want["os"] and p.get("architecture") == want["architecture"]:
                if "variant" in want and p.get("variant") not in (None, want["variant"]):
                    continue
                pick = m
                break
        if pick is None:
            raise TransportError(
                f"{reference} has no {want['os']}/{want['architecture']} image ({platform})",
                hint="pick a base image built for the target platform",
            )
        digest = Descriptor.from_json(pick).digest
        raw, media = _get_manifest(reg, ref.repository, digest, scope, store, expect=digest)
    digest = "sha256:" + __import__("hashlib").sha256(raw).hexdigest()
    try:
        manifest = parse_manifest(raw)
    except (ImageError, BlobError) as exc:
        raise TransportError(f"{reference}: {exc}") from None
    for desc in [Descriptor.from_json(manifest["config"])] + [Descriptor.from_json(x) for x in manifest["layers"]]:
        if store.has(desc.digest):
            continue
        resp = reg.request("GET", f"/v2/{ref.repository}/blobs/{desc.digest}", scope=scope, stream=True)
        try:
            with store.writer(expected=desc.digest) as w:
                for chunk in resp.iter_content(1 << 20):
                    w.write(chunk)
        except BlobError as exc:
            raise TransportError(f"{reference}: blob {desc.digest[:19]}…: {exc}") from None
    config = parse_config(store.read(Descriptor.from_json(manifest["config"]).digest))
    return Pulled(reference, digest, manifest, config, raw)


def _get_manifest(reg: _Registry, repo: str, target: str, scope: str, store: BlobStore, expect: str | None = None):
    if target.startswith("sha256:") and store.has(target):
        raw = store.read(target)
        media = json.loads(raw).get("mediaType", "")
        return raw, media
    resp = reg.request("GET", f"/v2/{repo}/manifests/{target}", scope=scope, ok=(200, 404), headers={"Accept": ACCEPT})
    if resp.status_code == 404:
        raise TransportError(
            f"{reg.host}/{repo}:{target} not found in the registry",
            hint="check the base image reference (and that it was pushed)",
        )
    raw = resp.content
    digest = "sha256:" + __import__("hashlib").sha256(raw).hexdigest()
    if expect and digest != expect:
        raise TransportError(f"{reg.host}/{repo}@{expect[:19]}…: the registry sent other bytes")
    store.put_bytes(raw, resp.headers.get("Content-Type", ""))
    return raw, resp.headers.get("Content-Type", "").split(";")[0]


def _fallback_push(store: BlobStore, manifest_digest: str, reference: str, *, mount_from: list[str]) -> PushStats:
    ref = _split(reference)
    reg = _Registry(ref.registry)
    repo = ref.repository
    scope = f"repository:{repo}:pull,push"
    raw = store.read(manifest_digest)
    manifest = json.loads(raw)
    stats = PushStats(reference=reference, digest=manifest_digest)
    descs = [Descriptor.from_json(manifest["config"])] + [Descriptor.from_json(x) for x in manifest["layers"]]
    for desc in descs:
        head = reg.request("HEAD", f"/v2/{repo}/blobs/{desc.digest}", scope=scope, ok=(200, 404))
        if head.status_code == 200:
            stats.blobs_present += 1
            _remember(ref.registry, desc.digest, repo)
            continue
        mounted = False
        for other in list(dict.fromkeys(mount_from + _known_repos(ref.registry, desc.digest))):
            if other == repo:
                continue
            resp = reg.request(
                "POST",
                f"/v2/{repo}/blobs/uploads/?mount={desc.digest}&from={other}",
                scope=f"{scope} repository:{other}:pull",
                ok=(201, 202),
            )
            if resp.status_code == 201:
                stats.blobs_mounted += 1
                mounted = True
                break
            _cancel(reg, resp, scope)
        if mounted:
            continue
        if not store.has(desc.digest):
            raise TransportError(
                f"blob {desc.digest[:19]}… of {reference} is neither in the registry nor in {store.root}",
                hint="build again (the blob store was cleaned)",
            )
        start = reg.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,))
        location = urljoin(reg.base + "/", start.headers["Location"])
        sep = "&" if "?" in location else "?"
        with store.open(desc.digest, verify=True) as fh:
            reg.request(
                "PUT",
                f"{location}{sep}digest={desc.digest}",
                scope=scope,
                ok=(201,),
                data=fh,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            )
        stats.blobs_uploaded += 1
        stats.bytes_uploaded += desc.size
        stats.uploaded.append(desc.digest)
        _remember(ref.registry, desc.digest, repo)
    reg.request(
        "PUT",
        f"/v2/{repo}/manifests/{ref.tag or manifest_digest}",
        scope=scope,
        ok=(200, 201),
        data=raw,
        headers={"Content-Type": manifest.get("mediaType", OCI_MANIFEST)},
    )
    stats.requests = reg.requests
    return stats


def _repos_file(registry: str, digest: str) -> Path:
    from ..install import _default_cache

    host = re.sub(r"[^A-Za-z0-9._-]", "_", registry)
    return _default_cache() / "blob-repos" / host / digest.split(":", 1)[1]


def _known_repos(registry: str, digest: str) -> list[str]:
    """Repositories of this registry that this machine saw holding the blob: a
    cross-repository mount from one of them replaces an upload (the distribution
    API has no registry-wide blob lookup; Docker keeps the same record)."""
    try:
        lines = _repos_file(registry, digest).read_text().split()
    except OSError:
        return []
    return [r for r in lines if re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*", r)][-8:]


def _remember(registry: str, digest: str, repo: str) -> None:
    path = _repos_file(registry, digest)
    if repo in _known_repos(registry, digest):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:  # one short line per append: concurrent writers do not interleave
            fh.write(repo + "\n")
    except OSError:
        pass


def _cancel(reg: _Registry, resp, scope: str) -> None:
    location = resp.headers.get("Location")
    if location:
        try:
            reg.request("DELETE", urljoin(reg.base + "/", location), scope=scope, ok=(200, 202, 204, 404))
        except TransportError:
            pass


def _fallback_layout(store: BlobStore, manifest_digest: str, directory: Path, reference: str) -> Path:
    from ..fsutil import atomic_write
    from ..install import link_or_copy
    from ..oci.image import canonical_json

    directory = Path(directory)
    raw = store.read(manifest_digest)
    manifest = json.loads(raw)
    descs = [Descriptor.from_json(manifest["config"])] + [Descriptor.from_json(x) for x in manifest["layers"]]
    for d in descs + [Descriptor(OCI_MANIFEST, manifest_digest, len(raw))]:
        dest = directory / "blobs" / "sha256" / d.digest.split(":", 1)[1]
        if not dest.exists():
            link_or_copy(store.path(d.digest), dest)
    tag = reference.rsplit(":", 1)[-1] if ":" in reference.rsplit("/", 1)[-1] else ""
    entry = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(raw)}
    if tag:
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    atomic_write(directory / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    atomic_write(
        directory / "index.json", canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    )
    return directory


def docker_archive(store: BlobStore, manifest_digest: str, reference: str, out) -> None:
    """Write a `docker load` tarball (docker-archive: manifest.json, the config, the
    layers as stored, gzip) to the binary file out. Deterministic tar framing."""
    from ..oci.layer import bytes_entry, file_entry, tar_stream

    manifest = json.loads(store.read(manifest_digest))
    config = Descriptor.from_json(manifest["config"])
    layers = [Descriptor.from_json(x) for x in manifest["layers"]]
    hexes = [d.digest.split(":", 1)[1] for d in layers]
    entries = [bytes_entry(f"{config.digest.split(':', 1)[1]}.json", store.read(config.digest))]
    entries += [file_entry(f"{h}.tar.gz", store.path(d.digest)) for h, d in zip(hexes, layers)]
    index = [
        {
            "Config": f"{config.digest.split(':', 1)[1]}.json",
            "RepoTags": [reference] if reference else None,
            "Layers": [f"{h}.tar.gz" for h in hexes],
        }
    ]
    entries.append(bytes_entry("manifest.json", json.dumps(index).encode()))
    unique = list({e.path: e for e in reversed(entries)}.values())  # a layer listed twice is stored once
    for chunk in tar_stream(unique):
        out.write(chunk)


def _fallback_load(store: BlobStore, manifest_digest: str, reference: str) -> str:
    import tempfile

    from ..build.docker import connect

    client = connect()
    with tempfile.TemporaryFile(prefix="mlenv-load-") as fh:
        docker_archive(store, manifest_digest, reference, fh)
        fh.seek(0)
        try:
            out = list(client.api.load_image(fh))
        except Exception as exc:  # noqa: BLE001 - docker SDK and requests errors alike: one line
            raise TransportError(f"docker load of {reference} failed: {str(exc)[:300]}") from None
    for msg in out:
        if isinstance(msg, dict) and msg.get("error"):
            raise TransportError(f"docker load of {reference} failed: {msg['error'][:300]}")
    config = Descriptor.from_json(json.loads(store.read(manifest_digest))["config"])
    return config.digest


def registry_blob_count(storage: str | os.PathLike[str]) -> int:
    """Number of blobs in a CNCF distribution filesystem storage (tests, bench)."""
    root = Path(storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return sum(1 for _ in root.glob("*/*/data")) if root.is_dir() else 0
