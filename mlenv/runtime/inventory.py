"""What a prefix holds, and how it differs from what should be there.

`inventory(prefix)` reads conda records (conda-meta/*.json) and PyPI distributions
(*.dist-info in the prefix's site-packages and the directories its _mlenv_pypi.pth
adds), each with the files its record lists that are missing. `compare()` sets it
against the expected packages. `mlenv verify --prefix` runs both on the host;
`mlenv verify --image` runs this file as a script with the image's own Python in a
container without network (it prints the inventory as JSON) and compares on the host.

This module imports only the standard library, and nothing else of mlenv, so that
it can run as a script inside any image:  python3 inventory.py PREFIX [PYPI_PREFIX]
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field


def _norm(name: str) -> str:
    # PEP 503, as mlenv.runtime.names.normalize (this file runs standalone)
    return re.sub(r"[-_.]+", "-", name).lower()


def site_dirs(prefix: str) -> list[str]:
    """site-packages directories of a prefix, plus those a _mlenv_pypi.pth adds."""
    out: list[str] = []
    for pattern in ("lib/python*/site-packages", "lib/site-packages", "Lib/site-packages"):
        out += sorted(glob.glob(os.path.join(prefix, pattern)))
    for site in list(out):
        pth = os.path.join(site, "_mlenv_pypi.pth")
        if os.path.exists(pth):
            with open(pth, encoding="utf-8") as fh:
                text = fh.read()
            m = re.search(r"glob\.glob\((['\"])(.+?)\1\)", text)  # PyPI groups (images)
            if m:
                out += sorted(glob.glob(m.group(2)))
                continue
            m = re.search(r"addsitedir\((['\"])(.+?)\1\)", text)
            if m:
                out.append(m.group(2))
    return out


def _dist_name_version(info: str) -> tuple[str, str | None]:
    name = version = None
    try:
        with open(os.path.join(info, "METADATA"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                if line.startswith("Name:") and name is None:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("Version:") and version is None:
                    version = line.split(":", 1)[1].strip()
    except OSError:
        pass
    if not name:
        name = os.path.basename(info)[: -len(".dist-info")].rsplit("-", 1)[0]
    return name, version


def _missing_record_files(info: str, site: str) -> list[str]:
    missing = []
    try:
        with open(os.path.join(info, "RECORD"), encoding="utf-8") as fh:
            for row in fh:
                path = row.rsplit(",", 2)[0].strip().strip('"')
                if not path or path.endswith(".pyc") or "__pycache__" in path:
                    continue
                if not os.path.lexists(os.path.normpath(os.path.join(site, path))):
                    missing.append(path)
    except OSError:
        missing.append(os.path.basename(info) + "/RECORD")
    return missing


def inventory(prefix: str, pypi_prefix: str | None = None) -> dict:
    """{"conda": {name: {version, missing_files}}, "pypi": {normalized name: {...}}}."""
    result: dict = {"conda": {}, "pypi": {}}
    owned = set()
    for meta in sorted(glob.glob(os.path.join(prefix, "conda-meta", "*.json"))):
        try:
            with open(meta, encoding="utf-8") as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict):
            continue
        files = [f for f in rec.get("files", []) if isinstance(f, str)]
        owned.update(files)
        missing = [f for f in files if not os.path.lexists(os.path.join(prefix, f))]
        result["conda"][str(rec.get("name", os.path.basename(meta)))] = {
            "version": rec.get("version"),
            "missing_files": missing[:20],
        }
    dirs = site_dirs(prefix)
    if pypi_prefix:
        dirs += sorted(glob.glob(os.path.join(pypi_prefix, "lib", "python*", "site-packages")))
    seen = set()
    for site in dirs:
        real = os.path.realpath(site)
        if real in seen or not os.path.isdir(site):
            continue
        seen.add(real)
        for info in sorted(glob.glob(os.path.join(site, "*.dist-info"))):
            if os.path.relpath(os.path.join(info, "METADATA"), prefix) in owned:
                continue  # installed by a conda package
            name, version = _dist_name_version(info)
            missing = _missing_record_files(info, site)
            result["pypi"][_norm(name)] = {"version": version, "missing_files": missing[:20]}
    return result


@dataclass
class Difference:
    manager: str
    name: str
    kind: str  # "missing" | "extra" | "version" | "files"
    expected: str | None = None
    found: str | None = None
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.manager}: missing {self.name} {self.expected}"
        if self.kind == "extra":
            return f"{self.manager}: extra {self.name} {self.found} (not in mlenv.lock)"
        if self.kind == "version":
            return f"{self.manager}: {self.name} is {self.found}, mlenv.lock says {self.expected}"
        shown = ", ".join(self.files[:5]) + (" …" if len(self.files) > 5 else "")
        return f"{self.manager}: {self.name} {self.expected}: files missing: {shown}"

    def as_dict(self) -> dict:
        return {
            "manager": self.manager,
            "name": self.name,
            "kind": self.kind,
            "expected": self.expected,
            "found": self.found,
            "files": self.files,
        }


def compare(expected: dict[str, dict[str, str]], inv: dict) -> list[Difference]:
    """expected: manager -> {name: version} (PyPI names normalized) against an inventory."""
    diffs: list[Difference] = []
    for manager in sorted(set(expected) | {"conda", "pypi"}):
        if manager == "apt" and "apt" not in inv:
            continue  # a prefix has no dpkg database; an image reports its own (mlenv.apt.verify)
        want = expected.get(manager, {})
        have = inv.get(manager, {})
        for name, version in sorted(want.items()):
            got = have.get(name)
            if got is None:
                diffs.append(Difference(manager, name, "missing", expected=version))
            elif not _same_version(manager, got.get("version"), version):
                diffs.append(Difference(manager, name, "version", expected=version, found=got.get("version")))
            elif got.get("missing_files"):
                diffs.append(Difference(manager, name, "files", expected=version, files=list(got["missing_files"])))
        if manager == "apt":
            continue  # the base image's own Debian packages are not extra
        for name in sorted(set(have) - set(want)):
            diffs.append(Difference(manager, name, "extra", found=have[name].get("version")))
    return diffs


def _same_version(manager: str, found: str | None, expected: str) -> bool:
    if found == expected:
        return True
    if found is None or manager != "pypi":
        return False
    try:
        from packaging.version import Version
    except ImportError:  # inside an image without packaging: exact strings only
        return False
    try:
        return Version(found) == Version(expected)
    except Exception:
        return False


if __name__ == "__main__":
    print(json.dumps(inventory(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
