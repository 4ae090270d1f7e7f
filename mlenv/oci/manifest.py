"""Reading manifests, indexes and image configs (all untrusted input), and choosing a platform.

Every parser here takes bytes from a registry, an Engine or a store and returns
plain records, or raises ManifestError with one line saying what is wrong and
where (`where` is the reference or file the bytes came from). Nothing here
touches the network or the disk.

Platforms: mlenv's lock platforms map to OCI platforms as
`linux-64` -> linux/amd64, `linux-aarch64` -> linux/arm64 (variant v8 or none),
`linux-ppc64le` -> linux/ppc64le, `linux-s390x` -> linux/s390x; an OCI
`os/arch[/variant]` string is accepted as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import MlenvError
from .store import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    BlobError,
    Descriptor,
    check_digest,
)

OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP, DOCKER_LAYER)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

LOCK_PLATFORMS = {
    "linux-64": ("linux", "amd64", None),
    "linux-aarch64": ("linux", "arm64", "v8"),
    "linux-ppc64le": ("linux", "ppc64le", None),
    "linux-s390x": ("linux", "s390x", None),
}


class ManifestError(MlenvError):
    """A manifest, index or config is malformed, or has no entry for the platform."""


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, os_: str | None, arch: str | None, variant: str | None) -> bool:
        if os_ != self.os or arch != self.architecture:
            return False
        if self.architecture == "arm64":  # v8 is arm64's only variant in practice; unset means v8
            return (variant or "v8") == (self.variant or "v8")
        return (variant or None) == self.variant or self.variant is None


def platform_of(name: str) -> Platform:
    """A lock platform (`linux-64`) or an OCI platform string (`linux/arm64/v8`)."""
    if name in LOCK_PLATFORMS:
        return Platform(*LOCK_PLATFORMS[name])
    parts = name.split("/") if isinstance(name, str) else []
    if 2 <= len(parts) <= 3 and all(p and p.replace("_", "").replace("-", "").isalnum() for p in parts):
        return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    raise ManifestError(
        f"unknown platform {str(name)[:40]!r}", hint=f"use one of {', '.join(LOCK_PLATFORMS)} or os/arch[/variant]"
    )


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    os: str | None
    architecture: str | None
    variant: str | None
    diff_ids: tuple[str, ...]

    @property
    def platform(self) -> Platform:
        return Platform(self.os or "?", self.architecture or "?", self.variant)


def _object(data: bytes, where: str, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError(f"{where}: the {what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: the {what} is not a JSON object")
    return obj


def _text(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _descriptor(obj: object, where: str, what: str) -> Descriptor:
    try:
        return Descriptor.from_json(obj)  # type: ignore[arg-type]
    except BlobError as exc:
        raise ManifestError(f"{where}: {what}: {exc}") from None


def kind(data: bytes, media_type: str | None, where: str) -> str:
    """'index' or 'manifest', from the document's mediaType (else the transport's,
    else its shape: `manifests` means an index)."""
    obj = _object(data, where, "manifest")
    declared = obj.get("mediaType") if isinstance(obj.get("mediaType"), str) else None
    media = declared or media_type or ""
    if media in INDEX_TYPES or (not media and "manifests" in obj):
        return "index"
    if media in IMAGE_TYPES or (not media and "config" in obj):
        return "manifest"
    raise ManifestError(
        f"{where}: unsupported manifest type {media[:80]!r}",
        hint="mlenv reads OCI and Docker v2 image manifests and indexes",
    )


def parse_index(data: bytes, where: str) -> ImageIndex:
    obj = _object(data, where, "index")
    if obj.get("schemaVersion") != 2:
        raise ManifestError(f"{where}: the index has schemaVersion {str(obj.get('schemaVersion'))[:10]}, not 2")
    entries = obj.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError(f"{where}: the index has no `manifests` list")
    media = _text(obj, "mediaType") or OCI_INDEX
    return ImageIndex(media, tuple(_descriptor(e, where, f"manifests[{i}]") for i, e in enumerate(entries)))


def parse_image_manifest(data: bytes, where: str) -> ImageManifest:
    obj = _object(data, where, "manifest")
    if obj.get("schemaVersion") != 2:
        raise ManifestError(
            f"{where}: the manifest has schemaVersion {str(obj.get('schemaVersion'))[:10]}, not 2",
            hint="schema 1 manifests are not supported; push the image again with a current client",
        )
    media = _text(obj, "mediaType") or OCI_MANIFEST
    if media not in IMAGE_TYPES:
        raise ManifestError(f"{where}: {media[:80]!r} is not an image manifest")
    config = _descriptor(obj.get("config"), where, "config")
    if config.media_type not in CONFIG_TYPES:
        raise ManifestError(
            f"{where}: config type {config.media_type[:80]!r} is not an image config",
            hint="this is an artifact, not a container image",
        )
    raw_layers = obj.get("layers")
    if not isinstance(raw_layers, list):
        raise ManifestError(f"{where}: the manifest has no `layers` list")
    layers = tuple(_descriptor(d, where, f"layers[{i}]") for i, d in enumerate(raw_layers))
    for i, layer in enumerate(layers):
        if layer.media_type not in LAYER_TYPES:
            raise ManifestError(
                f"{where}: layers[{i}] has type {layer.media_type[:80]!r}",
                hint="foreign and non-distributable layers are not supported",
            )
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError(f"{where}: `annotations` must be an object")
    return ImageManifest(media, config, layers, {str(k): str(v) for k, v in annotations.items()})


def parse_config(data: bytes, where: str) -> ImageConfig:
    obj = _object(data, where, "image config")
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ManifestError(f"{where}: the image config has no rootfs.diff_ids")
    diff_ids = []
    for i, d in enumerate(rootfs["diff_ids"]):
        try:
            diff_ids.append(check_digest(d))
        except BlobError:
            raise ManifestError(f"{where}: rootfs.diff_ids[{i}] is not a sha256 digest") from None

    return ImageConfig(_text(obj, "os"), _text(obj, "architecture"), _text(obj, "variant"), tuple(diff_ids))


def select_platform(index: ImageIndex, platform: Platform, where: str) -> Descriptor:
    """The index entry for platform (an exact variant match first)."""
    candidates = []
    for d in index.manifests:
        p = d.platform or {}
        if d.media_type not in IMAGE_TYPES + INDEX_TYPES:
            continue
        if platform.matches(p.get("os"), p.get("architecture"), p.get("variant")):
            candidates.append((p.get("variant") != platform.variant, d))
    if not candidates:
        have = sorted(
            {
                "/".join(x for x in ((d.platform or {}).get(k) for k in ("os", "architecture", "variant")) if x)
                for d in index.manifests
                if d.platform and (d.platform or {}).get("os") != "unknown"
            }
        )
        raise ManifestError(
            f"{where} has no image for {platform} (it has: {', '.join(have) or 'none'})",
            hint="choose a base image built for the lock's platform",
        )
    candidates.sort(key=lambda c: c[0])
    return candidates[0][1]


def check_layers_match(manifest: ImageManifest, config: ImageConfig, where: str) -> None:
    if len(manifest.layers) != len(config.diff_ids):
        raise ManifestError(
            f"{where}: the manifest has {len(manifest.layers)} layers, its config {len(config.diff_ids)} diff_ids"
        )


def canonical_json(obj: object) -> bytes:
    """The bytes mlenv writes for a JSON document it makes: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def media_type_of(data: bytes) -> str:
    """A manifest's own mediaType (OCI image manifest when it names none)."""
    try:
        media = json.loads(data).get("mediaType")
    except (ValueError, AttributeError, UnicodeDecodeError):
        media = None
    return media if isinstance(media, str) and media else OCI_MANIFEST


def check_platform(config: ImageConfig, want: Platform, where: str) -> None:
    """ManifestError unless config is an image for the platform `want` (where: for the message)."""
    if not want.matches(config.os, config.architecture, config.variant):
        raise ManifestError(
            f"{where} is an image for {config.platform}, the platform needs {want}",
            hint="pin a base image (or an index) that has the lock's platform",
        )
