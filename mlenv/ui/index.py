"""The derived package-search index of one registry: a SQLite file in the user cache.

Lock files are content-addressed (the registry records their sha256), so what a lock
holds never changes: the index maps lock sha256 -> its packages, and is brought up to
date incrementally by indexing the locks of versions it has not seen yet. It holds no
version list: every search joins it with the registry's current versions, so an entry
of a lock no version uses any more is ignored, never shown.

It is a cache, never trusted: a file that is not an SQLite database, has another
format or was built for another registry URL is discarded and rebuilt (the new file is
created under a temporary name and renamed into place, so no reader sees it half made);
a database error while reading it does the same (mlenv.ui.catalog retries once).

    <user cache>/mlenv/search/<sha256(registry key)[:32]>.sqlite3

    meta(key PRIMARY KEY, value)            format = 2, registry = <key>
    locks(id INTEGER PRIMARY KEY, sha256 UNIQUE, content_hash)
    packages(lock REFERENCES locks(id), platform, manager, name, key, alias, version, size, source)
        key   = the normalized name (PEP 503), indexed
        alias = for conda packages, the normalized PyPI name they provide when it differs, indexed
    listing(name PRIMARY KEY, token, versions)
        the version records of one name (a JSON list of Version fields) as the registry listed
        them when its cheap state check answered `token` (OCIRegistry.listing_state): a
        remote registry needs one request per version to list them, the check about two per
        name, so a warm search or page lists from here while the token is unchanged. Every
        record read back is checked again (mlenv.registry.records.make_version).

Damage is found where it matters: a file that does not open as this index is rebuilt
at once; a page that turns out corrupt while a search reads it raises sqlite3.DatabaseError
(as does a row of the wrong shape) and the caller discards the file and searches again.
A whole-file check on every open (PRAGMA quick_check) would read the entire file, which
costs more than the search it protects (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..solve.names import normalize, pypi_name

if TYPE_CHECKING:
    from ..lockfile import Lock
    from ..registry.base import Version
    from .search import Query

FORMAT = "2"  # 2: the listing table
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE locks (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, content_hash TEXT NOT NULL);
CREATE TABLE packages (
    lock INTEGER NOT NULL REFERENCES locks(id), platform TEXT NOT NULL, manager TEXT NOT NULL, name TEXT NOT NULL,
    key TEXT NOT NULL, alias TEXT, version TEXT NOT NULL, size INTEGER, source TEXT NOT NULL
);
CREATE INDEX packages_by_key ON packages(key);
CREATE INDEX packages_by_alias ON packages(alias) WHERE alias IS NOT NULL;
CREATE TABLE listing (name TEXT PRIMARY KEY, token TEXT NOT NULL, versions TEXT NOT NULL);
"""
_COLS = "locks.sha256, platform, manager, name, key, alias, version, size, source"
_FROM = "packages JOIN locks ON locks.id = packages.lock"


class IndexDiscarded(Exception):
    """The index file was unusable (corrupt, foreign, another format) and was rebuilt."""


@dataclass(frozen=True)
class Row:
    lock_sha256: str
    platform: str
    manager: str
    name: str
    key: str
    alias: str | None
    version: str
    size: int | None
    source: str


def rows_of(lock_sha256: str, lock: Lock) -> list[Row]:
    """The index rows of one (verified) lock: one per package and platform."""
    from ..runtime.secrets import strip_credentials

    out = []
    for p in sorted(lock.packages, key=lambda p: (p.platform, p.manager, p.name, p.version)):
        key = normalize(p.name)
        alias = None
        if p.manager == "conda":
            provided = pypi_name(p.name, noarch=p.get("noarch"), depends=list(p.get("depends") or []))
            alias = provided if provided and provided != key else None
        size = p.get("size")
        source = p.get("channel") if p.manager == "conda" else p.get("index")
        out.append(
            Row(
                lock_sha256,
                p.platform,
                p.manager,
                p.name,
                key,
                alias,
                p.version,
                size if isinstance(size, int) and not isinstance(size, bool) else None,
                strip_credentials(str(source or "")).rstrip("/"),
            )
        )
    return out


def default_path(registry_key: str) -> Path:
    from ..cache import cache_root

    return cache_root() / "search" / (hashlib.sha256(registry_key.encode()).hexdigest()[:32] + ".sqlite3")


class SearchIndex:
    def __init__(self, path: Path, registry_key: str):
        self.path = Path(path)
        self.registry_key = registry_key
        self._db: sqlite3.Connection | None = None
        self.rebuilt = 0  # how many times an unusable file was discarded (for tests and logs)

    # --- opening ---------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if self.path.exists():
            db = self._connect()
            if db is not None:
                return db
            self.rebuilt += 1
        self._create()
        db = self._connect()
        if db is None:  # pragma: no cover - a file we just made is ours
            raise sqlite3.DatabaseError(f"{self.path}: the new search index does not open")
        return db

    def _connect(self) -> sqlite3.Connection | None:
        """The existing file as a connection, or None when it is not our index for this registry."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if (
                meta.get("format") != FORMAT
                or meta.get("registry") != self.registry_key
                or not {"meta", "locks", "packages", "listing"} <= tables
            ):
                db.close()
                return None
        except (sqlite3.Error, ValueError, TypeError):
            db.close()
            return None
        os.utime(self.path)  # last use, for `mlenv cache prune`
        return db

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.executescript(SCHEMA)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('format', ?), ('registry', ?)", (FORMAT, self.registry_key)
                )
            finally:
                db.close()
            # A stale rollback journal of the discarded file must not be applied to the new one.
            for suffix in ("-journal", "-wal", "-shm"):
                try:
                    os.unlink(str(self.path) + suffix)
                except FileNotFoundError:
                    pass
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def discard(self) -> None:
        """Throw the file away (after a database error while using it); the next use rebuilds it."""
        self.close()
        self.rebuilt += 1
        self._create()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- the registry's listing, by state token -----------------------------------
    def cached_versions(self, name: str, token: str) -> list[Version] | None:
        """The versions stored for name under token, or None (another token, none stored,
        or a record that does not check out: the caller lists the registry again)."""
        import json

        from ..registry.base import RegistryError
        from ..registry.records import make_version

        row = self.db.execute("SELECT token, versions FROM listing WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] != token or not isinstance(row[1], str):
            return None
        try:
            records = json.loads(row[1])
            out = []
            for r in records if isinstance(records, list) else [None]:
                if not isinstance(r, dict) or not isinstance(r.get("archived"), bool) or r.get("name") != name:
                    return None
                out.append(make_version(f"{self.path}: cached listing of {name}", **r))
            return out
        except (ValueError, TypeError, RegistryError):  # not JSON, other fields, a record that does not check
            return None

    def store_versions(self, name: str, token: str, versions: list[Version]) -> None:
        import json
        from dataclasses import asdict

        data = json.dumps([asdict(v) for v in versions], sort_keys=True, separators=(",", ":"))
        self.db.execute("INSERT OR REPLACE INTO listing(name, token, versions) VALUES (?, ?, ?)", (name, token, data))

    def forget_listing(self, keep: Iterable[str]) -> None:
        """Drop the stored listings of names the registry no longer has."""
        self._wanted(keep)
        self.db.execute("DELETE FROM listing WHERE name NOT IN (SELECT sha256 FROM wanted)")

    # --- content ---------------------------------------------------------------
    def known(self) -> dict[str, str]:
        """lock sha256 -> the content hash of that lock, for every indexed lock."""
        return {str(sha): str(h) for sha, h in self.db.execute("SELECT sha256, content_hash FROM locks")}

    def add(self, entries: Iterable[tuple[str, str, list[Row]]]) -> int:
        """Index (lock sha256, content hash, rows) entries in one transaction; a lock
        another process indexed meanwhile is skipped. Returns how many were new."""
        db = self.db
        new = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for sha, content_hash, rows in entries:
                cur = db.execute("INSERT OR IGNORE INTO locks(sha256, content_hash) VALUES (?, ?)", (sha, content_hash))
                if cur.rowcount != 1:
                    continue
                lock_id = cur.lastrowid
                db.executemany(
                    "INSERT INTO packages(lock, platform, manager, name, key, alias, version, size, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (lock_id, r.platform, r.manager, r.name, r.key, r.alias, r.version, r.size, r.source)
                        for r in rows
                    ],
                )
                new += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def lookup(self, query: Query, platform: str | None = None) -> list[Row]:
        """Rows whose name (or the PyPI name a conda package provides) is the query's,
        filtered by manager and platform; version clauses are left to the caller."""
        where = ["(key = ? OR alias = ?)"]
        args: list[object] = [query.name, query.name]
        if query.manager:
            where.append("manager = ?")
            args.append(query.manager)
        if platform:
            where.append("platform = ?")
            args.append(platform)
        sql = f"SELECT {_COLS} FROM {_FROM} WHERE {' AND '.join(where)}"
        return [_row(r) for r in self.db.execute(sql, args)]

    def _wanted(self, lock_sha256s: Iterable[str]) -> None:
        """The connection's temporary table `wanted` holds these lock sha256s (for joins)."""
        db = self.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (sha256 TEXT PRIMARY KEY)")
        db.execute("DELETE FROM wanted")
        db.executemany("INSERT OR IGNORE INTO wanted(sha256) VALUES (?)", ((s,) for s in lock_sha256s))

    def names(self, lock_sha256s: Iterable[str]) -> list[tuple[str, int]]:
        """(normalized name, how many of these locks hold it), by name: the packages A-Z page."""
        self._wanted(lock_sha256s)
        out = []
        for key, count in self.db.execute(
            f"SELECT key, COUNT(DISTINCT lock) FROM {_FROM} JOIN wanted ON wanted.sha256 = locks.sha256 "
            "GROUP BY key ORDER BY key"
        ):
            if not isinstance(key, str) or not isinstance(count, int):
                raise sqlite3.DatabaseError("search index row of unexpected types")
            out.append((key, count))
        return out

    def platforms(self, lock_sha256s: Iterable[str]) -> list[str]:
        self._wanted(lock_sha256s)
        sql = f"SELECT DISTINCT platform FROM {_FROM} JOIN wanted ON wanted.sha256 = locks.sha256 ORDER BY platform"
        return [str(r[0]) for r in self.db.execute(sql)]

    def rows(self, lock_sha256s: Iterable[str]) -> list[Row]:
        """Every row of these locks (the static site's search data)."""
        wanted = set(lock_sha256s)
        return [
            r for r in (_row(x) for x in self.db.execute(f"SELECT {_COLS} FROM {_FROM}")) if r.lock_sha256 in wanted
        ]


def _row(r: tuple) -> Row:
    """A stored row, types checked (the file is a cache anyone could have edited)."""
    sha, platform, manager, name, key, alias, version, size, source = r
    if (
        not all(isinstance(x, str) for x in (sha, platform, manager, name, key, version, source))
        or not (alias is None or isinstance(alias, str))
        or not (size is None or isinstance(size, int))
    ):
        raise sqlite3.DatabaseError("search index row of unexpected types")
    return Row(sha, platform, manager, name, key, alias, version, size, source)
