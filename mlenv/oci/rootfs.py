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

import json
import posixpath
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

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
        """Apply one layer tar on top of what is there (contents of kept files up to max_bytes each)."""
        adds: dict[str, Entry] = {}
        deletes: list[str] = []
        opaque: list[str] = []
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            members = tar.getmembers()
            wanted: set[str] = set()
            for m in members:  # first pass: which file contents are needed (kept files, targets of kept hardlinks)
                path = normalize(m.name)
                if path is None:
                    continue
                if m.isfile() and keep("/" + path) and (max_bytes is None or m.size <= max_bytes):
                    wanted.add(path)
                elif m.islnk() and keep("/" + path):
                    target = normalize(m.linkname)
                    if target is not None:
                        wanted.add(target)
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
                if m.isdir():
                    entry = Entry("dir", m.mode & 0o7777)
                elif m.issym():
                    entry = Entry("symlink", 0o777, target=m.linkname)
                elif m.islnk():
                    target = normalize(m.linkname)
                    if target is None:
                        continue
                    entry = Entry("hardlink", m.mode & 0o7777, target=target)
                elif m.isfile():
                    entry = Entry("file", m.mode & 0o7777, m.size)
                    if path in wanted:
                        fh = tar.extractfile(m)
                        entry.data = fh.read() if fh is not None else b""
                else:
                    entry = Entry("other", m.mode & 0o7777)
                adds[path] = entry
        # a hardlink points at a file of its own layer: give it that file's content now
        for path, entry in adds.items():
            if entry.kind == "hardlink":
                src = adds.get(entry.target or "")
                if src is not None and src.kind == "file":
                    adds[path] = Entry("file", entry.mode, src.size, data=src.data)
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
        """"file", "dir", "symlink" (a dangling one), "hardlink", "other", or None when absent."""
        entry = self.entry(path)
        if entry is not None and entry.kind == "hardlink":
            target = self.entries.get(entry.target or "")
            return target.kind if target is not None else None
        return None if entry is None else entry.kind


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
