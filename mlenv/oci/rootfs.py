"""Read an image's file system from its layer blobs, without extracting it.

The merged view of an image's layers (OCI image-spec layer.md): each layer's
entries over the ones below, with whiteouts (`.wh.<name>` removes <name> and its
subtree from the layers below; `.wh..wh..opq` removes everything below its
directory from the layers below). Only names, kinds and link targets are kept for
every path; file contents only for the paths the caller asks for (`want`), up to
`max_bytes` each. Nothing is written to disk and nothing of the image runs.
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class RootFSError(Exception):
    """A layer is unreadable or a path cannot be resolved."""


@dataclass
class Node:
    kind: str  # file | dir | symlink | hardlink | other
    target: str = ""  # symlink / hardlink target as stored
    size: int = 0
    content: bytes | None = None


def clean(path: str) -> str:
    """A member name as a rootfs path: no leading './' or '/', no trailing '/'."""
    p = posixpath.normpath("/" + path).lstrip("/")
    return "" if p == "." else p


class RootFS:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    # --- building -------------------------------------------------------------------
    def apply_layer(self, entries: Iterable[tuple[str, Node]]) -> None:
        """One layer's entries (rootfs path, node), in archive order."""
        layer: dict[str, Node] = {}
        removed: list[str] = []
        opaque: list[str] = []
        for path, node in entries:
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                opaque.append(parent)
            elif base.startswith(WHITEOUT):
                removed.append(posixpath.join(parent, base[len(WHITEOUT) :]))
            else:
                layer[path] = node
        for gone in removed:
            self._drop(gone, include_self=True)
        for directory in opaque:
            self._drop(directory, include_self=False)
        for path, node in layer.items():
            old = self.nodes.get(path)
            if old is not None and old.kind == "dir" and node.kind != "dir":
                self._drop(path, include_self=False)  # a file replacing a directory hides its subtree
            self.nodes[path] = node

    def _drop(self, path: str, *, include_self: bool) -> None:
        prefix = path + "/" if path else ""
        for p in [p for p in self.nodes if p.startswith(prefix) or (include_self and p == path)]:
            del self.nodes[p]

    # --- queries --------------------------------------------------------------------
    def resolve(self, path: str, *, max_links: int = 40) -> str | None:
        """The path with every symlink (in any component) followed inside this
        rootfs (absolute targets are relative to its root), or None if missing."""
        parts = [p for p in clean(path).split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join(done + [part])
            node = self.nodes.get(cur)
            if node is None:
                if not done and cur == "":
                    continue
                return None
            if node.kind == "symlink":
                hops += 1
                if hops > max_links:
                    raise RootFSError(f"too many symlinks resolving /{path}")
                target = node.target
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/".join(done)

    def kind(self, path: str) -> str | None:
        real = self.resolve(path)
        if real is None:
            return None
        if real == "":
            return "dir"
        node = self.nodes.get(real)
        return node.kind if node else None

    def read(self, path: str) -> bytes | None:
        """Content of a file kept by `want` (symlinks and hardlinks followed)."""
        real = self.resolve(path)
        node = self.nodes.get(real) if real else None
        for _ in range(8):
            if node is None or node.kind != "hardlink":
                break
            node = self.nodes.get(clean(node.target))
        return node.content if node is not None and node.kind == "file" else None

    def listdir(self, path: str) -> list[str]:
        real = self.resolve(path)
        if real is None:
            return []
        prefix = real + "/" if real else ""
        return sorted({p[len(prefix) :].split("/", 1)[0] for p in self.nodes if p.startswith(prefix) and p != real})


def read_layers(
    layers: Iterable[tuple[Callable[[], IO[bytes]], bool]],
    want: Callable[[str], bool],
    *,
    max_bytes: int = 8 << 20,
) -> RootFS:
    """The merged rootfs of layers (opener, gzip?) from the bottom up."""
    from .layer import read_tar_members

    fs = RootFS()
    for opener, gz in layers:
        entries: list[tuple[str, Node]] = []
        try:
            with opener() as fh:
                for member, tar in read_tar_members(fh, gzip=gz):
                    path = clean(member.name)
                    if not path:
                        continue
                    if member.isdir():
                        node = Node("dir")
                    elif member.issym():
                        node = Node("symlink", member.linkname)
                    elif member.islnk():
                        node = Node("hardlink", member.linkname)
                    elif member.isreg():
                        node = Node("file", size=member.size)
                        if member.size <= max_bytes and want(path):
                            src = tar.extractfile(member)
                            node.content = src.read() if src is not None else None
                    else:
                        node = Node("other")
                    entries.append((path, node))
        except (OSError, EOFError, ValueError, tarfile.TarError, zlib.error) as exc:
            raise RootFSError(f"unreadable layer: {type(exc).__name__}: {exc}") from None
        fs.apply_layer(entries)
    return fs
