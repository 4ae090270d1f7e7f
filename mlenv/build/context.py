"""The build context of a lock: Dockerfile, installer tooling, sub-locks,
local artifacts (file:// conda channels and PyPI indexes, which the builder
cannot see), and the image's own mlenv.lock + mlenv.toml.

Context layout:
  Dockerfile
  ca/ca-bundle.pem          only with --ca-bundle (builder stage only)
  tools/bin/uv              this mlenv's uv binary (linux-64 target on an x86_64 Linux host)
  tools/lib/mlenv/...       the installer and the stdlib-only modules it imports
  rattler/                  this mlenv's py-rattler (only when the lock has conda packages)
  env/env.lock  env/files/  sub-lock of the env part (conda packages, venv) + file:// artifacts
  pypi/pypi.lock pypi/files/ sub-lock of the PyPI part + file:// artifacts
  meta/mlenv.lock meta/mlenv.toml
"""

from __future__ import annotations

import io
import os
import platform as _platform
import sys
import tarfile
from pathlib import Path

from .dockerfile import Plan, render

# The installer and what it imports; all stdlib-only at module top.
INSTALLER_MODULES = (
    "__init__.py", "errors.py", "fsutil.py", "spec.py", "lockfile.py", "install.py",
    "solve/__init__.py", "solve/conda.py", "solve/platforms.py",
)  # fmt: skip
FIXED_MTIME = 1_700_000_000  # reproducible context entries


def tools_inline(platform: str) -> bool:
    """Copy this installation's uv (and py-rattler) into the image: only when
    they run there, i.e. a linux-64 target built from an x86_64 Linux host."""
    return platform == "linux-64" and sys.platform.startswith("linux") and _platform.machine() in ("x86_64", "AMD64")


def make_plan(spec, lock, platform: str, *, ca_bundle: bool, credentials: bool) -> Plan:
    from .. import __version__
    from ..install import needs_interpreter

    conda = lock.for_platform(platform, "conda")
    pypi = lock.for_platform(platform, "pypi")
    base = lock.image.get("reference") or lock.image.get("base") or spec.base_image
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
        credentials=credentials,
        tools_inline=tools_inline(platform),
        uv_version=_dist_version("uv"),
        rattler_version=_dist_version("py-rattler"),
        version=__version__,
    )


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def context_files(spec, lock, plan: Plan, *, ca_bundle: str | None) -> dict[str, bytes | Path]:
    """context path -> bytes or a file to copy."""
    from ..install import part_lock
    from ..solve.pypi import strip_credentials_in_text

    dockerfile, _ = render(plan)
    files: dict[str, bytes | Path] = {"Dockerfile": dockerfile.encode()}
    if ca_bundle:
        files["ca/ca-bundle.pem"] = Path(ca_bundle)
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
    for part, manager in (("env", "conda"), ("pypi", "pypi")):
        if (part == "env" and not plan.needs_env) or (part == "pypi" and not plan.has_pypi):
            continue
        files[f"{part}/{part}.lock"] = part_lock(lock, plan.platform, part).dumps().encode()
        files[f"{part}/files/.keep"] = b""
        for pkg in lock.for_platform(plan.platform, manager):
            if pkg.url.startswith("file://"):
                from urllib.parse import unquote, urlparse

                local = Path(unquote(urlparse(pkg.url).path))
                files[f"{part}/files/{local.name}"] = local
    files["meta/mlenv.lock"] = lock.dumps().encode()
    files["meta/mlenv.toml"] = strip_credentials_in_text(spec.text).encode()
    return files


def write_dir(files: dict[str, bytes | Path], directory: Path) -> None:
    """--dockerfile-only: the context as plain files, for inspection."""
    import shutil

    from ..fsutil import atomic_write

    for rel, src in files.items():
        dest = directory / rel
        if isinstance(src, Path):
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
