"""A local Docker Engine as a source and a sink of images, through the Engine API only
(the docker SDK client of mlenv.dockerd, on DOCKER_HOST; no docker CLI).

Reading (`read_from_engine`): `GET /images/<name>/get` streams the `docker save`
tar. Its `manifest.json` names the config and the layer files; every file is
streamed into the BlobStore (small ones through memory), symlinks (Docker 25+
links `<id>/layer.tar` to `blobs/sha256/<hex>`) are followed by name, and no
name from the tar ever becomes a path on disk. A saved layer is the
uncompressed tar, so its sha256 must equal the config's diff_id: that is the
check (a compressed layer, as a containerd-store Engine may save, is accepted
when its decompressed bytes hash to the diff_id). mlenv then writes an OCI
manifest for it (`application/vnd.oci.image.manifest.v1+json`, config
`application/vnd.oci.image.config.v1+json`, layers
`application/vnd.oci.image.layer.v1.tar[+gzip]`, sorted-key compact JSON), so the
same Engine image always gives the same manifest digest. The image's identity is
its image ID (= the config digest on the classic store).

Loading (`load_archive`): `POST /images/load` with a tar from
mlenv.oci.layout.write_docker_archive.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import dockerd
from ..errors import MlenvError
from .manifest import ManifestError, canonical_json, check_platform, parse_config, platform_of
from .pulled import PulledImage
from .store import OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST, BlobStore, Descriptor

IN_MEMORY = 1 << 20  # files up to this size are held in memory while the tar streams


@dataclass(frozen=True)
class SaveEntry:
    """One image of a `docker save` manifest.json."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def parse_save_manifest(data: bytes, where: str) -> list[SaveEntry]:
    """manifest.json of a docker-save tar: [{"Config": path, "RepoTags": [...], "Layers": [paths]}]."""
    try:
        items = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError(f"{where}: manifest.json is not valid JSON") from None
    if not isinstance(items, list) or not items:
        raise ManifestError(f"{where}: manifest.json must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: manifest.json[{i}] is not an object")
        config, tags, layers = item.get("Config"), item.get("RepoTags") or [], item.get("Layers")
        if not isinstance(config, str) or not config:
            raise ManifestError(f"{where}: manifest.json[{i}] has no Config path")
        if not isinstance(layers, list) or not all(isinstance(x, str) and x for x in layers):
            raise ManifestError(f"{where}: manifest.json[{i}].Layers must be a list of paths")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise ManifestError(f"{where}: manifest.json[{i}].RepoTags must be a list of names")
        out.append(SaveEntry(config, tuple(tags), tuple(layers)))
    return out


def _member_name(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


class _StreamReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (the Engine's response stream)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def read_save_tar(stream: io.RawIOBase | io.BufferedIOBase | Any, store: BlobStore, where: str):
    """Stream a docker-save tar: (manifest entries, resolve(name) -> ("mem", bytes) | ("blob", digest))."""
    small: dict[str, bytes] = {}
    blobs: dict[str, str] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = _member_name(member.name)
                if member.issym():
                    links[name] = _member_name(posixpath.join(posixpath.dirname(name), member.linkname))
                elif member.islnk():
                    links[name] = _member_name(member.linkname)
                elif member.isfile():
                    fh = tar.extractfile(member)
                    assert fh is not None
                    if member.size <= IN_MEMORY:
                        small[name] = fh.read()
                    else:
                        with store.writer() as w:
                            while chunk := fh.read(1 << 20):
                                w.write(chunk)
                        blobs[name] = w.digest
    except tarfile.TarError as exc:
        raise MlenvError(f"{where}: the Engine's image archive is unreadable ({exc})") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise MlenvError(
                f"no space left on the device holding {store.blob_dir} while reading {where}",
                hint="free some space, or point XDG_CACHE_HOME (the blob store) at a larger disk",
            ) from None
        raise

    def resolve(name: str, depth: int = 0) -> tuple[str, Any]:
        name = _member_name(name)
        if name in small:
            return "mem", small[name]
        if name in blobs:
            return "blob", blobs[name]
        if name in links and depth < 8:
            return resolve(links[name], depth + 1)
        raise ManifestError(f"{where}: the archive has no file {name[:120]!r} that manifest.json names")

    if "manifest.json" not in small:
        raise ManifestError(f"{where}: the Engine's archive has no manifest.json (a pre-1.10 save format?)")
    return parse_save_manifest(small["manifest.json"], where), resolve


def _gunzip_digest(store: BlobStore, digest: str) -> str | None:
    h = hashlib.sha256()
    try:
        with store.open(digest) as raw, gzip.GzipFile(fileobj=raw) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError):
        return None
    return "sha256:" + h.hexdigest()


def read_from_engine(
    reference: str, store: BlobStore, *, platform: str = "linux-64", expect: str | None = None, client: Any = None
) -> PulledImage:
    """Read an image from the local Engine into store (module docstring)."""
    import docker

    own = client is None
    client = client or dockerd.connect()
    where = f"{reference} (local Engine)"
    try:
        info = dockerd.inspect(reference, client)
        if info is None:
            raise MlenvError(
                f"image {reference} is not in the local Engine at DOCKER_HOST={dockerd.docker_host()}",
                hint=f"`docker pull {reference}`, or use a base image from a registry",
            )
        entries, resolve = read_save_tar(
            _StreamReader(iter(client.api.get_image(info["Id"], chunk_size=1 << 20))), store, where
        )
    except docker.errors.APIError as exc:
        raise MlenvError(f"{where}: the Engine could not export the image ({str(exc)[:160]})") from None
    finally:
        if own:
            client.close()
    entry = entries[0]
    kind_, value = resolve(entry.config)
    config = value if kind_ == "mem" else store.read(value)
    config_desc = store.put_bytes(config, OCI_CONFIG)
    cfg = parse_config(config, where)
    check_platform(cfg, platform_of(platform), where)
    if len(entry.layers) != len(cfg.diff_ids):
        raise ManifestError(f"{where}: the archive has {len(entry.layers)} layers, the config {len(cfg.diff_ids)}")
    layers = []
    for path, diff_id in zip(entry.layers, cfg.diff_ids, strict=False):
        kind_, value = resolve(path)
        desc = (
            store.put_bytes(value, OCI_LAYER)
            if kind_ == "mem"
            else Descriptor(OCI_LAYER, value, store.path(value).stat().st_size)
        )
        if desc.digest != diff_id:
            if _gunzip_digest(store, desc.digest) != diff_id:
                raise ManifestError(f"{where}: layer {path[:80]} does not match its diff_id {diff_id[:19]}…")
            desc = Descriptor(OCI_LAYER_GZIP, desc.digest, desc.size)
        layers.append(desc)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layers],
    })  # fmt: skip
    manifest_desc = store.put_bytes(manifest, OCI_MANIFEST)
    accepted = {info["Id"], config_desc.digest, manifest_desc.digest}
    accepted |= {d.split("@", 1)[1] for d in info.get("RepoDigests") or [] if "@" in d}
    if expect and expect not in accepted:
        raise MlenvError(
            f"base image {reference} in the local Engine is {info['Id'][:19]}…, the lock pins {expect[:19]}…",
            hint="`mlenv lock --upgrade` to pin the new base, or restore the pinned image",
        )
    return PulledImage(
        reference=reference, source="engine", name=reference.split("@", 1)[0], digest=info["Id"],
        manifest_digest=manifest_desc.digest, manifest_media_type=OCI_MANIFEST, manifest=manifest,
        config_digest=config_desc.digest, config_media_type=OCI_CONFIG, config=config, layers=tuple(layers),
        diff_ids=cfg.diff_ids, platform=cfg.platform,
    )  # fmt: skip


@dataclass(frozen=True)
class Loaded:
    names: tuple[str, ...]  # "Loaded image: NAME" lines
    ids: tuple[str, ...]  # "Loaded image ID: sha256:..." lines (images without a name)


def load_archive(path: str | os.PathLike[str], client: Any = None) -> Loaded:
    """`POST /images/load` of a docker-load tar (mlenv.oci.layout.write_docker_archive)."""
    import docker

    own = client is None
    client = client or dockerd.connect()
    names, ids = [], []
    try:
        with open(path, "rb") as fh:
            for item in client.api.load_image(fh):
                if not isinstance(item, dict):
                    continue
                if item.get("error") or item.get("errorDetail"):
                    detail = item.get("error") or (item.get("errorDetail") or {}).get("message", "")
                    raise MlenvError(f"the Docker Engine refused {Path(path).name}: {str(detail).strip()[:200]}")
                text = str(item.get("stream") or "").strip()
                if text.startswith("Loaded image ID: "):
                    ids.append(text.removeprefix("Loaded image ID: "))
                elif text.startswith("Loaded image: "):
                    names.append(text.removeprefix("Loaded image: "))
    except docker.errors.APIError as exc:
        raise MlenvError(f"the Docker Engine refused {Path(path).name}: {str(exc)[:200]}") from None
    finally:
        if own:
            client.close()
    return Loaded(tuple(names), tuple(ids))
