"""Installing a lock on this host: the lock becomes an install plan, and the
stdlib-only installer (mlenv.runtime.install) materializes it; `verify` compares a
prefix with the lock.

The plan is the lock's packages for one platform (mlenv.runtime.plan); image
builds make one plan per install step (the env, each PyPI group) with `plan_for`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .lockfile import Lock, Package
from .runtime.errors import InstallError
from .runtime.install import InstallResult
from .runtime.inventory import Difference, compare, inventory
from .runtime.names import normalize
from .runtime.plan import PART_ALL, Artifact, Plan

__all__ = ["plan_for", "install", "verify", "expected", "host_platform", "check_platform", "InstallResult",
           "Difference", "InstallError"]  # fmt: skip


def host_platform() -> str:
    import platform as _platform

    machine = _platform.machine().lower()
    system = sys.platform
    if system.startswith("linux"):
        return "linux-aarch64" if machine in ("aarch64", "arm64") else "linux-64"
    if system == "darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    if system.startswith("win"):
        return "win-64"
    return f"{system}-{machine}"


def check_platform(lock: Lock, platform: str | None) -> str:
    platform = platform or host_platform()
    if platform not in lock.platforms:
        have = ", ".join(sorted(lock.platforms)) or "none"
        raise InstallError(
            f"mlenv.lock has no packages for platform {platform} (it has: {have})",
            hint=f'add "{platform}" to [environment] platforms in mlenv.toml and run `mlenv lock`, or pass --platform',
        )
    return platform


def needs_interpreter(lock: Lock, platform: str) -> bool:
    return bool(lock.for_platform(platform, "pypi"))


def conda_python(lock: Lock, platform: str) -> Package | None:
    """The lock's conda `python` package for platform, if it has one."""
    return next((p for p in lock.for_platform(platform, "conda") if p.name == "python"), None)


def fetch(pkgs: list[Package], **options) -> dict[str, Path]:
    """sha256 -> a verified local file for each locked package (mlenv.runtime.fetch.fetch_artifacts)."""
    from .runtime.fetch import fetch_artifacts

    return fetch_artifacts([artifact(p) for p in pkgs], **options)


def artifact(pkg: Package) -> Artifact:
    return Artifact(pkg.manager, pkg.name, pkg.version, pkg.url, pkg.sha256, dict(pkg.extra))


def plan_for(lock: Lock, platform: str, *, part: str = PART_ALL, pypi: list[Package] | None = None,
             group: str | None = None) -> Plan:  # fmt: skip
    """The install plan of `part` of the lock for platform; `pypi`/`group`: one PyPI group of an image."""
    return Plan(
        platform=platform,
        python=lock.platform_python(platform),
        interpreter=lock.image.get("python"),
        needs_interpreter=needs_interpreter(lock, platform),
        part=part,
        group=group,
        conda=[artifact(p) for p in lock.for_platform(platform, "conda")] if part != "pypi" else [],
        pypi=[artifact(p) for p in (pypi if pypi is not None else lock.for_platform(platform, "pypi"))]
        if part != "env"
        else [],
    )


def install(
    lock: Lock,
    prefix: str | os.PathLike[str],
    *,
    platform: str | None = None,
    python: str | None = None,
    pypi_prefix: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    offline: bool = False,
    index_urls: tuple[str, ...] = (),
    ca_bundle: str | None = None,
    progress=None,
    project: Path | None = None,
    spec=None,
) -> InstallResult:
    """Materialize the lock's packages for platform (default: this host's) into prefix.
    Wheels mlenv built (git, local packages) come from the cache, else from a rebuild
    in `project` that must match (mlenv.wheelbuild.ensure; `restore` puts the
    registry's copies into the cache first)."""
    from .runtime import install as runtime_install
    from .uvtool import uv_binary
    from .wheelbuild.ensure import ensure

    platform = check_platform(lock, platform)
    ensure(lock.for_platform(platform, "pypi"), project=project, spec=spec, offline=offline, progress=progress)
    plan = plan_for(lock, platform)
    return runtime_install.install(plan, prefix, python=python, pypi_prefix=pypi_prefix, no_cache=no_cache,
                                   offline=offline, index_urls=index_urls, ca_bundle=ca_bundle,
                                   uv=uv_binary() if plan.pypi else None, progress=progress)  # fmt: skip


def expected(lock: Lock, platform: str) -> dict[str, dict[str, str]]:
    """manager -> {name: version} of what a prefix of this lock must hold (PyPI names normalized)."""
    out: dict[str, dict[str, str]] = {}
    for p in lock.for_platform(platform):
        out.setdefault(p.manager, {})[normalize(p.name) if p.manager == "pypi" else p.name] = p.version
    return out


def verify(lock: Lock, prefix: str | os.PathLike[str], *, platform: str | None = None,
           pypi_prefix: str | os.PathLike[str] | None = None) -> list[Difference]:  # fmt: skip
    platform = check_platform(lock, platform)
    path = Path(prefix)
    if not path.is_dir():
        raise InstallError(f"{path}: no such directory", hint="run `mlenv install --prefix` first")
    inv = inventory(str(path.absolute()), str(pypi_prefix) if pypi_prefix else None)
    exp = expected(lock, platform)
    return compare({m: exp.get(m, {}) for m in ("conda", "pypi")}, inv)
