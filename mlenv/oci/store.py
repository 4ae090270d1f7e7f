"""The content-addressed blob store and the OCI descriptor.

A store is a directory laid out as an OCI image layout's blob area:
`<root>/blobs/sha256/<64 hex>`. Every blob enters it through a temporary file
in the same directory, is hashed while written, and is renamed into place only
when its digest is right, so a reader never sees a partial or wrong blob, and
two writers of the same blob are harmless. Blobs are verified again on read
when the caller asks (`open(..., verify=True)`), because a cache on disk is
input like any other.

The default store is `<user cache>/mlenv/blobs` (mlenv.oci.store.default_store()).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}\Z")

# Media types mlenv reads and writes.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class BlobError(Exception):
    """A blob is missing, or its bytes do not match its digest."""


def check_digest(digest: object) -> str:
    """A digest mlenv accepts: sha256 and 64 lowercase hex digits, nothing else
    (it becomes a file name: no other shape may reach the file system)."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise BlobError(f"invalid digest {str(digest)[:80]!r} (expected sha256:<64 hex>)")
    return digest


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (image-spec descriptor.md)."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: dict[str, str] | None = field(default=None, hash=False, compare=False)
    artifact_type: str | None = None

    def to_json(self) -> dict:
        """The descriptor as it appears in a manifest or index (keys in spec order;
        serializers sort keys anyway)."""
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict) -> Descriptor:
        if not isinstance(data, dict):
            raise BlobError("a descriptor must be a JSON object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BlobError(f"malformed descriptor {str(data)[:120]}")
        annotations = data.get("annotations") or {}
        platform = data.get("platform")
        if not isinstance(annotations, dict) or (platform is not None and not isinstance(platform, dict)):
            raise BlobError(f"malformed descriptor {str(data)[:120]}")
        return cls(media_type, check_digest(digest), size, dict(annotations), platform, data.get("artifactType"))


class BlobStore:
    """blobs/sha256/<hex> under root; writes are atomic and digest-checked."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    @property
    def blob_dir(self) -> Path:
        return self.root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.blob_dir / check_digest(digest).split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes, media_type: str, **kw) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        dest = self.path(digest)
        if not dest.is_file():
            with self.writer(expected=digest) as w:
                w.write(data)
        return Descriptor(media_type, digest, len(data), **kw)

    def put_file(self, src: str | os.PathLike[str], media_type: str, **kw) -> Descriptor:
        """Copy a file in (streamed, hashed while copied)."""
        with open(src, "rb") as fh, self.writer() as w:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                w.write(chunk)
        return Descriptor(media_type, w.digest, w.size, **kw)

    def writer(self, expected: str | None = None) -> BlobWriter:
        """A file-like sink: `with store.writer() as w: w.write(...)`; afterwards
        w.digest and w.size are set and the blob is in the store."""
        return BlobWriter(self, expected)

    def open(self, digest: str, *, verify: bool = False) -> IO[bytes]:
        path = self.path(digest)
        if not path.is_file():
            raise BlobError(f"blob {digest} is not in {self.root}")
        if verify and sha256_file(path) != digest:
            path.unlink(missing_ok=True)
            raise BlobError(f"blob {digest} in {self.root} is corrupt (removed; fetch it again)")
        return open(path, "rb")

    def read(self, digest: str, *, verify: bool = True) -> bytes:
        with self.open(digest, verify=verify) as fh:
            return fh.read()

    def digests(self) -> Iterator[str]:
        if self.blob_dir.is_dir():
            for p in sorted(self.blob_dir.iterdir()):
                if re.fullmatch(r"[0-9a-f]{64}", p.name):
                    yield "sha256:" + p.name


class BlobWriter:
    def __init__(self, store: BlobStore, expected: str | None):
        self.store = store
        self.expected = check_digest(expected) if expected else None
        self.digest = ""
        self.size = 0
        self._hash = hashlib.sha256()
        self._fh: IO[bytes] | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> BlobWriter:
        import tempfile

        from ..runtime.fsutil import interrupts_held

        self.store.blob_dir.mkdir(parents=True, exist_ok=True)
        fd = -1
        try:
            with interrupts_held():  # the file exists only once self._tmp names it
                fd, tmp = tempfile.mkstemp(prefix=".blob.", suffix=".part", dir=self.store.blob_dir)
                self._tmp = Path(tmp)
                self._fh = os.fdopen(fd, "wb")
        except BaseException:  # a held signal is raised here, and __exit__ does not run for it
            if self._fh is not None:
                self._fh.close()
            elif fd >= 0:
                os.close(fd)
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
            raise
        return self

    def write(self, data: bytes) -> int:
        assert self._fh is not None
        self._hash.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._fh is not None and self._tmp is not None
        try:
            self._fh.close()
            if exc_type is not None:
                return
            self.digest = "sha256:" + self._hash.hexdigest()
            if self.expected and self.digest != self.expected:
                raise BlobError(f"blob content hashes to {self.digest}, expected {self.expected}")
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.store.path(self.digest))
            self._tmp = None
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def default_store() -> BlobStore:
    """<user cache>/mlenv/blobs (XDG_CACHE_HOME respected)."""
    try:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("mlenv"))
    except ImportError:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlenv"
    return BlobStore(root / "blobs")
