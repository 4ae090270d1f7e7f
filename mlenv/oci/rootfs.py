"""An image's root filesystem, read from its layer tars without a daemon or a mount.

`RootFS` is the reader interface: read a file, list a directory, by absolute
path, symlinks followed inside the image (never on the host). `LayeredRootFS`
implements it over an image's layer tars applied in order (OCI image-spec
layer.md): a layer's entries replace the lower layers' entries of the same path;
a whiteout `<dir>/.wh.<name>` deletes `<dir>/<name>` (and everything below it)
from the lower layers; an opaque whiteout `<dir>/.wh..wh..opq` deletes every lower
entry below `<dir>`. Whiteouts apply to lower layers only, wherever they appear
in their own tar.

Layer tars are untrusted input: member names are normalized (leading `/` and `./`
dropped; a name with a `..` component is ignored), links are resolved inside the
image only (at most 40 hops, `..` never climbs above `/`), and nothing is ever
written to the host file system. Only the content of files a caller asks for
(`keep`, a predicate over the normalized path) is held in memory; every other
entry is kept as metadata (kind, mode, size, link target).

`read_layers(layers, want)` reads layer blobs from mlenv's blob store (the
daemonless builder's base facts, mlenv.image.basefacts); `from_docker_save(path)` reads the tar `docker save` writes (its manifest.json
names the config and the layers in order; Docker 20.10's `<id>/layer.tar` and
Docker 25's OCI-layout `blobs/sha256/<hex>` both work), the form the local Docker
Engine hands out. An OCI blob store (mlenv.oci.store) gives layers as files:
`LayeredRootFS.from_layers([open_blob_1, ...])`.
"""

from __future__ import annotations

import io
import json
import lzma
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from .tarscan import Member, TarScanError, scan

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_HOPS = 40


class RootFSError(Exception):
    """A layer or an image archive is malformed, or a path cannot be read."""


class RootFS(Protocol):
    """Read access to an image's root file system (paths are absolute, '/'-separated)."""

    def read(self, path: str) -> bytes | None:
        """The content of the regular file at path (symlinks followed), None if absent."""
        ...

    def listdir(self, path: str) -> list[str] | None:
        """Sorted names in the directory at path (symlinks followed), None if absent."""
        ...

    def exists(self, path: str) -> bool: ...


@dataclass
class Entry:
    kind: str  # "file" | "dir" | "symlink" | "hardlink" | "other"
    mode: int = 0o644
    size: int = 0
    target: str | None = None  # symlink target as written; hardlink: normalized path of its target
    data: bytes | None = None  # content, for kept files only


def normalize(name: str) -> str | None:
    """A tar member name as a relative image path ('' is the root); None when unsafe."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


class LayeredRootFS:
    """The merged view of layer tars (lowest first). See the module docstring."""

    def __init__(self, *, lenient: bool = False) -> None:
        self.entries: dict[str, Entry] = {"": Entry("dir", 0o755)}
        self.lenient = lenient  # read() of a file whose content was not kept: None instead of an error

    # --- building ------------------------------------------------------------------
    @classmethod
    def from_layers(
        cls, layers: Iterable[Callable[[], IO[bytes]] | str | Path], keep: Callable[[str], bool] = lambda path: True
    ) -> LayeredRootFS:
        """layers: lowest first; each a path or a callable returning a readable binary file
        (gzip/bzip2/xz detected; zstd is not supported by Python's tarfile)."""
        fs = cls()
        for n, layer in enumerate(layers):
            try:
                if isinstance(layer, (str, Path)):
                    with open(layer, "rb") as fh:
                        fs.apply_layer(fh, keep)
                else:
                    with layer() as fh:
                        fs.apply_layer(fh, keep)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise RootFSError(f"layer {n + 1} is not a readable tar ({exc})") from None
        return fs

    def apply_layer(self, fileobj: IO[bytes], keep: Callable[[str], bool] = lambda path: True,
                    max_bytes: int | None = None) -> None:  # fmt: skip
        """Apply one layer tar on top of what is there (contents of kept files up to max_bytes each).

        One streaming pass over the (decompressed) tar with mlenv.oci.tarscan, so a
        compressed layer is decompressed once whatever it holds; a kept hardlink whose
        target's content was not kept (rare) costs a second pass, and so does a layer
        the scanner cannot read (GNU sparse files): tarfile reads it then. Both need a
        file object that can seek back; one that cannot is read once, with the scanner."""
        start = fileobj.tell() if _seekable(fileobj) else None

        def wanted_file(path: str | None, size: int) -> bool:
            return path is not None and keep("/" + path) and (max_bytes is None or size <= max_bytes)

        def want(name: str, size: int) -> bool:
            return wanted_file(normalize(name), size)

        try:
            try:
                adds, deletes, opaque = _collect(scan(_decompressed(fileobj), want))
            except TarScanError as exc:
                if start is None:
                    raise tarfile.ReadError(str(exc)) from None
                fileobj.seek(start)
                adds, deletes, opaque = _collect(_tarfile_members(_decompressed(fileobj), want))
        except (zlib.error, lzma.LZMAError) as exc:  # corrupt compressed data
            raise tarfile.ReadError(f"corrupt compressed layer ({exc})") from None
        # a hardlink points at a file of its own layer: give it that file's content now
        waiting: dict[str, list[str]] = {}  # target -> kept hardlinks whose content was not read
        for path, entry in adds.items():
            if entry.kind == "hardlink":
                src = adds.get(entry.target or "")
                if src is not None and src.kind == "file":
                    if src.data is None and wanted_file(path, src.size):
                        waiting.setdefault(entry.target or "", []).append(path)
                    adds[path] = Entry("file", entry.mode, src.size, data=src.data)
        if waiting and start is not None:
            fileobj.seek(start)
            for m in _tarfile_members(_decompressed(fileobj), lambda name, size: normalize(name) in waiting):
                target = normalize(m.name)
                if target is not None and target in waiting and m.data is not None:
                    for link in waiting[target]:
                        adds[link].data = m.data
        for directory in opaque:
            prefix = directory + "/" if directory else ""
            for p in [p for p in self.entries if p.startswith(prefix) and p != directory]:
                del self.entries[p]
        for path in deletes:
            for p in [p for p in self.entries if p == path or p.startswith(path + "/")]:
                del self.entries[p]
        for path, entry in adds.items():
            old = self.entries.get(path)
            if old is not None and old.kind == "dir" and entry.kind != "dir":
                for p in [p for p in self.entries if p.startswith(path + "/")]:
                    del self.entries[p]
            self.entries[path] = entry
            parent = posixpath.dirname(path)
            while parent and parent not in self.entries:  # implied parents
                self.entries[parent] = Entry("dir", 0o755)
                parent = posixpath.dirname(parent)

    # --- reading -------------------------------------------------------------------
    def resolve(self, path: str) -> str | None:
        """The normalized path that path names once every symlink on the way is
        followed inside the image; None when it does not exist or loops."""
        pending = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join(done + [part])
            entry = self.entries.get(candidate)
            if entry is None:
                return None
            if entry.kind == "symlink":
                hops += 1
                if hops > MAX_HOPS:
                    return None
                target = entry.target or ""
                if target.startswith("/"):
                    done = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
            done.append(part)
        return "/".join(done)

    def entry(self, path: str) -> Entry | None:
        real = self.resolve(path)
        return None if real is None else self.entries.get(real)

    def read(self, path: str) -> bytes | None:
        real = self.resolve(path)
        entry = None if real is None else self.entries.get(real)
        if entry is not None and entry.kind == "hardlink":  # target in a lower layer
            entry = self.entries.get(entry.target or "")
        if entry is None or entry.kind != "file":
            return None
        if entry.data is None:
            if self.lenient:
                return None
            raise RootFSError(f"{path}: the content of this file was not kept (add it to `keep`)")
        return entry.data

    def listdir(self, path: str) -> list[str] | None:
        real = self.resolve(path)
        if real is None or self.entries.get(real, Entry("other")).kind != "dir":
            return None
        prefix = real + "/" if real else ""
        return sorted({p[len(prefix) :].split("/", 1)[0] for p in self.entries if p.startswith(prefix) and p != real})

    def exists(self, path: str) -> bool:
        return self.resolve(path) is not None

    def kind(self, path: str) -> str | None:
        """ "file", "dir", "symlink" (a dangling one), "hardlink", "other", or None when absent."""
        entry = self.entry(path)
        if entry is not None and entry.kind == "hardlink":
            target = self.entries.get(entry.target or "")
            return target.kind if target is not None else None
        return None if entry is None else entry.kind


def _collect(members: Iterable[Member]) -> tuple[dict[str, Entry], list[str], list[str]]:
    """(entries by normalized path, whiteout deletions, opaque directories) of one layer."""
    adds: dict[str, Entry] = {}
    deletes: list[str] = []
    opaque: list[str] = []
    for m in members:
        path = normalize(m.name)
        if path is None or path == "":
            continue
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base == OPAQUE:
            opaque.append(parent)
            continue
        if base.startswith(WHITEOUT):
            deletes.append(posixpath.join(parent, base[len(WHITEOUT) :]))
            continue
        if m.type == "dir":
            entry = Entry("dir", m.mode)
        elif m.type == "symlink":
            entry = Entry("symlink", 0o777, target=m.linkname)
        elif m.type == "hardlink":
            target = normalize(m.linkname)
            if target is None:
                continue
            entry = Entry("hardlink", m.mode, target=target)
        elif m.type == "file":
            entry = Entry("file", m.mode, m.size, data=m.data)
        else:
            entry = Entry("other", m.mode)
        adds[path] = entry
    return adds, deletes, opaque


def _tarfile_members(stream: IO[bytes], want: Callable[[str, int], bool]) -> Iterator[Member]:
    """tarfile's reading of a layer, as scanner members (for what the scanner refuses)."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            kind = ("dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk()
                    else "file" if m.isfile() else "other")  # fmt: skip
            data = None
            if kind == "file" and want(m.name, m.size):
                fh = tar.extractfile(m)
                data = fh.read() if fh is not None else b""
            yield Member(m.name, kind, m.size if kind == "file" else 0, m.mode & 0o7777, m.linkname, data)


def _seekable(fileobj: IO[bytes]) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Prefixed(io.RawIOBase):
    """The bytes already read from a stream that cannot seek back, then the rest of it."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _decompressed(fileobj: IO[bytes]) -> IO[bytes]:
    """The tar stream of a layer: gzip (every member of a multi-member file: tarfile's
    own streaming gzip reads only the first), bzip2 and xz detected by their magic;
    zstd is not readable here."""
    import bz2
    import gzip
    import lzma

    if _seekable(fileobj):
        at = fileobj.tell()
        head = fileobj.read(6)
        fileobj.seek(at)
        src: IO[bytes] = fileobj
    else:
        head = fileobj.read(6)
        src = io.BufferedReader(_Prefixed(head, fileobj), buffer_size=1 << 20)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(src)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(src)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise tarfile.ReadError("zstd-compressed layers are not supported")
    return src


def clean(path: str) -> str:
    """An absolute (or relative) image path as an entries key: no leading '/', no '.', '..' resolved lexically."""
    p = posixpath.normpath("/" + path).lstrip("/")
    return "" if p == "." else p


def read_layers(layers: Iterable[tuple[Callable[[], IO[bytes]], bool]], want: Callable[[str], bool], *,
                max_bytes: int = 8 << 20) -> LayeredRootFS:  # fmt: skip
    """The merged root file system of layer blobs, lowest first: (opener, gzip?) pairs (the
    compression is detected from the bytes; the flag is kept for callers that know it).
    File contents are kept for paths `want` accepts (relative: `etc/os-release`), up to
    max_bytes each; reading any other file gives None."""
    fs = LayeredRootFS(lenient=True)
    for n, (opener, _gzip) in enumerate(layers):
        try:
            with opener() as fh:
                fs.apply_layer(fh, lambda path: want(path.lstrip("/")), max_bytes)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise RootFSError(f"layer {n + 1} is not a readable tar ({exc})") from None
    return fs


def from_docker_save(
    archive: str | Path, keep: Callable[[str], bool] = lambda path: True
) -> tuple[LayeredRootFS, dict]:
    """(root file system, image config) of a `docker save` tar holding one image."""
    try:
        outer = tarfile.open(archive, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise RootFSError(f"{archive}: not a docker-save tar ({exc})") from None
    with outer:
        try:
            manifest = json.loads(_member_bytes(outer, "manifest.json"))
            if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
                raise ValueError("manifest.json must list exactly one image")
            config = json.loads(_member_bytes(outer, manifest[0]["Config"]))
            layer_names = manifest[0]["Layers"]
            if not isinstance(config, dict) or not isinstance(layer_names, list):
                raise ValueError("malformed manifest.json")
        except (KeyError, ValueError, TypeError) as exc:
            raise RootFSError(f"{archive}: malformed docker-save manifest ({exc})") from None

        def opener(name: str) -> Callable[[], IO[bytes]]:
            def open_layer() -> IO[bytes]:
                member = _member(outer, name)
                fh = outer.extractfile(member)
                if fh is None:
                    raise RootFSError(f"{archive}: layer {name} is not a file")
                return fh

            return open_layer

        fs = LayeredRootFS.from_layers([opener(str(n)) for n in layer_names], keep)
    return fs, config


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    wanted = normalize(name)
    for m in tar.getmembers():
        if normalize(m.name) == wanted and m.isfile():
            return m
    raise KeyError(f"{name} not in the archive")


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    fh = tar.extractfile(_member(tar, name))
    if fh is None:
        raise KeyError(name)
    return fh.read()
