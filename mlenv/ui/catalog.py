"""Every read the web catalog and `mlenv search` make: one read-only service over a
Registry (mlenv.registry.open_registry) and the curated catalog.

This is the only module of mlenv.ui that talks to a registry, so moving the UI onto
mlenv's public API touches this file alone. Lists come from the registry's index
(names, versions) without reading a lock; a version's spec and lock are read only for
its own page, a diff, or to index a lock for search, and always verified the way the
CLI verifies them (mlenv.registry.verify.read_verified: sha256 of both blobs, the
lock's own content hash, and that hash against the registry's record).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

from ..errors import MlenvError
from ..registry import open_registry
from ..registry.base import NotFound, Registry, RegistryError, Version, parse_ref
from .index import Row, SearchIndex, default_path, rows_of
from .search import Query, parse_query

if TYPE_CHECKING:
    from ..curated.catalog import Entry
    from ..lockfile import Lock
    from .layers import ImageLayers

IMAGE_LAYER_POLICIES = ("auto", "always", "never")


@dataclass
class EnvSummary:
    name: str
    versions: int
    latest: Version | None  # highest version that is not archived
    newest: Version | None  # highest version
    labels: dict[str, int]  # label -> version
    archived: bool  # every version (or the environment) archived
    updated: str


@dataclass
class VersionDetail:
    version: Version
    spec_text: str
    lock: Lock
    siblings: list[Version]  # every version of the name, ascending


@dataclass
class CuratedDetail:
    entry: Entry
    spec_text: str
    lock: Lock | None


@dataclass
class Hit:
    version: Version
    row: Row


@dataclass
class SearchResult:
    query: Query
    platform: str | None
    include_archived: bool
    hits: list[Hit] = field(default_factory=list)
    searched: int = 0  # versions searched
    indexed: int = 0  # locks newly indexed by this search
    problems: list[tuple[str, str]] = field(default_factory=list)  # (NAME@N, why its lock was not searched)

    def to_json(self, registry: str) -> dict:
        return {
            "registry": registry, "query": self.query.to_json(), "platform": self.platform,
            "include_archived": self.include_archived, "searched": self.searched,
            "problems": [{"version": ref, "error": msg} for ref, msg in self.problems],
            "hits": [{"name": h.version.name, "version": h.version.version, "content_hash": h.version.content_hash,
                      "labels": h.version.labels, "archived": h.version.archived, "platform": h.row.platform,
                      "manager": h.row.manager, "package": h.row.name, "package_version": h.row.version,
                      "size": h.row.size, "source": h.row.source} for h in self.hits],
        }  # fmt: skip


class Catalog:
    """Read-only views of one registry. Thread-safe (one lock around registry access),
    so the server's worker threads can share it. `ttl`: how long the list of versions
    is reused (seconds; the default, inf, takes one snapshot for the catalog's life, as one
    command wants; the server passes --refresh)."""

    def __init__(
        self,
        registry: Registry,
        *,
        curated_dir: Path | None = None,
        index_path: Path | None = None,
        image_layers: str = "auto",
        ttl: float = float("inf"),
    ):
        if image_layers not in IMAGE_LAYER_POLICIES:
            raise MlenvError(f"image layers: expected one of {', '.join(IMAGE_LAYER_POLICIES)}, not {image_layers!r}")
        self.registry = registry
        self.curated_dir = Path(curated_dir) if curated_dir else None
        self.image_layer_policy = image_layers
        self.ttl = ttl
        self._lock = threading.RLock()
        self._listing: dict[str, list[Version]] | None = None
        self._listed_at = 0.0
        self._locks: OrderedDict[tuple[str, str, str], tuple[str, Lock]] = OrderedDict()  # verified, by hashes
        self._failed: dict[str, str] = {}  # lock sha256 -> why it could not be indexed
        self._layers: dict[tuple[str, str, str], ImageLayers | str] = {}
        self.index = SearchIndex(index_path or default_path(self.registry_key), self.registry_key)

    @classmethod
    def open(cls, url: str | None = None, **kwargs) -> Catalog:
        return cls(open_registry(url), **kwargs)

    def close(self) -> None:
        with self._lock:
            self.index.close()
            self.registry.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- what the registry is ---------------------------------------------------
    @property
    def local(self) -> bool:
        return "://" not in self.registry.url

    @property
    def registry_key(self) -> str:
        """The registry's identity for the search index: the absolute path of a local one, else its URL."""
        return str(Path(self.registry.url).resolve()) if self.local else self.registry.url

    @property
    def label(self) -> str:
        """How pages name the registry: its URL, or `local registry` (a host path is no business of a page)."""
        from ..runtime.secrets import strip_credentials

        return "local registry" if self.local else strip_credentials(self.registry.url)

    def public(self, text: str) -> str:
        """text fit for a page: a local registry's host path replaced by `<local registry>`
        (error messages of the local backend name the blob file)."""
        if not self.local:
            return text
        for root in sorted({str(Path(self.registry.url).resolve()), self.registry.url}, key=len, reverse=True):
            text = text.replace(root, "<local registry>")
        return text

    @property
    def registry_args(self) -> list[str]:
        """What `mlenv restore` needs to find this registry (nothing for a local one: it is the reader's)."""
        return [] if self.local else ["--registry", self.label]

    # --- lists (the registry's index; no lock is read) ---------------------------
    def listing(self) -> dict[str, list[Version]]:
        """name -> every version (archived included), ascending, for every name (archived included)."""
        with self._lock:
            now = time.monotonic()
            if self._listing is None or now - self._listed_at > self.ttl:
                from .views import scrub_version

                # scrubbed once here: no page, result or data file sees a credential of a record
                out = {name: [scrub_version(v) for v in vs] for name, vs in self._list_registry().items()}
                self._listing, self._listed_at = out, now
            return self._listing

    def _list_registry(self) -> dict[str, list[Version]]:
        """name -> versions, from the registry. A registry with a cheap state check
        (OCIRegistry.listing_state: about two requests per name, where listing a name's
        versions takes one per version) is listed through the search index's cache: only
        the names whose token changed are listed again."""
        import sqlite3

        tokens = getattr(self.registry, "listing_state", None)
        if tokens is None:
            return self._list_names(self.registry.names(include_archived=True))
        state: dict[str, str] = tokens()
        out: dict[str, list[Version]] = {}
        try:
            for name, token in state.items():
                cached = self.index.cached_versions(name, token)
                if cached is not None:
                    out[name] = cached
            fresh = self._list_names([n for n in state if n not in out])
            for name, versions in fresh.items():
                self.index.store_versions(name, state[name], versions)
            self.index.forget_listing(state)
        except sqlite3.DatabaseError:  # a damaged cache: list the registry; the next search rebuilds the file
            return self._list_names(list(state))
        out.update(fresh)
        return dict(sorted(out.items()))

    def _list_names(self, names: list[str]) -> dict[str, list[Version]]:
        out: dict[str, list[Version]] = {}
        for name in names:
            try:
                out[name] = self.registry.versions(name)
            except NotFound:  # removed between the two calls
                continue
        return out

    def environments(self) -> list[EnvSummary]:
        out = []
        for name, versions in sorted(self.listing().items()):
            live = [v for v in versions if not v.archived]
            out.append(EnvSummary(
                name=name, versions=len(versions), latest=live[-1] if live else None,
                newest=versions[-1] if versions else None,
                labels={label: v.version for v in versions for label in v.labels},
                archived=not live, updated=max((v.created for v in versions), default=""),
            ))  # fmt: skip
        return out

    def versions(self, name: str) -> list[Version]:
        versions = self.listing().get(name)
        if not versions:
            raise NotFound(f"no environment named {name!r} in {self.label}")
        return versions

    def get(self, name: str, number: int) -> Version:
        for v in self.versions(name):
            if v.version == number:
                return v
        raise NotFound(f"{name}@{number}: no such version")

    def resolve(self, text: str) -> Version:
        """NAME[@VERSION|@label|@hash prefix], resolved by the registry's own rules."""
        from .views import scrub_version

        name, ref = parse_ref(text.strip())
        with self._lock:
            return scrub_version(self.registry.resolve(name, ref))

    # --- one version (its spec and lock are read and verified) ---------------------
    def _read(self, v: Version) -> tuple[str, Lock]:
        from ..registry.verify import read_verified

        key = (v.spec_sha256, v.lock_sha256, v.content_hash)
        with self._lock:
            if key in self._locks:
                self._locks.move_to_end(key)
                return self._locks[key]
            spec_bytes, _, lock = read_verified(self.registry, v)
            try:
                spec_text = spec_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise RegistryError(f"{v.ref}: the stored mlenv.toml is not UTF-8 text") from None
            self._locks[key] = (spec_text, lock)
            if len(self._locks) > 64:
                self._locks.popitem(last=False)
            return spec_text, lock

    def version(self, name: str, number: int) -> VersionDetail:
        v = self.get(name, number)
        spec_text, lock = self._read(v)
        return VersionDetail(v, spec_text, lock, self.versions(name))

    def diff(self, a: Version, b: Version) -> dict:
        from ..registry.diff import diff_locks

        return diff_locks(self._read(a)[1], self._read(b)[1])

    # --- the curated catalog ------------------------------------------------------
    def curated(self) -> list[Entry]:
        from ..curated.catalog import load_catalog

        return load_catalog(self.curated_dir)

    def curated_entry(self, name: str) -> CuratedDetail:
        from ..curated.catalog import CatalogError
        from ..lockfile import loads_lock

        entry = next((e for e in self.curated() if e.name == name), None)
        if entry is None:
            raise NotFound(f"no curated environment named {name!r}")
        try:
            spec_text = entry.spec_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{entry.spec_path}: cannot read the curated spec ({type(exc).__name__})") from None
        lock = None
        if entry.released:
            lock = loads_lock(entry.lock_path.read_text(encoding="utf-8"), entry.lock_path)
            if lock.content_hash != entry.content_hash:
                raise CatalogError(
                    f"{entry.lock_path}: content hash {lock.content_hash[:19]}… is not the catalog's "
                    f"{entry.content_hash[:19]}…",
                    hint="reinstall mlenv",
                )
        return CuratedDetail(entry, spec_text, lock)

    # --- pushed image layers ---------------------------------------------------------
    def fetches_layers(self, v: Version) -> bool:
        """auto: only from the host of the OCI registry being browsed (a host the user chose);
        always: from any image registry a version names; never: not at all."""
        if not (v.image and v.image_digest) or self.image_layer_policy == "never":
            return False
        if self.image_layer_policy == "always":
            return True
        from .layers import registry_host

        host = getattr(self.registry, "host", None)
        return bool(host) and self.registry.url.startswith("oci://") and registry_host(v.image) == host

    def image_layers(self, v: Version, platform: str) -> ImageLayers | str | None:
        """The pushed image's layers, a one-line reason they could not be read, or None
        when this catalog does not fetch them for v (see fetches_layers)."""
        from .layers import pushed_layers

        if not self.fetches_layers(v):
            return None
        assert v.image and v.image_digest
        key = (v.image, v.image_digest, platform)
        if key not in self._layers:  # content by digest: never changes
            try:
                self._layers[key] = pushed_layers(v.image, v.image_digest, platform)
            except MlenvError as exc:  # LayerError, and the registry client's transfer and manifest errors
                self._layers[key] = exc.message
        return self._layers[key]

    # --- package search ---------------------------------------------------------------
    def _update_index(self, versions: list[Version]) -> tuple[int, list[tuple[str, str]]]:
        """Index the locks of versions the index has not seen. (newly indexed, problems):
        a version whose lock cannot be read or verified is reported, not searched, and
        not retried for the life of this catalog."""
        known = self.index.known()
        todo: dict[str, Version] = {}
        mismatched: dict[str, str] = {}  # NAME@N -> why: a record that disagrees with the lock it names
        for v in versions:
            if v.lock_sha256 in known and known[v.lock_sha256] != v.content_hash:
                mismatched[v.ref] = (
                    f"{v.ref}: the registry records content hash {v.content_hash[:19]}…, its lock "
                    f"has {known[v.lock_sha256][:19]}…; not searched"
                )
            elif v.lock_sha256 not in known and v.lock_sha256 not in todo and v.lock_sha256 not in self._failed:
                todo[v.lock_sha256] = v
        entries: list[tuple[str, str, list[Row]]] = []
        new = 0
        for v, got in zip(todo.values(), self._read_many(list(todo.values())), strict=False):
            if isinstance(got, str):
                self._failed[v.lock_sha256] = got
            else:
                entries.append((v.lock_sha256, v.content_hash, rows_of(v.lock_sha256, got)))
            if len(entries) >= 200:  # progress survives an interruption
                new += self.index.add(entries)
                entries = []
        if entries:
            new += self.index.add(entries)
        problems = [
            (v.ref, mismatched.get(v.ref) or self._failed[v.lock_sha256])
            for v in versions
            if v.ref in mismatched or v.lock_sha256 in self._failed
        ]
        return new, problems

    def _read_many(self, versions: list[Version]):
        """Verified locks (or a one-line error) of versions, read concurrently from a remote registry."""
        from ..registry.verify import read_verified

        def one(v: Version):
            try:
                return read_verified(self.registry, v)[2]
            except MlenvError as exc:
                return str(exc).splitlines()[0]

        if self.local or len(versions) < 2:
            with self._lock:
                yield from (one(v) for v in versions)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            yield from pool.map(one, versions)

    def search(
        self, query: str | Query, *, platform: str | None = None, include_archived: bool = False
    ) -> SearchResult:
        """Every version (not archived, unless include_archived) whose lock holds a package
        matching query, per platform. Locks not indexed yet are read (verified) and indexed first."""
        q = parse_query(query) if isinstance(query, str) else query
        searched = [v for versions in self.listing().values() for v in versions if include_archived or not v.archived]
        result = SearchResult(q, platform or None, include_archived, searched=len(searched))
        versions, result.problems, result.indexed, rows = self._indexed(
            lambda versions, problems, new: (versions, problems, new, self.index.lookup(q, platform or None)),
            include_archived=include_archived,
        )
        result.problems = [p for p in result.problems if include_archived or not self._archived(p[0])]
        holders: dict[str, list[Version]] = {}
        for v in versions:
            holders.setdefault(v.lock_sha256, []).append(v)
        for row in rows:
            if row.lock_sha256 in holders and q.matches(row.version):
                result.hits.extend(Hit(v, row) for v in holders[row.lock_sha256])
        result.hits.sort(key=lambda h: (h.version.name, -h.version.version, h.row.platform, h.row.manager, h.row.name))
        return result

    def _archived(self, ref: str) -> bool:
        name, _, number = ref.partition("@")
        return any(v.archived for v in self.listing().get(name, []) if str(v.version) == number)

    def reindex(self) -> None:
        """Throw the derived search index away; the next search rebuilds it from verified locks."""
        with self._lock:
            self.index.discard()
            self._failed.clear()

    def _indexed(self, fn, *, include_archived: bool = True):
        """fn(versions, problems, newly indexed) over the versions whose locks are indexed (and
        agree with their record), after bringing the index up to date; a damaged index is
        rebuilt once. Under the catalog's lock: the index connection is shared by threads."""
        import sqlite3

        everything = [v for versions in self.listing().values() for v in versions]
        for attempt in (1, 2):
            try:
                with self._lock:
                    new, problems = self._update_index(everything)
                    bad = {ref for ref, _ in problems}
                    versions = [v for v in everything if v.ref not in bad and (include_archived or not v.archived)]
                    return fn(versions, problems, new)
            except sqlite3.DatabaseError:
                if attempt == 2:
                    raise RegistryError(
                        f"{self.index.path}: the search index keeps failing", hint="remove the file; it is a cache"
                    ) from None
                self.index.discard()
        raise AssertionError("unreachable")  # pragma: no cover

    def corpus(self, *, include_archived: bool = True) -> tuple[list[Version], list[Row], list[tuple[str, str]]]:
        """Everything search looks at: the versions whose locks are indexed (and agree with
        their record), every index row of those locks, and the versions left out with why."""
        return self._indexed(
            lambda versions, problems, _: (versions, self.index.rows({v.lock_sha256 for v in versions}), problems),
            include_archived=include_archived,
        )

    def package_names(self, *, include_archived: bool = True) -> list[tuple[str, int]]:
        """(normalized name, how many distinct locks hold it) over the registry's versions: the A-Z page."""
        return self._indexed(
            lambda versions, *_: self.index.names({v.lock_sha256 for v in versions}), include_archived=include_archived
        )

    def platforms(self) -> list[str]:
        """Every platform some indexed lock of the registry's versions has (the search form's choices)."""
        return self._indexed(lambda versions, *_: self.index.platforms({v.lock_sha256 for v in versions}))
