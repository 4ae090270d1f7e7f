"""Image config and manifest assembly (OCI image-spec v1.1), in canonical bytes.

Generic: a base image's config + new layers + environment/labels in, the config
and manifest blobs out. Canonical JSON everywhere: keys sorted, no whitespace,
UTF-8 (json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)), so
the same inputs give the same digests whatever the dict order or the host.

What the new config keeps from the base: `config` (Cmd, Entrypoint, WorkingDir,
User, ExposedPorts, Volumes, StopSignal, Env, Labels, ...), `os.version`,
`os.features`, its rootfs diff_ids and history. What it drops: the Docker-only
build leftovers of the base (`container`, `container_config`, `docker_version`,
`id`, `parent`), which describe how the base was built, not this image.
`created` is fixed (CREATED); `architecture`/`os`/`variant` come from the target
platform, never from the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .manifest import canonical_json
from .store import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    BlobStore,
    Descriptor,
)

CREATED = "2023-11-14T22:13:20Z"  # = layer.FIXED_MTIME: one constant for files and configs
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's, for a base without PATH

# conda platform -> OCI platform
PLATFORMS: dict[str, dict[str, str]] = {
    "linux-64": {"architecture": "amd64", "os": "linux"},
    "linux-aarch64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}
_DROP = ("container", "container_config", "docker_version", "id", "parent", "created", "author")


class ImageError(Exception):
    """A base config or manifest mlenv cannot build on."""


def oci_platform(platform: str) -> dict[str, str]:
    """The OCI platform object of a conda platform (linux-64, linux-aarch64)."""
    try:
        return dict(PLATFORMS[platform])
    except KeyError:
        raise ImageError(
            f"no OCI image platform for {platform!r} (daemonless images: linux-64, linux-aarch64)"
        ) from None


def _oci_layer_type(media_type: str) -> str:
    """Docker layer media types name the same bytes as the OCI ones."""
    return {DOCKER_LAYER_GZIP: OCI_LAYER_GZIP, DOCKER_LAYER: OCI_LAYER}.get(media_type, media_type)


def set_env(env: list[str], updates: list[tuple[str, str]]) -> list[str]:
    """Docker's ENV semantics on a config Env list: a variable that exists keeps its
    position and gets the new value, a new one is appended, in `updates` order."""
    out = list(env)
    index = {item.split("=", 1)[0]: i for i, item in enumerate(out)}
    for key, value in updates:
        item = f"{key}={value}"
        if key in index:
            out[index[key]] = item
        else:
            index[key] = len(out)
            out.append(item)
    return out


def env_value(env: list[str], key: str) -> str | None:
    for item in env:
        k, _, v = item.partition("=")
        if k == key:
            return v
    return None


@dataclass
class NewLayer:
    """A layer added on top of the base: its descriptor, diff_id and a history line."""

    descriptor: Descriptor
    diff_id: str
    created_by: str
    comment: str = ""


@dataclass
class Assembled:
    config: Descriptor
    manifest: Descriptor
    config_bytes: bytes
    manifest_bytes: bytes
    layers: list[Descriptor] = field(default_factory=list)


def base_layers(manifest: dict) -> list[Descriptor]:
    """The layer descriptors of a base manifest (OCI or Docker v2), OCI media types."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise ImageError("the base manifest has no layer list")
    out = []
    for raw in manifest["layers"]:
        d = Descriptor.from_json(raw)
        out.append(Descriptor(_oci_layer_type(d.media_type), d.digest, d.size, d.annotations))
    return out


def check_base_config(config: dict, platform: str) -> None:
    want = oci_platform(platform)
    if not isinstance(config, dict) or not isinstance(config.get("rootfs"), dict):
        raise ImageError("the base image config has no rootfs")
    if config.get("architecture") != want["architecture"] or config.get("os") != want["os"]:
        raise ImageError(
            f"the base image is {config.get('os')}/{config.get('architecture')}, the target is "
            f"{want['os']}/{want['architecture']} ({platform})"
        )


def assemble(
    store: BlobStore,
    base_config: dict,
    base_manifest: dict,
    new_layers: list[NewLayer],
    *,
    platform: str,
    env: list[tuple[str, str]],
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    history_note: str = "",
) -> Assembled:
    """The config and manifest of base + new_layers, written into store.

    env: (name, value) pairs applied with Docker's ENV semantics (set_env); labels
    are merged over the base's; history gets one entry per new layer (created =
    CREATED) and, when env/labels change, one empty_layer entry describing that."""
    check_base_config(base_config, platform)
    base_diff = base_config["rootfs"].get("diff_ids")
    layers = base_layers(base_manifest)
    if not isinstance(base_diff, list) or len(base_diff) != len(layers):
        raise ImageError(f"the base config lists {len(base_diff or [])} diff_ids for {len(layers)} manifest layers")
    cfg = {k: v for k, v in base_config.items() if k not in _DROP}
    cfg.update(oci_platform(platform))
    if "variant" not in PLATFORMS[platform]:
        cfg.pop("variant", None)
    inner = dict(base_config.get("config") or {})
    inner["Env"] = set_env(list(inner.get("Env") or []), env)
    merged = dict(inner.get("Labels") or {})
    merged.update(labels)
    inner["Labels"] = dict(sorted(merged.items()))
    cfg["config"] = inner
    cfg["created"] = CREATED
    cfg["rootfs"] = {"type": "layers", "diff_ids": list(base_diff) + [layer.diff_id for layer in new_layers]}
    history = list(base_config.get("history") or [])
    for layer in new_layers:
        entry = {"created": CREATED, "created_by": layer.created_by}
        if layer.comment:
            entry["comment"] = layer.comment
        history.append(entry)
    if history_note:
        history.append({"created": CREATED, "created_by": history_note, "empty_layer": True})
    cfg["history"] = history
    config_bytes = canonical_json(cfg)
    config = store.put_bytes(config_bytes, OCI_CONFIG)
    all_layers = layers + [layer.descriptor for layer in new_layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [d.to_json() for d in all_layers],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    manifest_bytes = canonical_json(manifest)
    desc = store.put_bytes(manifest_bytes, OCI_MANIFEST, platform=oci_platform(platform))
    return Assembled(config, desc, config_bytes, manifest_bytes, all_layers)


def parse_manifest(data: bytes) -> dict:
    """A single-image manifest (OCI or Docker v2) as a dict, checked for shape."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"the manifest is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise ImageError("not an image manifest (schemaVersion 2 expected)")
    media = doc.get("mediaType", OCI_MANIFEST)
    if media not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise ImageError(f"not a single-image manifest: {media}")
    Descriptor.from_json(doc.get("config") or {})
    base_layers(doc)
    return doc


def parse_config(data: bytes) -> dict:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"the image config is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rootfs"), dict):
        raise ImageError("not an image config (no rootfs)")
    return doc


CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
