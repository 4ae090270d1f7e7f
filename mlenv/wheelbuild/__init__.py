"""Wheels mlenv builds itself: git requirements (at their locked commit) and local
packages (a directory, or the project itself), once, at lock time.

The wheel is repacked to fixed bytes (repack.py), stored in the content-addressed
artifact cache (`<user cache>/mlenv/artifacts/sha256/<hex>`) and its sha256 goes
into the lock; every later install and image takes exactly that file from the
cache, from the registry (a registered version carries its built wheels as blobs),
or, when neither has it, from a rebuild on this host that must give the same
sha256. No install step and no image build needs git, the sources or a network.

A small record per build (`<user cache>/mlenv/wheel-builds/<kind>-<key>.json`:
the Built fields) means a git commit or a source tree is built once per machine:
the key is the repository URL (without credentials), commit and subdirectory, or
the tree hash of a local package (tree.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SolveError

if TYPE_CHECKING:  # the no-op lock imports this package for project_dir/project_excludes: keep it light
    from .build import BuildOptions, Built

__all__ = [
    "Built",
    "BuildOptions",
    "build_git",
    "build_path",
    "local_archive",
    "cached",
    "record",
    "build_options",
    "project_excludes",
]


def _record_path(kind: str, key: str) -> Path:
    from ..runtime.cachedir import default_cache_root

    return default_cache_root() / "wheel-builds" / f"{kind}-{key}.json"


def cached(sha256: str) -> Path | None:
    from .build import cached as in_cache

    return in_cache(sha256)


def record(kind: str, key: str) -> Built | None:
    """The Built recorded for (kind, key) whose wheel is still in the cache, else None."""
    from .build import Built

    try:
        data = json.loads(_record_path(kind, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    built = Built.from_json(data) if isinstance(data, dict) else None
    if built is None or cached(built.sha256) is None:
        return None
    return built


def _remember(kind: str, key: str, built: Built) -> None:
    from ..runtime.fsutil import atomic_write

    try:
        atomic_write(_record_path(kind, key), json.dumps(built.to_json(), sort_keys=True))
    except OSError:
        pass  # a read-only cache: the next lock builds again


def git_key(plain_url: str, commit: str, subdirectory: str | None) -> str:
    return hashlib.sha256(f"git\0{plain_url}\0{commit}\0{subdirectory or ''}".encode()).hexdigest()[:40]


def build_git(url: str, commit: str, subdirectory: str | None, opts: BuildOptions) -> Built:
    """The wheel of `url` (credentials in memory only) at `commit`, built once per machine."""
    from ..runtime.secrets import strip_credentials
    from .build import build_wheel
    from .git import checkout

    plain = strip_credentials(url)
    key = git_key(plain, commit, subdirectory)
    found = record("git", key)
    if found is not None:
        return found
    what = f"{plain}@{commit[:12]}" + (f"#subdirectory={subdirectory}" if subdirectory else "")
    with tempfile.TemporaryDirectory(prefix="mlenv-git-") as tmp:
        work = checkout(url, commit, Path(tmp) / "src", ca_bundle=opts.ca_bundle)
        src = work / subdirectory if subdirectory else work
        inside = not subdirectory or os.path.realpath(src).startswith(os.path.realpath(work) + os.sep)
        if not inside or not src.is_dir():
            raise SolveError(f"{what}: no directory {subdirectory!r} at that commit")
        built, _ = build_wheel(src, opts, what=what)
    _remember("git", key, built)
    return built


def build_path(
    root: Path, opts: BuildOptions, *, what: str, exclude: frozenset[str] = frozenset()
) -> tuple[str, Built]:
    """(tree hash, wheel) of the local package at root: built from a copy of exactly the
    files of its tree hash, once per tree."""
    from .build import build_wheel
    from .tree import TreeError, copy_tree, scan

    try:
        tree, entries = scan(root, exclude=exclude)
    except TreeError as exc:
        raise SolveError(f"{what}: {exc}") from None
    found = record("path", tree.split(":", 1)[1][:40])
    if found is not None:
        return tree, found
    with tempfile.TemporaryDirectory(prefix="mlenv-src-") as tmp:
        dest = Path(tmp) / Path(root).name
        try:
            copy_tree(Path(root), entries, dest)
        except TreeError as exc:
            raise SolveError(str(exc)) from None
        built, _ = build_wheel(dest, opts, what=what)
    _remember("path", tree.split(":", 1)[1][:40], built)
    return tree, built


def local_archive(path: Path, *, what: str) -> Built:
    """A local wheel or sdist file used as is: hashed and copied into the artifact cache."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

    from .build import Built, store

    name_part = path.name
    try:
        if name_part.endswith(".whl"):
            pname, version, _, _ = parse_wheel_filename(name_part)
        else:
            pname, version = parse_sdist_filename(name_part)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise SolveError(f"{what}: {name_part!r} is not a wheel or sdist file name ({exc})") from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SolveError(f"{what}: cannot read {path.name} ({exc.strerror})") from None
    sha = hashlib.sha256(data).hexdigest()
    store(data, sha)
    return Built(str(pname), str(version), name_part, sha, len(data))


def build_options(spec, python: str | None, *, offline: bool) -> BuildOptions:
    """Where build backends come from: the spec's own indexes and find-links (expanded)."""
    from ..runtime.secrets import referenced_values
    from ..settings import ca_bundle
    from ..spec import expand_env
    from .build import BuildOptions

    ca = ca_bundle()
    texts = [spec.index_url, *spec.extra_index_urls, *getattr(spec, "find_links", []),
             *(d for d in spec.pypi_dependencies if "${" in d)]  # fmt: skip
    return BuildOptions(
        python=".".join(python.split(".")[:2]) if python else None,
        index_url=expand_env(spec.index_url) if spec.index_url else None,
        extra_index_urls=tuple(expand_env(u) for u in spec.extra_index_urls),
        find_links=tuple(expand_env(u) for u in getattr(spec, "find_links", [])),
        offline=offline,
        ca_bundle=ca,
        secrets=tuple(referenced_values(texts)),
    )


def project_dir(spec) -> Path:
    """The project: the real directory of mlenv.toml; local packages must be inside it."""
    return Path(os.path.realpath(spec.path.parent))


def project_excludes(spec, root: Path) -> frozenset[str]:
    """mlenv.toml and mlenv.lock, relative to a local package's root when they are inside it."""
    out = set()
    for f in (spec.path, spec.lock_path):
        real = Path(os.path.realpath(f))
        if root in real.parents:
            out.add(real.relative_to(root).as_posix())
    return frozenset(out)
