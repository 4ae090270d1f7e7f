"""The registry interface every backend implements (local, OCI, Azure ML).

Semantics are Azure ML's, made exact: versions are 1, 2, 3... per name;
registering a content hash the name already has returns that version
(idempotent); only description, labels, archive state and the image record
change on an existing version. A version is addressed as NAME@3, NAME@latest
(highest non-archived), NAME@<label>, or NAME@<unique content-hash prefix>.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from operator import attrgetter

from ..errors import MlenvError


class RegistryError(MlenvError):
    pass


class NotFound(RegistryError):
    pass


@dataclass
class Version:
    name: str
    version: int
    content_hash: str  # "sha256:<64 hex>"
    spec_sha256: str  # sha256 hex of the stored mlenv.toml bytes
    lock_sha256: str  # sha256 hex of the stored mlenv.lock bytes
    created: str  # ISO 8601 UTC
    description: str = ""
    labels: list[str] = field(default_factory=list)
    archived: bool = False
    image: str | None = None  # image reference mlenv built/pushed
    image_digest: str | None = None

    @property
    def short_hash(self) -> str:
        return self.content_hash.split(":", 1)[-1][:12]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict:
        # asdict's copy: every field, `labels` a list of its own; asdict itself deep-copies value
        # by value (50 us a Version: half a second for `mlenv versions --json` on 10,000)
        data = dict(zip(_VERSION_FIELDS, _version_values(self), strict=True))
        data["labels"] = list(self.labels)
        data["short_hash"] = self.short_hash
        return data


_VERSION_FIELDS = tuple(f.name for f in fields(Version))
_version_values = attrgetter(*_VERSION_FIELDS)


@dataclass
class Registered:
    version: Version
    created: bool  # False: this content was already registered under that name


class Registry(ABC):
    url: str
    # Can a version carry the wheels mlenv built for its lock (git and local packages),
    # content-addressed, so `restore --prefix` elsewhere needs neither git nor the sources?
    # Backends that can take `register(..., artifacts=...)` and answer `read_artifact`.
    holds_artifacts: bool = False

    @abstractmethod
    def register(
        self,
        name: str,
        spec: bytes,
        lock: bytes,
        content_hash: str,
        *,
        description: str = "",
        image: str | None = None,
        image_digest: str | None = None,
    ) -> Registered:
        """Record a version. Backends with holds_artifacts also take `artifacts`: sha256 hex ->
        (file name, bytes) of the wheels mlenv built for the lock, stored with the version."""

    def read_artifact(self, version: Version, sha256: str) -> bytes | None:
        """A built wheel stored with `version` (checked against sha256), or None."""
        return None

    @abstractmethod
    def names(self, *, include_archived: bool = False) -> list[str]: ...

    @abstractmethod
    def versions(self, name: str) -> list[Version]:
        """All versions of name, archived included, ascending. NotFound if no such name."""

    @abstractmethod
    def read(self, version: Version) -> tuple[bytes, bytes]:
        """(spec bytes, lock bytes), each verified against its recorded sha256."""

    @abstractmethod
    def set_label(self, name: str, version: int, label: str) -> None:
        """Point label at version (moving it if it pointed elsewhere)."""

    @abstractmethod
    def label_history(self, name: str, label: str) -> list[tuple[str, int]]:
        """(ISO time, version) moves of a label, oldest first."""

    @abstractmethod
    def set_archived(self, name: str, version: int | None, archived: bool) -> None:
        """version None: the whole environment."""

    @abstractmethod
    def update(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        image: str | None = None,
        image_digest: str | None = None,
    ) -> Version: ...

    # --- optional, with portable defaults (backends may do better) -----------
    def find(self, name: str, content_hash: str) -> Version | None:
        """The version of name holding content_hash, or None (also None for an unknown name)."""
        try:
            versions = self.versions(name)
        except NotFound:
            return None
        return next((v for v in versions if v.content_hash == content_hash), None)

    def content_hashes(self) -> set[str]:
        """Every content hash registered under any name, archived included (for gc)."""
        out: set[str] = set()
        for name in self.names(include_archived=True):
            out.update(v.content_hash for v in self.versions(name))
        return out

    def labels(self, name: str) -> dict[str, int]:
        """label -> version for name."""
        return {label: v.version for v in self.versions(name) for label in v.labels}

    def summary(self, *, include_archived: bool = False) -> list[dict]:
        """One row per name for `mlenv list`: name, archived, versions (count), latest
        (live version), updated (newest created)."""
        rows = []
        for name in self.names(include_archived=include_archived):
            vs = self.versions(name)
            live = [v for v in vs if not v.archived]
            rows.append({"name": name, "archived": all(v.archived for v in vs), "versions": len(vs),
                         "latest": live[-1].version if live else None,
                         "updated": max((v.created for v in vs), default="")})  # fmt: skip
        return rows

    def close(self) -> None:  # an optional hook: most registries hold nothing to close
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- shared resolution ----------------------------------------------------
    def resolve(self, name: str, ref: str = "latest") -> Version:
        versions = self.versions(name)
        if not versions:  # an environment row without versions (a damaged or foreign index)
            raise NotFound(f"{name} has no versions", hint="`mlenv list` shows the registered names")
        if ref == "latest":
            live = [v for v in versions if not v.archived]
            if not live:
                raise NotFound(
                    f"{name} has no version that is not archived",
                    hint=f"`mlenv versions {name}` lists them; `mlenv unarchive {name}@N` brings one back",
                )
            return live[-1]
        if re.fullmatch(r"[0-9]{1,9}", ref, re.ASCII):
            for v in versions:
                if v.version == int(ref):
                    return v
            raise NotFound(f"{name}@{ref}: no such version (latest is {versions[-1].version})")
        labelled = [v for v in versions if ref in v.labels]
        if labelled:
            return labelled[0]
        prefix = ref.removeprefix("sha256:").lower()
        if re.fullmatch(r"[0-9a-f]{4,64}", prefix, re.ASCII):
            hits = [v for v in versions if v.content_hash.removeprefix("sha256:").startswith(prefix)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise RegistryError(
                    f"{name}@{ref} is ambiguous: it matches versions " + ", ".join(str(v.version) for v in hits),
                    hint="give more digits of the hash",
                )
        raise NotFound(f"{name}@{ref[:80]}: no version, label or content hash matches")


LABEL_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}\Z", re.ASCII)  # \Z: `$` would accept a trailing newline


def check_label(label: str) -> str:
    """Labels are lowercase words that cannot be mistaken for a version number or
    `latest` (they also become OCI tags `label-<label>`)."""
    if label == "latest" or not LABEL_RE.match(label):
        from ..validation import quote

        raise RegistryError(
            f"invalid label {quote(label)}",
            hint="a label is a lowercase word: a letter, then letters, digits, '.', '_' or '-' "
            "(at most 64); `latest` is reserved",
        )
    return label


def parse_ref(text: str) -> tuple[str, str]:
    """'fraud-train@3' -> ('fraud-train', '3'); 'fraud-train' -> ('fraud-train', 'latest')."""
    name, _, ref = text.partition("@")
    if not name:
        raise RegistryError(f"{text!r}: expected NAME or NAME@VERSION")
    return name, ref or "latest"
