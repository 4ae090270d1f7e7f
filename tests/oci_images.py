"""Small images assembled in tests (the builder proper lives in mlenv.image / mlenv.oci.image):
a deterministic layer tar, and an OCI image = a base's layers + extra uncompressed layers."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from mlenv.oci.manifest import canonical_json
from mlenv.oci.store import (
    DOCKER_LAYER_GZIP,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    BlobStore,
    Descriptor,
)


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assemble(
    store: BlobStore,
    base_config: bytes | None,
    base_layers: list[Descriptor],
    extra: list[bytes],
    *,
    cmd: list[str] | None = None,
) -> str:
    """An OCI image manifest in store: base layers (as they are) + extra uncompressed layers."""
    config = (
        json.loads(base_config)
        if base_config
        else {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    layers = []
    for d in base_layers:
        media = OCI_LAYER_GZIP if d.media_type in (DOCKER_LAYER_GZIP, OCI_LAYER_GZIP) else OCI_LAYER
        layers.append(Descriptor(media, d.digest, d.size))
    for data in extra:
        layers.append(store.put_bytes(data, OCI_LAYER))
        config["rootfs"]["diff_ids"].append(sha(data))
        config.setdefault("history", []).append({"created_by": "mlenv test layer"})
    if cmd:
        config.setdefault("config", {})["Cmd"] = cmd
    config.pop("created", None)
    cfg = store.put_bytes(canonical_json(config), OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg.to_json(),
                "layers": [d.to_json() for d in layers]}  # fmt: skip
    return store.put_bytes(canonical_json(manifest), OCI_MANIFEST).digest


def synthetic(store: BlobStore, seeds: list[str], size: int = 4096) -> str:
    """An image of uncompressed layers, one per seed, each `size` bytes of content
    determined by its seed: images sharing a seed share that layer blob."""
    layers = []
    for seed in seeds:
        content = hashlib.shake_256(seed.encode()).digest(size)
        layers.append(layer_tar({f"data/{seed}.bin": content}))
    return assemble(store, None, [], layers)
