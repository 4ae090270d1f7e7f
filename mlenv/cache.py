"""mlenv's host caches (`<user cache>/mlenv`, platformdirs; `XDG_CACHE_HOME` on Linux):
what each area holds, how big it is, and pruning by last use.

Every area mlenv reuses entries from marks an entry as used when it reuses it
(the file's mtime: mlenv.runtime.fetch.fetch_artifacts, mlenv.image.context._cached_tar,
mlenv.image.hit), so "not used for N days" is what `prune` removes. Content-
addressed entries are safe to remove at any time: they are fetched or rebuilt
when next needed. uv's cache is pruned by uv itself (`uv cache prune`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# area -> what it holds (`mlenv cache info` prints these)
AREAS = {
    "artifacts": "downloaded packages by sha256 (wheels, sdists, conda packages), shared by every lock",
    "build-tools": "tars of the installer + uv (+ py-rattler) served to image builds, one per content",
    "hits": "records of checked spec+lock pairs for the fast `mlenv build` cache hit",
    "logs": "build logs",
    "uv": "uv's cache for `mlenv install`",
    "rattler": "conda repodata cache of the solver",
    "rattler-pkgs": "extracted conda packages for `mlenv install`",
    "apt": "what base images say about apt, Debian package indexes by sha256 and their parsed fields (mlenv.apt)",
    "search": "derived package-search indexes of registries (`mlenv search`, `mlenv ui`), one per registry",
    "blobs": "the daemonless builder's blob store: base image blobs, layers, configs, manifests",
    "layers": "the daemonless builder's layer cache: which blob a layer's inputs gave",
    "pyc": "the daemonless builder's .pyc of each wheel, by compiler, reused by other versions of the package",
    "base-facts": "what the daemonless builder read off base images (interpreter, glibc), by their layers",
}
# areas pruned file by file, by last use (the others: uv prunes its own; rattler's are small;
# blobs are removed by `clean` only, a layer cache entry whose blob is gone is a miss)
BY_AGE = ("artifacts", "build-tools", "hits", "logs", "apt", "search", "layers", "pyc", "base-facts")


def cache_root() -> Path:
    from .runtime.fetch import default_cache_root

    return default_cache_root()


@dataclass
class Area:
    name: str
    path: Path
    files: int = 0
    size: int = 0
    stale: list[Path] = field(default_factory=list)  # files not used for the given age
    stale_size: int = 0


def scan(older_than_days: float | None = None, root: Path | None = None) -> list[Area]:
    root = root or cache_root()
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    areas = []
    for name in AREAS:
        area = Area(name, root / name)
        for dirpath, _, names in os.walk(area.path):
            for n in names:
                p = Path(dirpath) / n
                try:
                    st = p.lstat()
                except OSError:
                    continue
                area.files += 1
                area.size += st.st_size
                if cutoff is not None and name in BY_AGE and st.st_mtime < cutoff:
                    area.stale.append(p)
                    area.stale_size += st.st_size
        areas.append(area)
    return areas


def prune(areas: list[Area]) -> tuple[int, int]:
    """Remove the stale files of each area (and uv's unused entries). (files, bytes) removed."""
    files = size = 0
    for area in areas:
        for p in area.stale:
            try:
                sz = p.lstat().st_size
                p.unlink()
            except OSError:
                continue
            files += 1
            size += sz
    uv_dir = next((a.path for a in areas if a.name == "uv"), None)
    if uv_dir is not None and uv_dir.is_dir():
        import subprocess

        from .uvtool import uv_binary

        subprocess.run([uv_binary(), "cache", "prune", "--cache-dir", str(uv_dir)], capture_output=True)
    return files, size


def _writable_retry(fn: Callable[[str], object], path: str, exc: object) -> None:
    """rmtree's onerror: uv marks its cache entries read-only, so make the path writable and retry."""
    os.chmod(path, 0o700)
    fn(path)


def clean(root: Path | None = None) -> None:
    """Remove the whole cache."""
    root = root or cache_root()
    if root.is_dir():
        shutil.rmtree(root, onerror=_writable_retry)


@dataclass
class Pruned:
    older_than_days: float
    stale: dict[str, dict]  # area -> {"files", "size"}
    removed_files: int = 0
    removed_size: int = 0
    dry_run: bool = True

    def to_json(self) -> dict:
        return {"older_than_days": self.older_than_days, "stale": self.stale, "dry_run": self.dry_run,
                "removed": {"files": self.removed_files, "size": self.removed_size}}  # fmt: skip


def prune_unused(older_than_days: float = 30, *, yes: bool = False) -> Pruned:
    """Cache entries not used for `older_than_days`; removed with yes=True (a dry run otherwise)."""
    areas = scan(older_than_days=older_than_days)
    stale = {a.name: {"files": len(a.stale), "size": a.stale_size} for a in areas if a.stale}
    result = Pruned(older_than_days, stale, dry_run=not yes)
    if yes:
        result.removed_files, result.removed_size = prune(areas)
    return result


def clean_all(*, yes: bool = False) -> tuple[Path, int, int]:
    """(root, total size, removed size): the whole cache, removed with yes=True."""
    total = sum(a.size for a in scan())
    if yes:
        clean()
    return cache_root(), total, total if yes else 0
