"""Atomic file writes: every file mlenv writes goes through here, so a failed
or interrupted command leaves the previous file byte-for-byte intact."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, mode: int | None = None) -> None:
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def link_or_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """dest becomes src's content: a hard link when on one filesystem, else a copy."""
    import shutil

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def fix_mtimes(roots, epoch: int) -> None:
    """Every entry under each root (symlinks themselves, not their targets), the roots
    and all their parent directories get mtime = epoch: an image layer written by an
    install then has the same bytes on every run (a layer tar records mtimes)."""
    ns = (epoch * 1_000_000_000, epoch * 1_000_000_000)
    parents: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not os.path.lexists(root):
            continue
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    os.utime(os.path.join(dirpath, name), ns=ns, follow_symlinks=False)
        os.utime(root, ns=ns, follow_symlinks=False)
        parents.update(p for p in root.parents if p != Path(root.anchor))
    for p in sorted(parents):
        os.utime(p, ns=ns)
