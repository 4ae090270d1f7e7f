"""The daemonless builder's seam to the OCI transport (mlenv.oci: pull, push, layout,
engine), in the shapes the builder uses.

- pull: mlenv.oci.pull.pull_base (registry, or the local Engine for a base only there;
  the lock's pinned digest is what is used); the builder gets the manifest and config
  as dicts;
- push: mlenv.oci.push.push_image (HEAD per blob, cross-repository mount from the base's
  repository or wherever mlenv.oci.locations saw the blob, chunked upload, the manifest
  last, so no half-pushed tag), after the layer blobs went up one by one while the
  build went on (mlenv.oci.push.BlobPusher over push_blob); the statistics the builder
  reports;
- layout: mlenv.oci.layout.write_layout (OCI image layout directory) or write_layout_tar
  (the same as one deterministic tar, for a destination ending in `.tar`);
- load: mlenv.oci.layout.write_docker_archive + mlenv.oci.engine.load_archive (the
  classic store keeps the config, so the image ID is the config digest, and the
  diff_ids; not the compressed blobs or the manifest).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MlenvError
from ..oci.store import BlobStore

if TYPE_CHECKING:
    from ..oci.push import BlobPusher, PushResult


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


def pull(reference: str, platform: str, store: BlobStore, *, expect: str | None = None) -> Pulled:
    """The image's manifest, config and layers into store (blobs already there are not fetched)."""
    from ..oci.pull import pull_base

    got = pull_base(reference, platform, store, expect=expect)
    return Pulled(reference, got.manifest_digest, json.loads(got.manifest), json.loads(got.config), got.manifest,
                  got.name)  # fmt: skip


def push(store: BlobStore, manifest_digest: str, reference: str, *, mount_from: list[str] | None = None,
         early: BlobPusher | None = None) -> PushResult:  # fmt: skip
    """Push the image (mlenv.oci.push.push_image); the blobs `early` already sent are
    counted as what they were (uploaded / mounted / present) and not asked about again."""
    from ..oci.push import push_image

    stats = early.finish() if early is not None else None
    return push_image(store, manifest_digest, reference, mount_from=mount_from or (), stats=stats)


def early_push(store: BlobStore, reference: str, mount_from: list[str]) -> BlobPusher:
    """A background pusher for layer blobs, each sent as soon as it is written
    (mlenv.oci.push.BlobPusher); `push` hands its statistics to push_image."""
    from ..oci.push import BlobPusher

    return BlobPusher(store, reference, mount_from=mount_from)


def upload_summary(reference: str, result: PushResult) -> dict:
    """What a push did, as the build result reports it (`upload` in `--json`)."""
    st = result.stats
    return {"reference": reference, "digest": result.digest, "blobs_uploaded": len(st.uploaded), "bytes_uploaded": st.bytes_sent,
            "blobs_present": len(st.skipped), "blobs_mounted": len(st.mounted),
            "uploaded": sorted(st.uploaded)}  # fmt: skip


def head(reference: str) -> str | None:
    """The registry's digest for reference (one manifest HEAD), None when absent."""
    from ..oci.client import remote_has

    return remote_has(reference)


def is_layout_tar(dest: str | os.PathLike[str]) -> bool:
    """`--layout FILE.tar` asks for the layout as one tar file; anything else names a directory."""
    return str(dest).endswith(".tar")


def write_layout(store: BlobStore, manifest_digest: str, dest: Path, reference: str) -> Path:
    """The OCI image layout of the image, ref-named by its tag (else the digest's first 12
    hex): a directory at dest, or a deterministic tar written atomically when dest ends in
    `.tar` (mlenv.oci.layout.write_layout / write_layout_tar)."""
    from ..oci.layout import write_layout as oci_write_layout
    from ..oci.layout import write_layout_tar

    tag = reference.rsplit(":", 1)[-1] if reference and ":" in reference.rsplit("/", 1)[-1] else ""
    refs = {tag or manifest_digest.split(":", 1)[1][:12]: manifest_digest}
    if is_layout_tar(dest):
        if Path(dest).is_dir():
            raise TransportError(f"--layout {dest}: is a directory, not a tar file",
                                 hint="name a new file ending in .tar, or a directory without .tar")  # fmt: skip
        return write_layout_tar(store, refs, dest)
    return oci_write_layout(store, refs, dest)


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
