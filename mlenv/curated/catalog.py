"""The curated environment catalog shipped inside mlenv.

Modelled on Azure ML's curated environments: a fixed set of ready-made specs,
each locked (mlenv.lock next to it) and versioned. The index is
`catalog.toml`: name, version, content hash, framework, accelerator, purpose.
A version changes only when the locked result (the content hash) changes;
`python -m mlenv.curated.release` re-locks and bumps (docs/curated.md).

Names follow one scheme: <framework>[-<framework version>]-py<XY>-<cpu|cuXYZ>,
e.g. sklearn-1.5-py311-cpu, pytorch-2.5-py311-cu124 (the minimal entry has no
framework version: minimal-py311-cpu).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlenvError

CATALOG_DIR = Path(__file__).resolve().parent
NAME_RE = re.compile(
    r"^(?P<framework>[a-z][a-z0-9]*)(?:-(?P<version>\d+\.\d+))?-py(?P<python>3\d{1,2})-(?P<accel>cpu|cu\d{3})$"
)


class CatalogError(MlenvError):
    pass


@dataclass
class Entry:
    name: str
    version: int  # 0: not released yet (no lock shipped)
    content_hash: str
    framework: str
    framework_version: str
    python: str
    accelerator: str  # "cpu" | "cuda 12.4"
    base: str
    purpose: str
    directory: Path = CATALOG_DIR

    @property
    def spec_path(self) -> Path:
        return self.directory / f"{self.name}.toml"

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.name}.lock"

    @property
    def released(self) -> bool:
        return self.version > 0 and self.lock_path.exists()

    @property
    def short_hash(self) -> str:
        return self.content_hash.split(":", 1)[-1][:12]

    def to_json(self) -> dict:
        return {
            "name": self.name, "version": self.version, "content_hash": self.content_hash,
            "short_hash": self.short_hash, "framework": self.framework, "framework_version": self.framework_version,
            "python": self.python, "accelerator": self.accelerator, "base": self.base, "purpose": self.purpose,
            "released": self.released,
        }  # fmt: skip


def load_catalog(directory: Path | None = None) -> list[Entry]:
    directory = Path(directory) if directory else CATALOG_DIR
    path = directory / "catalog.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: the curated catalog index is missing", hint="reinstall mlenv") from None
    entries = []
    for raw in data.get("environment", []):
        entries.append(Entry(
            name=raw["name"], version=int(raw.get("version", 0)), content_hash=raw.get("content-hash", ""),
            framework=raw.get("framework", ""), framework_version=raw.get("framework-version", ""),
            python=raw.get("python", ""), accelerator=raw.get("accelerator", ""), base=raw.get("base", ""),
            purpose=raw.get("purpose", ""), directory=directory,
        ))  # fmt: skip
    return entries


def get(catalog_name: str, directory: Path | None = None) -> Entry:
    entries = load_catalog(directory)
    for entry in entries:
        if entry.name == catalog_name:
            return entry
    names = [e.name for e in entries]
    close = difflib.get_close_matches(catalog_name, names, n=1, cutoff=0.5)
    raise CatalogError(
        f"no curated environment named {catalog_name!r}" + (f" (did you mean `{close[0]}`?)" if close else ""),
        hint="`mlenv curated list` shows the catalog: " + ", ".join(names),
    )


def spec_text(catalog_name: str, name: str | None = None) -> str:
    """The mlenv.toml of a curated environment, renamed to `name` when given.
    The name is not part of the spec hash, so the curated lock stays current."""
    entry = get(catalog_name)
    text = entry.spec_path.read_text(encoding="utf-8")
    if name and name != entry.name:
        text, n = re.subn(r'(?m)^(name\s*=\s*)"[^"]*"', lambda m: f'{m.group(1)}"{name}"', text, count=1)
        if n != 1:  # pragma: no cover - every catalog spec has a name line
            raise CatalogError(f"{entry.spec_path}: no name line to rename")
        first, _, rest = text.partition("\n")
        if first.startswith("# Curated environment"):
            text = f"# From the mlenv curated environment {entry.name} (version {entry.version}).\n" + rest
    return text


def lock_text(catalog_name: str) -> str | None:
    """The shipped mlenv.lock of a curated environment (None when not released yet)."""
    entry = get(catalog_name)
    return entry.lock_path.read_text(encoding="utf-8") if entry.released else None


def dumps_catalog(entries: list[Entry]) -> str:
    from ..lockfile import _s

    out = [
        "# The mlenv curated catalog. One [[environment]] per curated environment; its spec is",
        "# <name>.toml and its lock <name>.lock next to this file. `version` changes only when the",
        "# locked result (content-hash) changes: run `python -m mlenv.curated.release` (docs/curated.md).",
        "# version = 0: not released yet (no lock shipped).",
    ]
    for e in entries:
        out += [
            "",
            "[[environment]]",
            f"name = {_s(e.name)}",
            f"version = {e.version}",
            f"content-hash = {_s(e.content_hash)}",
            f"framework = {_s(e.framework)}",
            f"framework-version = {_s(e.framework_version)}",
            f"python = {_s(e.python)}",
            f"accelerator = {_s(e.accelerator)}",
            f"base = {_s(e.base)}",
            f"purpose = {_s(e.purpose)}",
        ]
    return "\n".join(out) + "\n"
