"""The daemonless builder's seam to the OCI transport (mlenv.oci: pull, push, layout,
engine), in the shapes the builder uses.

- pull: mlenv.oci.pull.pull_base (registry, or the local Engine for a base only there;
  the lock's pinned digest is what is used); the builder gets the manifest and config
  as dicts;
- push: mlenv.oci.push.push_image (HEAD per blob, cross-repository mount from the base's
  repository or wherever mlenv.oci.locations saw the blob, chunked upload, the manifest
  last, so no half-pushed tag); the statistics the builder reports;
- layout: mlenv.oci.layout.write_layout (OCI image layout directory);
- load: mlenv.oci.layout.write_docker_archive + mlenv.oci.engine.load_archive (the
  classic store keeps the config, so the image ID is the config digest, and the
  diff_ids; not the compressed blobs or the manifest).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlenvError
from ..oci.store import BlobStore


class TransportError(MlenvError):
    """A registry or Engine transfer failed (one line: what, where, how to fix)."""


@dataclass
class Pulled:
    reference: str
    digest: str  # the single-image manifest's digest
    manifest: dict
    config: dict
    manifest_bytes: bytes
    name: str = ""  # registry/repository (or the Engine's name)


@dataclass
class PushStats:
    reference: str = ""
    digest: str = ""
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    uploaded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("reference", "digest", "blobs_uploaded", "bytes_uploaded",
                                              "blobs_present", "blobs_mounted", "uploaded")}  # fmt: skip


def pull(reference: str, platform: str, store: BlobStore, *, expect: str | None = None) -> Pulled:
    """The image's manifest, config and layers into store (blobs already there are not fetched)."""
    from ..oci.pull import pull_base

    got = pull_base(reference, platform, store, expect=expect)
    return Pulled(reference, got.manifest_digest, json.loads(got.manifest), json.loads(got.config), got.manifest,
                  got.name)  # fmt: skip


def push(
    store: BlobStore, manifest_digest: str, reference: str, *, mount_from: list[str] | None = None, early=None
) -> PushStats:
    """Push the image (mlenv.oci.push.push_image); blobs an EarlyPush already sent
    are found by its HEAD and counted as what they were (uploaded / mounted)."""
    from ..oci.push import push_image

    done = early.finish() if early is not None else {}
    res = push_image(store, manifest_digest, reference, mount_from=mount_from or ())
    st = res.stats
    uploaded = sorted({*st.uploaded, *(d for d, (how, _) in done.items() if how == "uploaded")})
    mounted = {*st.mounted, *(d for d, (how, _) in done.items() if how == "mounted")}
    sent = st.bytes_sent + sum(n for how, n in done.values() if how == "uploaded")
    present = len([d for d in st.skipped if d not in done]) + len(
        [d for d, (how, _) in done.items() if how == "skipped"]
    )
    return PushStats(reference, res.digest, len(uploaded), sent, present, len(mounted), uploaded)


class EarlyPush:
    """Sends layer blobs to the registry while the build goes on (each as soon as it is
    written), so the final push_image finds them there (HEAD) and only sends the
    config and the manifest. A minimal stand-in for a public per-blob push in
    mlenv.oci.push (same steps: HEAD, mount from a known repository, upload); errors
    surface at finish(), before any manifest or tag is written."""

    def __init__(self, store: BlobStore, reference: str, mount_from: list[str]):
        from concurrent.futures import ThreadPoolExecutor

        from ..image_ref import parse
        from ..oci.client import RegistryClient
        from ..oci.locations import BlobLocations

        ref = parse(reference)
        self.store, self.repo, self.registry = store, ref.repository, ref.registry
        self.client = RegistryClient(ref.registry)
        self.locations = BlobLocations()
        self.sources = [r for r in mount_from if r != self.repo]
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlenv-push")
        self.futures: dict[str, object] = {}

    def submit(self, digest: str, size: int) -> None:
        if digest and digest not in self.futures:
            self.futures[digest] = self.pool.submit(self._one, digest, size)

    def _one(self, digest: str, size: int) -> tuple[str, int]:
        from ..oci.store import OCI_LAYER_GZIP, Descriptor

        if self.client.has_blob(self.repo, digest, for_push=True):
            return "skipped", 0
        location = None
        sources = [r for r in self.locations.repos(self.registry, digest) if r != self.repo] + self.sources
        for source in list(dict.fromkeys(sources))[:3]:
            mounted, location = self.client.mount_blob(self.repo, digest, source)
            if mounted:
                return "mounted", 0
        sent = self.client.upload_blob(self.repo, Descriptor(OCI_LAYER_GZIP, digest, size), self.store,
                                       location=location)  # fmt: skip
        self.locations.add(self.registry, [digest], self.repo)
        return "uploaded", sent

    def finish(self) -> dict[str, tuple[str, int]]:
        try:
            return {d: f.result() for d, f in self.futures.items()}  # type: ignore[attr-defined]
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def head(reference: str) -> str | None:
    """The registry's digest for reference (one manifest HEAD), None when absent."""
    from ..oci.client import remote_has

    return remote_has(reference)


def write_layout(store: BlobStore, manifest_digest: str, directory: Path, reference: str) -> Path:
    from ..oci.layout import write_layout as oci_write_layout

    tag = reference.rsplit(":", 1)[-1] if reference and ":" in reference.rsplit("/", 1)[-1] else ""
    return oci_write_layout(store, {tag or manifest_digest.split(":", 1)[1][:12]: manifest_digest}, directory)


def load(store: BlobStore, manifest_digest: str, reference: str) -> str:
    """Load into the local Engine; returns the image ID (the config digest)."""
    import tempfile

    from ..oci.engine import load_archive
    from ..oci.layout import write_docker_archive
    from ..oci.store import Descriptor

    with tempfile.TemporaryDirectory(prefix="mlenv-load-") as tmp:
        tar = write_docker_archive(store, manifest_digest, [reference] if reference else [], Path(tmp) / "image.tar")
        load_archive(tar)
    return Descriptor.from_json(json.loads(store.read(manifest_digest))["config"]).digest


def registry_blob_count(storage: str | os.PathLike[str]) -> int:
    """Number of blobs in a CNCF distribution filesystem storage (tests, bench)."""
    root = Path(storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return sum(1 for _ in root.glob("*/*/data")) if root.is_dir() else 0
