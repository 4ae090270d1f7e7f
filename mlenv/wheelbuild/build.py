"""One wheel from a source directory: `uv build --wheel`, then repack (mlenv.wheelbuild.repack),
then into mlenv's content-addressed artifact cache under its sha256.

The build runs in a copy (local packages: exactly the files of the tree hash) or a
fresh checkout (git), with SOURCE_DATE_EPOCH=315532800 (1980-01-01) and
PYTHONHASHSEED=0, uv's build isolation (the project's build-system.requires, from
the spec's indexes), and the target's Python when this host has it (else this
interpreter: a pure-Python wheel does not care; a wheel tagged for another Python is
refused by the caller).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SolveError
from .repack import WheelError, repack, wheel_metadata

SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01T00:00:00Z, the zip format's earliest date


@dataclass(frozen=True)
class Built:
    """A wheel mlenv built, in the artifact cache as <sha256>."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "filename": self.filename, "sha256": self.sha256,
                "size": self.size}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> Built | None:
        try:
            built = cls(str(data["name"]), str(data["version"]), str(data["filename"]), str(data["sha256"]),
                        int(data["size"]))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None
        return built if len(built.sha256) == 64 else None


@dataclass(frozen=True)
class BuildOptions:
    """Where build backends come from, and for which Python: the spec's indexes
    (credentials expanded in memory), its find-links, the target Python version."""

    python: str | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    offline: bool = False
    ca_bundle: str | None = None
    secrets: tuple[str, ...] = ()


def store(data: bytes, sha256: str) -> Path:
    """Put bytes into the artifact cache as <sha256> (atomically); its path."""
    from ..runtime.cachedir import artifact_cache_dir
    from ..runtime.fsutil import atomic_write

    dest = artifact_cache_dir() / sha256
    if not dest.is_file():
        atomic_write(dest, data)
    return dest


def cached(sha256: str) -> Path | None:
    """The cached artifact <sha256>, checked; None when absent or damaged."""
    from ..runtime.cachedir import artifact_cache_dir
    from ..runtime.fetch import sha256_file

    path = artifact_cache_dir() / sha256
    if path.is_file() and sha256_file(path) == sha256:
        return path
    return None


def _uv_env(opts: BuildOptions) -> dict[str, str]:
    from ..uvtool import uv_env

    env = uv_env(None)
    env.update({"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0", "UV_NO_CONFIG": "1"})
    if opts.ca_bundle:
        env["SSL_CERT_FILE"] = opts.ca_bundle
    return env


def build_wheel(src: Path, opts: BuildOptions, *, what: str) -> tuple[Built, bytes]:
    """Build src (a directory with pyproject.toml or setup.py) into a repacked wheel,
    stored in the artifact cache. `what` names the source in messages."""
    import hashlib

    from ..runtime.secrets import scrub
    from ..uvtool import uv_binary

    if not ((src / "pyproject.toml").is_file() or (src / "setup.py").is_file()):
        raise SolveError(f"{what} has no pyproject.toml or setup.py: not a Python project",
                         hint="point the requirement at the directory that holds pyproject.toml "
                              "(git: #subdirectory=...)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mlenv-wheel-") as out:
        base = [uv_binary(), "build", "--wheel", "--out-dir", out, "--no-create-gitignore", "--color", "never",
                "--no-progress"]  # fmt: skip
        if opts.index_url:
            base += ["--index-url", opts.index_url]
        for url in opts.extra_index_urls:
            base += ["--extra-index-url", url]
        for url in opts.find_links:
            base += ["--find-links", url]
        if opts.offline:
            base.append("--offline")
        env = _uv_env(opts)
        pythons = ([opts.python] if opts.python else []) + [sys.executable]
        proc = None
        for i, python in enumerate(pythons):
            cmd = [*base, "--python", python, "--no-python-downloads", str(src)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
            if proc.returncode == 0 or i == len(pythons) - 1 or "No interpreter found" not in proc.stderr:
                break
        assert proc is not None
        if proc.returncode != 0:
            lines = [ln for ln in scrub(proc.stderr, opts.secrets).strip().splitlines() if ln.strip()]
            detail = "\n".join("  " + ln for ln in lines[-25:])
            raise SolveError(f"building a wheel of {what} failed\n{detail}".rstrip())
        wheels = sorted(Path(out).glob("*.whl"))
        if len(wheels) != 1:
            raise SolveError(f"building {what} gave {len(wheels)} wheels, expected one")
        try:
            data = repack(wheels[0].read_bytes())
            name, version = wheel_metadata(data)
        except WheelError as exc:
            raise SolveError(f"the wheel built from {what} is not usable: {exc}") from None
        filename = _filename(wheels[0].name, name, version, what)
    sha = hashlib.sha256(data).hexdigest()
    store(data, sha)
    return Built(name, version, filename, sha, len(data)), data


def _filename(filename: str, name: str, version: str, what: str) -> str:
    """The wheel's file name, checked: a plain name whose name and version are METADATA's."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    try:
        wname, wversion, _, _ = parse_wheel_filename(filename)
        same = canonicalize_name(wname) == canonicalize_name(name) and wversion == Version(version)
    except (InvalidWheelFilename, InvalidVersion):
        same = False
    if not same or "/" in filename or os.sep in filename:
        raise SolveError(f"the wheel built from {what} is named {filename!r}, which does not match its metadata "
                         f"({name} {version})")  # fmt: skip
    return filename
