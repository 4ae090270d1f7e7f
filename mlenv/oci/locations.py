"""Where a blob was last seen: the repositories of a registry that hold it.

A push mounts a blob from another repository of the same registry instead of
uploading it (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`), but
distribution has no "which repository has this blob" call. So mlenv remembers:
every blob it pulls from, finds in, mounts into or uploads to a repository is
recorded under

    <user cache>/mlenv/oci-locations/<sha256(registry)[:24]>/<hex[:2]>/<hex of the digest>

as a sorted JSON list of at most 16 repository names. The
files are written atomically; two processes racing lose at most a hint; a
wrong or missing record costs an upload, never correctness (the registry
refuses a mount it cannot do and opens an upload instead). Deleting the
directory is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from .store import check_digest

MAX_REPOS = 16


def default_root() -> Path:
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("mlenv")) / "oci-locations"
    except ImportError:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlenv" / "oci-locations"


class BlobLocations:
    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else default_root()

    def _path(self, registry: str, digest: str) -> Path:
        hexd = check_digest(digest).split(":", 1)[1]
        key = hashlib.sha256(registry.lower().encode()).hexdigest()[:24]
        return self.root / key / hexd[:2] / hexd

    def repos(self, registry: str, digest: str) -> list[str]:
        try:
            data = json.loads(self._path(registry, digest).read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        return [r for r in data if isinstance(r, str)][:MAX_REPOS]

    def add(self, registry: str, digests: Iterable[str], repo: str) -> None:
        """Record that repo holds each digest. Best effort: a full or read-only
        cache only loses hints."""
        from ..runtime.fsutil import atomic_write

        for digest in digests:
            have = self.repos(registry, digest)
            if repo in have:
                continue
            repos = sorted((have + [repo])[-MAX_REPOS:])
            try:
                atomic_write(self._path(registry, digest), json.dumps(repos), sync=False)  # hints only
            except OSError:
                return
