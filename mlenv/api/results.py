"""What the API returns: plain data with `to_json()` (the CLI's --json output) and,
for Jupyter, `_repr_html_()`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..image.result import ImageResult
from .lockresults import CheckResult as CheckResult  # re-exported: the results of every area are here
from .lockresults import LockOutcome as LockOutcome
from .lockresults import lock_html

if TYPE_CHECKING:
    from ..lockfile import Lock
    from ..registry.base import Version
    from ..runtime.install import InstallResult
    from ..runtime.inventory import Difference


def register_notebook_formatters(shell: Any = None) -> bool:
    """Let Jupyter draw a bare mlenv.Lock (`env.locked`, `mlenv.content_hash()`) as the
    lock table the API's results show. Lock lives below the API and imports no renderer,
    so the API registers this one with IPython instead. True when a shell took it."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return False
    from ..lockfile import Lock

    html = shell.display_formatter.formatters["text/html"]
    html.for_type(Lock, lambda lock: lock_html(lock, f"mlenv.lock {lock.short_hash}"))
    return True


@dataclass
class Installed:
    result: InstallResult
    lock: Lock

    def to_json(self) -> dict:
        r = self.result
        return {"prefix": str(r.prefix), "platform": r.platform, "conda": r.conda, "pypi": r.pypi,
                "interpreter": r.interpreter, "content_hash": self.lock.content_hash, "removed": r.removed}  # fmt: skip

    def _repr_html_(self) -> str:
        from .html import block

        r = self.result
        return block(f"installed {self.lock.short_hash}", [("prefix", r.prefix), ("platform", r.platform),
                     ("packages", f"{r.conda} conda + {r.pypi} PyPI"), ("removed", ", ".join(r.removed))])  # fmt: skip


@dataclass
class Verified:
    target: str
    lock: Lock
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict:
        return {"target": self.target, "content_hash": self.lock.content_hash, "ok": self.ok,
                "differences": [d.as_dict() for d in self.differences]}  # fmt: skip

    def _repr_html_(self) -> str:
        from .html import block, table

        rows = [(d.manager, d.name, d.kind, d.expected, d.found) for d in self.differences]
        body = table(["manager", "name", "difference", "lock", "found"], rows) if rows else "matches the lock"
        return block(f"verify {self.target}", [("content hash", self.lock.content_hash)], body)


class Image(ImageResult):
    """`build()`: the image that was built or reused."""

    @classmethod
    def of(cls, r: ImageResult) -> Image:
        return cls(**{k: getattr(r, k) for k in r.__dataclass_fields__})

    def _repr_html_(self) -> str:
        from .html import block

        return block(f"image {self.image}", [("action", f"{self.action} ({self.where})" if self.where else self.action),
                     ("id", self.id), ("digest", self.digest), ("pushed", self.pushed), ("builder", self.builder),
                     ("seconds", self.seconds), ("log", self.log)])  # fmt: skip


@dataclass
class Registration:
    version: Version
    created: bool
    updated: list[str]
    registry: str

    @property
    def ref(self) -> str:
        return self.version.ref

    def to_json(self) -> dict:
        return {**self.version.to_json(), "new": self.created, "updated": self.updated, "registry": self.registry}

    def message(self) -> str:
        v = self.version
        if self.created:
            return f"registered {v.ref} ({v.short_hash})" + (f", image {v.image}" if v.image else "")
        extra = f"; updated {', '.join(k for k in self.updated if k != 'image_digest')}" if self.updated else ""
        return f"already registered as {v.ref} ({v.short_hash}){extra}"

    def _repr_html_(self) -> str:
        from .html import block

        return block(self.message(), [("registry", self.registry), ("content hash", self.version.content_hash)])


def _versions_html(name: str, versions: list[Version]) -> str:
    from .html import block, table

    rows = [(v.version, v.short_hash, v.created[:19].replace("T", " "), ", ".join(v.labels), v.image or "",
             "archived" if v.archived else "") for v in versions]  # fmt: skip
    return block(name, [], table(["version", "hash", "created", "labels", "image", ""], rows))


@dataclass
class VersionList:
    name: str
    registry: str
    versions: list[Version]

    def __iter__(self):
        return iter(self.versions)

    def __len__(self) -> int:
        return len(self.versions)

    def __getitem__(self, i):
        return self.versions[i]

    def to_json(self) -> dict:
        return {"registry": self.registry, "name": self.name, "versions": [v.to_json() for v in self.versions]}

    def _repr_html_(self) -> str:
        return _versions_html(f"{self.name} ({self.registry})", self.versions)


@dataclass
class EnvironmentList:
    registry: str
    environments: list[dict]

    def __iter__(self):
        return iter(self.environments)

    def __len__(self) -> int:
        return len(self.environments)

    def to_json(self) -> dict:
        return {"registry": self.registry, "environments": self.environments}

    def _repr_html_(self) -> str:
        from .html import block, table

        rows = [(r["name"], r["versions"], r["latest"] or "-", (r["updated"] or "")[:19].replace("T", " "),
                 "archived" if r["archived"] else "") for r in self.environments]  # fmt: skip
        return block(f"environments in {self.registry}", [], table(["name", "versions", "latest", "updated", ""], rows))


@dataclass
class VersionDetail:
    version: Version
    spec_text: str
    lock: Lock

    def to_json(self) -> dict:
        lock = self.lock
        platforms = {}
        for plat in sorted(lock.platforms):
            pkgs = lock.for_platform(plat)
            platforms[plat] = {
                "python": lock.platform_python(plat),
                "conda": sum(p.manager == "conda" for p in pkgs),
                "pypi": sum(p.manager == "pypi" for p in pkgs),
                "packages": [
                    {"manager": p.manager, "name": p.name, "version": p.version}
                    for p in sorted(pkgs, key=lambda p: (p.manager, p.name))
                ],  # fmt: skip
            }
        from ..runtime.secrets import scrub

        # a version registered before literal credentials were refused may still hold one
        return {**self.version.to_json(), "spec": scrub(self.spec_text), "platforms": platforms,
                "variables": lock.variables, "base_image": lock.image.get("reference") or lock.image.get("base"),
                "apt_packages": lock.image.get("apt-packages", [])}  # fmt: skip

    def _repr_html_(self) -> str:
        from ..runtime.secrets import scrub
        from .html import details, esc

        return lock_html(self.lock, f"{self.version.ref}") + details(
            "mlenv.toml", f"<pre>{esc(scrub(self.spec_text))}</pre>"
        )


@dataclass
class Diff:
    left: str
    right: str
    data: dict
    left_version: Version | None = None
    right_version: Version | None = None

    @property
    def identical(self) -> bool:
        return bool(self.data["identical"])

    def lines(self) -> list[str]:
        from ..registry.diff import render

        return render(self.data, self.left, self.right)

    def to_json(self) -> dict:
        out: dict[str, Any] = dict(self.data)
        if self.left_version is not None and self.right_version is not None:
            out = {"left": self.left_version.to_json(), "right": self.right_version.to_json(), **out}
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        from .html import STYLE, esc

        colors = {"+": "#2a7", "-": "#c33", "↑": "#27a", "↓": "#a72", "~": "#888"}
        out = []
        for line in self.lines():
            mark = line.strip()[:1]
            color = colors.get(mark, "inherit")
            out.append(f'<div style="color:{color}">{esc(line)}</div>')
        return f'<div style="{STYLE};font-family:monospace">{"".join(out)}</div>'


@dataclass
class Restored:
    written: list[str]
    into: Path
    content_hash: str
    source: str
    version: Version | None = None
    name: str | None = None
    pulled: str | None = None
    installed: Installed | None = None

    def to_json(self) -> dict:
        if self.version is not None:
            out = {**self.version.to_json(), "into": str(self.into), "written": self.written}
        else:
            out = {"source": self.source, "name": self.name, "content_hash": self.content_hash,
                   "into": str(self.into), "written": self.written}  # fmt: skip
        if self.pulled:
            out["pulled"] = self.pulled
        if self.installed is not None:
            r = self.installed.result
            out["prefix"] = str(r.prefix)
            out["installed"] = {"conda": r.conda, "pypi": r.pypi, "interpreter": r.interpreter}
        return out


@dataclass
class Found:
    """`search()`: the matches (version, platform, package) and what could not be searched."""

    result: Any  # mlenv.ui.catalog.SearchResult
    registry: str

    @property
    def hits(self) -> list:
        return self.result.hits

    def to_json(self) -> dict:
        return self.result.to_json(self.registry)

    def _repr_html_(self) -> str:
        from .html import block, table

        rows = [(h.version.ref, h.row.platform, h.row.name, h.row.version, h.row.manager, ", ".join(h.version.labels))
                for h in self.result.hits]  # fmt: skip
        return block(f"{len(rows)} match(es) in {self.registry}", [],
                     table(["version", "platform", "package", "package version", "manager", "labels"], rows))  # fmt: skip
