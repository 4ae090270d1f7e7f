"""The build context of a lock: Dockerfile, installer tooling, sub-locks, every
artifact of the lock (from mlenv's host-side artifact cache: the builder stages
install offline), and the image's own mlenv.lock + mlenv.toml.

Context layout:
  Dockerfile
  ca/ca-bundle.pem             only with --ca-bundle AND a stage that reaches the network
                               (an sdist group, or a host that cannot copy its uv)
  tools/bin/uv                 this mlenv's uv binary (linux-64 target on an x86_64 Linux host)
  tools/lib/mlenv/...          the installer and the stdlib-only modules it imports
  rattler/                     this mlenv's py-rattler (only when the lock has conda packages)
  env/env.lock env/files/      sub-lock of the env part (conda packages, venv) + its conda artifacts
  pypi/<group>/pypi.lock       sub-lock of one PyPI group
  pypi/<group>/files/          + its wheels / sdists
  meta/mlenv.lock meta/mlenv.toml
"""

from __future__ import annotations

import io
import os
import platform as _platform
import re
import sys
import tarfile
from pathlib import Path

from .dockerfile import Group, Plan, render

# The installer and what it imports; all stdlib-only at module top.
INSTALLER_MODULES = (
    "__init__.py", "errors.py", "fsutil.py", "spec.py", "lockfile.py", "install.py",
    "solve/__init__.py", "solve/conda.py", "solve/platforms.py",
)  # fmt: skip
FIXED_MTIME = 1_700_000_000  # reproducible context entries

# An artifact at least this big is a PyPI group (a builder stage and an image layer) of
# its own; smaller ones share one. More than MAX_GROUPS: the smallest are merged.
GROUP_MIN_BYTES = int(os.environ.get("MLENV_BUILD_GROUP_MIN_BYTES") or 4_000_000)
MAX_GROUPS = 30


def tools_inline(platform: str) -> bool:
    """Copy this installation's uv (and py-rattler) into the image: only when
    they run there, i.e. a linux-64 target built from an x86_64 Linux host."""
    return platform == "linux-64" and sys.platform.startswith("linux") and _platform.machine() in ("x86_64", "AMD64")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi_groups(pkgs, sizes: dict[str, int], *, min_bytes: int = GROUP_MIN_BYTES, max_groups: int = MAX_GROUPS) -> list[Group]:
    """Every artifact >= min_bytes alone (group id = its normalized name), the rest
    together (group id from their sorted names, so a version change keeps it). A
    group's id and content depend only on its own artifacts. Ordered largest first
    (ties by id): a change re-copies only the groups after it in the final stage."""
    size = {p.sha256: int(sizes.get(p.sha256) or p.get("size") or 0) for p in pkgs}
    ordered = sorted(pkgs, key=lambda p: (-size[p.sha256], _norm(p.name)))
    big = [p for p in ordered if size[p.sha256] >= min_bytes]
    small = [p for p in ordered if size[p.sha256] < min_bytes]
    while big and len(big) + (1 if small else 0) > max_groups:
        small.insert(0, big.pop())  # the smallest big one joins the shared group
    groups = []
    for p in big:
        gid = _norm(p.name)
        groups.append(Group("bin-pkg" if gid == "bin" else gid, [p], size[p.sha256]))
    if small:
        import hashlib

        names = sorted(_norm(p.name) for p in small)
        gid = "group-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        groups.append(Group(gid, sorted(small, key=lambda p: _norm(p.name)), sum(size[p.sha256] for p in small)))
    return sorted(groups, key=lambda g: (-g.size, g.gid))


def make_plan(spec, lock, platform: str, *, ca_bundle: bool, artifacts: dict[str, Path] | None = None) -> Plan:
    from .. import __version__
    from ..install import needs_interpreter

    conda = lock.for_platform(platform, "conda")
    pypi = lock.for_platform(platform, "pypi")
    base = lock.image.get("reference") or lock.image.get("base") or spec.base_image
    sizes = {sha: path.stat().st_size for sha, path in (artifacts or {}).items()}
    inline = tools_inline(platform)
    return Plan(
        name=spec.name,
        description=spec.description,
        base=base,
        base_digest=lock.image.get("digest"),
        content_hash=lock.content_hash,
        short_hash=lock.short_hash,
        platform=platform,
        interpreter=lock.image.get("python") or "python3",
        has_conda=bool(conda),
        has_pypi=bool(pypi),
        needs_env=bool(conda) or needs_interpreter(lock, platform),
        apt_packages=list(lock.image.get("apt-packages", [])),
        variables=dict(lock.variables),
        steps=list(lock.image.get("steps", [])),
        ca_bundle=ca_bundle,
        tools_inline=inline,
        uv_version="" if inline else _dist_version("uv"),
        rattler_version="" if inline else _dist_version("py-rattler"),
        version=__version__,
        groups=pypi_groups(pypi, sizes) if pypi else [],
    )


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def context_files(spec, lock, plan: Plan, *, ca_bundle: str | None, artifacts: dict[str, Path]) -> dict[str, bytes | Path]:
    """context path -> bytes or a file to copy (artifacts: sha256 -> the cached file)."""
    from ..install import artifact_filename, part_lock
    from ..solve.pypi import strip_credentials_in_text

    dockerfile, _ = render(plan)
    files: dict[str, bytes | Path] = {"Dockerfile": dockerfile.encode()}
    if ca_bundle and plan.needs_ca:
        files["ca/ca-bundle.pem"] = Path(ca_bundle)
    if plan.needs_env:
        pkg_root = Path(__file__).resolve().parent.parent
        for rel in INSTALLER_MODULES:
            files[f"tools/lib/mlenv/{rel}"] = pkg_root / rel
        if plan.tools_inline:
            from ..solve.pypi import uv_binary

            files["tools/bin/uv"] = Path(uv_binary())
            if plan.has_conda:
                import importlib.util

                origin = Path(importlib.util.find_spec("rattler").origin).parent
                for path in sorted(origin.rglob("*")):
                    if path.is_file() and "__pycache__" not in path.parts:
                        files[f"rattler/{path.relative_to(origin).as_posix()}"] = path
        files["env/env.lock"] = part_lock(lock, plan.platform, "env").dumps().encode()
        files["env/files/.keep"] = b""
        for pkg in lock.for_platform(plan.platform, "conda"):
            files[f"env/files/{artifact_filename(pkg)}"] = artifacts[pkg.sha256]
    for g in plan.groups:
        files[f"pypi/{g.gid}/pypi.lock"] = part_lock(lock, plan.platform, "pypi", g.packages, g.gid).dumps().encode()
        for pkg in g.packages:
            files[f"pypi/{g.gid}/files/{artifact_filename(pkg)}"] = artifacts[pkg.sha256]
    files["meta/mlenv.lock"] = lock.dumps().encode()
    files["meta/mlenv.toml"] = strip_credentials_in_text(spec.text).encode()
    return files


def write_dir(files: dict[str, bytes | Path], directory: Path) -> None:
    """--dockerfile-only: the context as plain files, for inspection (artifacts are
    hard links into the artifact cache when on the same filesystem)."""
    import shutil

    from ..fsutil import atomic_write
    from ..install import link_or_copy

    for rel, src in files.items():
        dest = directory / rel
        if isinstance(src, Path):
            if "/files/" in rel:
                link_or_copy(src, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        else:
            atomic_write(dest, src, mode=0o755 if rel.endswith("/uv") else None)


def tar_context(files: dict[str, bytes | Path]):
    """The context as an uncompressed tar in a temporary file (rewound)."""
    import tempfile

    fh = tempfile.TemporaryFile(prefix="mlenv-context-")
    with tarfile.open(fileobj=fh, mode="w") as tar:
        for rel in sorted(files):
            src = files[rel]
            info = tarfile.TarInfo(rel)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if isinstance(src, Path):
                st = src.stat()
                info.size = st.st_size
                info.mode = 0o755 if (st.st_mode & 0o111) else 0o644
                with open(src, "rb") as data:
                    tar.addfile(info, data)
            else:
                info.size = len(src)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(src))
    fh.seek(0)
    return fh


def missing_local_files(files: dict[str, bytes | Path]) -> list[str]:
    return [str(src) for src in files.values() if isinstance(src, Path) and not os.path.exists(src)]
