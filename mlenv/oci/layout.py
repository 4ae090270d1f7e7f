"""Writing images out of the BlobStore: an OCI image layout (directory or tar) and
the `docker load` archive.

OCI image layout (image-spec image-layout.md): `oci-layout`
(`{"imageLayoutVersion":"1.0.0"}`), `index.json` (an OCI index whose entries are
the images, each annotated `org.opencontainers.image.ref.name` with its name),
and `blobs/sha256/<hex>` for every manifest, index, config and layer reachable
from them. Every JSON file mlenv writes is sorted-key compact JSON; entries of
index.json are sorted by ref name.

As a tar, the layout is deterministic: entries in sorted path order (directories
first as their own entries), mtime 0, uid/gid 0 with empty user and group names,
mode 0644 for files and 0755 for directories, ustar format (no PAX headers). The
same images give the same tar bytes, on any machine.

The `docker load` archive is the OCI layout plus Docker's `manifest.json`
(`[{"Config": "blobs/sha256/<hex>", "RepoTags": [...], "Layers": ["blobs/sha256/<hex>", ...]}]`),
in one deterministic tar: the shape `docker save` writes since Docker 25.
- The classic (overlay2) store reads manifest.json: the image ID is the config
  digest, the layers are unpacked and checked against the config's diff_ids (a
  gzip layer is decompressed); the manifest digest is not kept (RepoDigests stay
  empty until the image is pushed or pulled by digest).
- The containerd image store (Docker 24+ with the containerd snapshotter) reads
  index.json: it keeps the blobs and the manifest, so the image's ID is the
  manifest digest. The name comes from the `io.containerd.image.name` annotation
  (the fully qualified name), `org.opencontainers.image.ref.name` holds the tag.
- The legacy `repositories` file is not written: only loaders older than Docker
  1.10 read it, and they need `<v1 id>/layer.tar` directories as well.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from ..errors import MlenvError
from ..fsutil import atomic_write
from .manifest import canonical_json, kind, media_type_of, parse_image_manifest, parse_index
from .store import OCI_INDEX, BlobStore, Descriptor

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def _reachable(store: BlobStore, digest: str, where: str) -> list[str]:
    """Every blob digest reachable from the manifest or index at digest (itself included)."""
    data = store.read(digest)
    out = [digest]
    if kind(data, None, where) == "index":
        for d in parse_index(data, where).manifests:
            out += _reachable(store, d.digest, where)
    else:
        image = parse_image_manifest(data, where)
        out += [image.config.digest, *(d.digest for d in image.layers)]
    return out


def _descriptor(store: BlobStore, digest: str, annotations: dict[str, str]) -> Descriptor:
    data = store.read(digest)
    return Descriptor(media_type_of(data), digest, len(data), annotations=annotations)


def _index(store: BlobStore, entries: Mapping[str, tuple[str, dict[str, str]]]) -> bytes:
    """index.json: one entry per key (sorted), (digest, annotations) each."""
    items = [_descriptor(store, digest, ann).to_json() for _, (digest, ann) in sorted(entries.items())]
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": items})


def _files(
    store: BlobStore, refs: Mapping[str, str], index: bytes, extra: Mapping[str, bytes] | None = None
) -> dict[str, bytes | str]:
    """path in the layout -> bytes, or a digest whose blob is copied from the store."""
    if not refs:
        raise MlenvError("nothing to write: no images given")
    files: dict[str, bytes | str] = {"oci-layout": OCI_LAYOUT, "index.json": index}
    for name, digest in refs.items():
        for d in _reachable(store, digest, f"{name} ({digest[:19]}…)"):
            if not store.has(d):
                raise MlenvError(f"cannot write {name}: blob {d[:19]}… is not in the store {store.root}")
            files[f"blobs/sha256/{d.split(':', 1)[1]}"] = d
    files.update(extra or {})
    return files


def _layout_files(store: BlobStore, refs: Mapping[str, str]) -> dict[str, bytes | str]:
    return _files(store, refs, _index(store, {n: (d, {REF_NAME: n}) for n, d in refs.items()}))


def write_layout(store: BlobStore, refs: Mapping[str, str], dest: str | os.PathLike[str]) -> Path:
    """An OCI image layout directory at dest: refs maps ref names (e.g. the tag
    `5f2c0d1e9a7b`, or a full name) to manifest/index digests in store. Blobs are
    copied (never hard-linked: the layout may be edited or moved). Files already
    right are left as they are."""
    import shutil

    dest = Path(dest)
    for path, content in sorted(_layout_files(store, refs).items()):
        target = dest / path
        if isinstance(content, bytes):
            atomic_write(target, content)
            continue
        if target.is_file() and target.stat().st_size == store.path(content).stat().st_size:
            continue  # content-addressed: same name, same size, same bytes (verified by the reader)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(store.path(content), tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return dest


def _tar(store: BlobStore, files: Mapping[str, bytes | str], out: IO[bytes]) -> None:
    dirs = sorted({str(Path(p).parent) for p in files if "/" in p} | {"blobs"})
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            _normalize(info)
            tar.addfile(info)
        for path in sorted(files):
            content = files[path]
            info = tarfile.TarInfo(path)
            info.mode = 0o644
            _normalize(info)
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.size = store.path(content).stat().st_size
                with store.open(content) as fh:
                    tar.addfile(info, fh)


def _normalize(info: tarfile.TarInfo) -> None:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""


def _write_tar(store: BlobStore, files: Mapping[str, bytes | str], dest: str | os.PathLike[str]) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            _tar(store, files, fh)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def write_layout_tar(store: BlobStore, refs: Mapping[str, str], dest: str | os.PathLike[str]) -> Path:
    """The OCI image layout of write_layout as one deterministic tar file at dest."""
    return _write_tar(store, _layout_files(store, refs), dest)


def write_docker_archive(
    store: BlobStore, manifest_digest: str, repo_tags: Iterable[str], dest: str | os.PathLike[str]
) -> Path:
    """A tar `docker load` accepts on the classic and the containerd store (module
    docstring) for the image manifest at manifest_digest, named repo_tags
    (`name:tag`, e.g. `mlenv/fraud:5f2c0d1e9a7b`)."""
    from ..image_ref import parse

    where = f"{manifest_digest[:19]}…"
    data = store.read(manifest_digest)
    if kind(data, None, where) != "manifest":
        raise MlenvError(
            f"{where} is an index: `docker load` takes one platform's image manifest",
            hint="pass the manifest digest of the platform to load",
        )
    image = parse_image_manifest(data, where)
    names, entries = [], {}
    for tag in repo_tags:
        try:
            ref = parse(tag)
        except ValueError:
            raise MlenvError(f"invalid image name {tag[:120]!r} for docker load") from None
        if ref.digest or not ref.tag:
            raise MlenvError(f"{tag[:120]!r}: docker load names images name:tag, without a digest")
        full = f"{ref.name}:{ref.tag}"
        names.append(tag)
        # as docker save writes: the full name for containerd, the tag alone as the OCI ref name
        entries[full] = (manifest_digest, {CONTAINERD_NAME: full, REF_NAME: ref.tag})
    if not entries:
        short = manifest_digest.split(":", 1)[1][:12]
        entries[short] = (manifest_digest, {REF_NAME: short})
    blob = "blobs/sha256/"
    docker_manifest = canonical_json([{
        "Config": blob + image.config.digest.split(":", 1)[1],
        "RepoTags": sorted(dict.fromkeys(names)),
        "Layers": [blob + d.digest.split(":", 1)[1] for d in image.layers],
    }])  # fmt: skip
    refs = {name: digest for name, (digest, _) in entries.items()}
    files = _files(store, refs, _index(store, entries), {"manifest.json": docker_manifest})
    return _write_tar(store, files, dest)
