"""What `lock()` and `check()` return, and the lock table (JSON rows, Jupyter HTML).

Its own module, apart from the other results (mlenv.api.results), because the no-op
`mlenv lock` imports it: a dataclass costs about 0.3 ms to create at import, and the
other results' dozen would add about 4 ms to that command (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..lockfile import Lock
    from ..spec import Spec


def _counts(lock: Lock) -> dict:
    return {
        plat: {
            "python": info.get("python"),
            "conda": len(lock.for_platform(plat, "conda")),
            "pypi": len(lock.for_platform(plat, "pypi")),
            **({"apt": n} if (n := len(lock.for_platform(plat, "apt"))) else {}),
        }
        for plat, info in sorted(lock.platforms.items())
    }


def package_rows(lock: Lock, platform: str | None = None) -> list[dict]:
    return [
        {"platform": p.platform, "manager": p.manager, "name": p.name, "version": p.version, "size": p.get("size")}
        for p in sorted(lock.packages, key=lambda p: (p.platform, p.manager, p.name))
        if platform is None or p.platform == platform
    ]


def lock_html(lock: Lock, title: str) -> str:
    from .html import block, details, table

    facts = [("content hash", lock.content_hash), ("python", lock.python), ("base image", lock.image.get("reference"))]
    facts += [(f"{plat}", f"{c['conda']} conda + {c['pypi']} PyPI") for plat, c in _counts(lock).items()]
    if lock.variables:
        facts.append(("variables", ", ".join(f"{k}={v}" for k, v in sorted(lock.variables.items()))))
    rows = [(r["platform"], r["manager"], r["name"], r["version"]) for r in package_rows(lock)]
    return block(
        title, facts, details(f"{len(rows)} packages", table(["platform", "manager", "name", "version"], rows))
    )


@dataclass
class LockOutcome:
    """`lock()`: the lock (written unless it was already up to date) and what happened."""

    spec: Spec
    lock: Lock
    action: str  # "fresh" | "rewritten" | "solved"
    changed: bool = False  # the file was (re)written
    previous_hash: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return self.lock.content_hash

    @property
    def short_hash(self) -> str:
        return self.lock.short_hash

    @property
    def path(self) -> Path:
        return self.spec.lock_path

    def packages(self, platform: str | None = None) -> list[dict]:
        return package_rows(self.lock, platform)

    def export(self, fmt: str, platform: str | None = None) -> str:
        """The lock in another tool's format (requirements, environment-yml, conda-explicit,
        conda-lock, pylock, azureml, dockerfile): docs/formats.md."""
        from ..formats.exporters import export

        return export(fmt, self.spec, self.lock, platform).text

    def to_json(self) -> dict:
        return {
            "name": self.spec.name,
            "lock": str(self.path),
            "action": self.action,
            "content_hash": self.lock.content_hash,
            "short_hash": self.lock.short_hash,
            "spec_hash": self.lock.spec_hash,
            "image": self.lock.image.get("reference"),
            "platforms": _counts(self.lock),
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        if self.action == "fresh":
            return []
        counts = ", ".join(f"{p}: {c['conda']} conda + {c['pypi']} pypi" + (f" + {c['apt']} apt" if c.get("apt") else "")
                           for p, c in _counts(self.lock).items())  # fmt: skip
        verb = (
            {"solved": "Locked", "rewritten": "Updated"}.get(self.action, "Unchanged") if self.changed else "Unchanged"
        )
        out = [f"{verb} {self.spec.name} -> {self.path.name} ({counts})"]
        if self.previous_hash and self.previous_hash != self.lock.content_hash:
            from ..lockfile import short_hash

            out.append(f"  content hash {short_hash(self.previous_hash)} -> {self.lock.short_hash}")
        out += [f"  content hash: {self.lock.content_hash}", f"  short hash:   {self.lock.short_hash}"]
        return out

    def _repr_html_(self) -> str:
        return lock_html(self.lock, f"{self.spec.name}: {self.action}")


@dataclass
class CheckResult:
    """`check()`: is mlenv.lock current for mlenv.toml (without solving)?"""

    ok: bool
    state: str  # "fresh" | "satisfied" | "stale" | "missing"
    reasons: list[str]
    spec_path: Path
    lock_path: Path
    content_hash: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings that do not make the lock stale (a moved branch)

    def to_json(self) -> dict:
        return {"ok": self.ok, "state": self.state, "reasons": self.reasons, "lock": str(self.lock_path),
                "content_hash": self.content_hash, "notes": self.notes}  # fmt: skip
