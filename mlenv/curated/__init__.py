"""The curated environment catalog shipped with mlenv (catalog.py; docs/curated.md).

mlenv.curated.list()                       # the entries
mlenv.curated.show("sklearn-1.5-py311-cpu")  # one entry with its spec and lock
mlenv.Environment.from_curated("sklearn-1.5-py311-cpu")
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from .catalog import Entry


class Catalog(builtins.list):
    """The entries, with an HTML table in Jupyter."""

    def _repr_html_(self) -> str:
        from ..api.html import block, table

        rows = [(e.name, e.version if e.released else "-", e.short_hash if e.released else "unreleased",
                 e.accelerator, e.purpose) for e in self]  # fmt: skip
        return block(
            "mlenv curated environments", [], table(["name", "version", "hash", "accelerator", "purpose"], rows)
        )


def list() -> Catalog:
    """Every curated environment: name, version, content hash, accelerator, purpose."""
    from .catalog import load_catalog

    return Catalog(load_catalog())


@dataclass
class CuratedDetail:
    entry: Entry
    spec_text: str
    lock_text: str | None

    @property
    def lock(self):
        from ..lockfile import loads_lock

        return loads_lock(self.lock_text, self.entry.lock_path) if self.lock_text else None

    def packages(self) -> builtins.list[dict]:
        lock = self.lock
        if lock is None:
            return []
        return [{"platform": p.platform, "manager": p.manager, "name": p.name, "version": p.version,
                 "size": p.get("size")} for p in sorted(lock.packages, key=lambda p: (p.platform, p.name))]  # fmt: skip

    def to_json(self) -> dict:
        lock = self.lock
        return {**self.entry.to_json(), "spec": self.spec_text, "packages": self.packages(),
                "image": lock.image.get("reference") if lock else None}  # fmt: skip

    def _repr_html_(self) -> str:
        from ..api.html import block, details, esc
        from ..api.lockresults import lock_html

        e = self.entry
        facts = [("purpose", e.purpose), ("version", e.version if e.released else "not released"),
                 ("python", e.python), ("accelerator", e.accelerator), ("base", e.base)]  # fmt: skip
        lock = self.lock
        body = details("mlenv.toml", f"<pre>{esc(self.spec_text)}</pre>") + (lock_html(lock, "lock") if lock else "")
        return block(e.name, facts, body)


def show(name: str) -> CuratedDetail:
    """One curated environment with its spec and (when released) its lock."""
    from .catalog import get

    entry = get(name)
    lock_text = entry.lock_path.read_text(encoding="utf-8") if entry.released else None
    return CuratedDetail(entry, entry.spec_path.read_text(encoding="utf-8"), lock_text)


__all__ = ["list", "show", "Entry", "Catalog", "CuratedDetail"]
