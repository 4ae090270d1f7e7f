"""First use on a host: every wheel mlenv built for a lock (git, local packages) must be
in the artifact cache before an install or an image build reads it by sha256.

In order: the cache; the registry's copy (`blobs`: a registered version carries its
built wheels, content-addressed); a rebuild from the source on this host (git at the
locked commit, with the spec's credentials; a local package whose files still have
the locked tree hash), which must give exactly the locked sha256. Anything else is
an error that says where the wheel can come from; nothing is installed from a
wheel that is not the locked one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ..runtime.errors import InstallError
from .build import BuildOptions, cached, store

BUILT = ("git", "path")


def missing(packages) -> list:
    """The lock packages (any platform, unique by sha256) whose built wheel is not cached."""
    seen: set[str] = set()
    out = []
    for p in packages:
        if p.manager != "pypi" or p.get("source") not in BUILT or p.sha256 in seen:
            continue
        seen.add(p.sha256)
        if cached(p.sha256) is None:
            out.append(p)
    return out


def ensure(packages, *, project: Path | None, spec=None, blobs: Callable[[str], bytes | None] | None = None,
           offline: bool = False, progress=None) -> int:  # fmt: skip
    """Make every built wheel of `packages` (lock Packages) present in the cache; the
    number rebuilt. project: the directory of the lock's mlenv.toml (local packages);
    spec: its Spec (credentialed git URLs, build indexes), when there is one."""
    from ..errors import MlenvError

    say = progress or (lambda msg: None)
    rebuilt = 0
    for p in missing(packages):
        if blobs is not None:
            data = blobs(p.sha256)
            if data is not None and hashlib.sha256(data).hexdigest() == p.sha256:
                store(data, p.sha256)
                continue
        if offline:
            raise InstallError(f"PyPI package {p.name} {p.version} (built from {p.get('source')} {p.url}) is not in "
                               "mlenv's cache and --offline forbids rebuilding it",
                               hint="run once without --offline, or `mlenv restore NAME@V --prefix` from the registry")  # fmt: skip
        say(f"rebuilding {p.name} {p.version} from {p.url} (not in this machine's cache)")
        try:
            got = _rebuild(p, project, spec)
        except MlenvError as exc:
            raise InstallError(f"PyPI package {p.name} {p.version} is a wheel mlenv built from {p.url}; it is not in "
                               f"this machine's cache and rebuilding it failed: {exc.message}",
                               hint="`mlenv restore NAME@V --prefix` fetches the locked wheel from the registry it "
                                    "was registered in; or run `mlenv lock` here") from None  # fmt: skip
        if got != p.sha256:
            raise InstallError(f"PyPI package {p.name} {p.version}: the wheel rebuilt here from {p.url} has sha256 "
                               f"{got}, the lock has {p.sha256} (another build backend or compiler than on the "
                               "machine that locked it); mlenv installs only the locked wheel",
                               hint="`mlenv restore NAME@V --prefix` fetches the locked wheel from the registry; or "
                                    "run `mlenv lock` here to lock this machine's build")  # fmt: skip
        rebuilt += 1
    return rebuilt


def _rebuild(p, project: Path | None, spec) -> str:
    from ..errors import SolveError
    from . import build_git, build_options, build_path, local_archive

    opts = BuildOptions(python=None)
    if spec is not None:
        opts = build_options(spec, None, offline=False)
    if p.get("source") == "git":
        url = str(p.url)[len("git+") :].split("#", 1)[0].rsplit("@", 1)[0]
        url = _credentialed(url, spec)
        return build_git(url, str(p.get("commit")), p.get("subdirectory") or None, opts).sha256
    if project is None:
        raise SolveError(f"the local package {p.url} is not on this machine")
    root = Path(os.path.realpath(project))
    target = Path(os.path.realpath(root / str(p.url)))
    if target != root and root not in target.parents:
        raise SolveError(f"{p.url} is outside the project")
    if not target.exists():
        raise SolveError(f"the local package {p.url} is not on this machine (no {target})")
    if not p.get("source-tree"):
        return local_archive(target, what=str(p.url)).sha256
    from . import project_excludes

    excludes: frozenset[str] = frozenset()
    if spec is not None:
        excludes = project_excludes(spec, target)
    tree, built = build_path(target, opts, what=str(p.url), exclude=excludes)
    if tree != p.get("source-tree"):
        raise SolveError(f"the local package {p.url} changed since it was locked (tree {tree[:19]}…, locked "
                         f"{str(p.get('source-tree'))[:19]}…)")  # fmt: skip
    return built.sha256


def _credentialed(plain: str, spec) -> str:
    """The spec's own URL for this repository (its ${VAR} userinfo expanded), else plain."""
    if spec is None:
        return plain
    from ..reqforms import GIT, parse, strip_userinfo
    from ..spec import expand_env

    for dep in spec.pypi_dependencies:
        try:
            form = parse(dep)
        except ValueError:
            continue
        if form.kind == GIT and strip_userinfo(form.url or "") == plain:
            return expand_env(form.url or "")
    return plain
