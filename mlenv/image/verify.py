"""`mlenv verify --image`: compare what an image holds with a lock.

The inventory runs inside the image, with the image's own Python, in a container
without network: the text of mlenv/runtime/inventory.py (stdlib only) is its
program. The comparison runs here."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MlenvError
from ..installing import expected
from ..lockfile import Lock, loads_lock, read_lock
from ..runtime.inventory import Difference, compare
from .docker import DockerEngine
from .dockerfile import META_DIR, PREFIX


def verify_image(ref: str, lock_path: Path | None) -> tuple[Lock, list[Difference]]:
    """(lock, differences): the image against the lock at lock_path, else the image's
    own /opt/mlenv/mlenv.lock."""
    with DockerEngine() as engine:
        if engine.image(ref) is None:
            from ..oci.client import names_registry

            if not names_registry(ref):
                raise MlenvError(f"image {ref} not found in the local daemon", hint="`mlenv build` it first")
            engine.pull(ref)  # an image that went straight to a registry (the daemonless builder's --push)
        if lock_path is not None:
            lock = read_lock(lock_path)
        else:
            raw = engine.read_file(ref, f"{META_DIR}/mlenv.lock")
            if raw is None:
                raise MlenvError(f"{ref} holds no {META_DIR}/mlenv.lock (not built by mlenv?)", hint="pass --lock")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MlenvError(f"{ref}:{META_DIR}/mlenv.lock is not UTF-8 text") from None
            lock = loads_lock(text, f"{ref}:{META_DIR}/mlenv.lock")
        platform = "linux-64" if "linux-64" in lock.platforms else sorted(lock.platforms)[0]
        exp = expected(lock, platform)
        if exp.get("pypi"):
            script = (Path(__file__).resolve().parent.parent / "runtime" / "inventory.py").read_text(encoding="utf-8")
            out = engine.run(ref, [f"{PREFIX}/bin/python", "-c", script, PREFIX])
            try:
                inv = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise MlenvError(f"could not read the installed packages of {ref}") from None
        else:
            inv = {"conda": _conda_records(engine, ref), "pypi": {}}
        if exp.get("apt"):  # the image's dpkg versions (mlenv.apt.verify)
            from ..apt.verify import dpkg_inventory

            status = engine.read_file(ref, "/var/lib/dpkg/status")
            inv["apt"] = dpkg_inventory(status.decode("utf-8", "replace")) if status else {}
    return lock, compare({m: exp.get(m, {}) for m in ("conda", "pypi", "apt")}, inv)


def _conda_records(engine: DockerEngine, ref: str) -> dict:
    tar = engine.read_path(ref, f"{PREFIX}/conda-meta")
    out: dict = {}
    if tar is None:
        return out
    with tar:
        for m in tar.getmembers():
            if not (m.isfile() and m.name.endswith(".json")):
                continue
            fh = tar.extractfile(m)
            try:
                rec = json.loads(fh.read()) if fh else None
            except ValueError:
                continue
            if isinstance(rec, dict):
                out[str(rec.get("name"))] = {"version": rec.get("version"), "missing_files": []}
    return out
