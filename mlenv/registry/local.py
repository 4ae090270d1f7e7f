"""The embedded local registry: SQLite index + content-addressed blobs.

Layout under the registry root (default `platformdirs.user_data_dir("mlenv")/registry`,
overridden by MLENV_REGISTRY or --registry PATH):

    index.sqlite3           the index (WAL journal), schema below
    blobs/sha256/<hex>      spec and lock bytes, named by their sha256, written atomically

Registering runs in one `BEGIN IMMEDIATE` transaction, so concurrent processes
serialize on the write lock: the content-hash lookup, the next version number
and the insert are one atomic step (UNIQUE(name, content_hash) and the primary
key (name, version) back it up). Blobs are written before the transaction (they
are immutable and content-addressed, so two writers of one blob are harmless) and
verified against their name on every read.

Integrity (docs/security.md, "Registry integrity"): every row read is checked
(mlenv.registry.records) before it is used; an empty, missing or foreign index beside
stored blobs is an error, never a fresh registry; a registry this user cannot write is
opened read-only and serves reads, and every write says so in one line.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..runtime.fsutil import atomic_write, sweep_temp_files
from ..validation import quote
from .base import NotFound, Registered, Registry, RegistryError, Version, check_label
from .records import (
    CONTENT_HASH,
    HEX64,
    ROW_COLUMNS,
    check_name,
    damaged,
    is_label,
    is_name,
    is_number,
    is_text,
    make_version,
    make_versions,
)

SCHEMA_VERSION = 1
SCHEMA_RE = re.compile(r"^[0-9]{1,9}\Z", re.ASCII)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
    name     TEXT PRIMARY KEY,
    archived INTEGER NOT NULL DEFAULT 0,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name         TEXT NOT NULL REFERENCES environments(name),
    version      INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    spec_sha256  TEXT NOT NULL,
    lock_sha256  TEXT NOT NULL,
    created      TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    archived     INTEGER NOT NULL DEFAULT 0,
    image        TEXT,
    image_digest TEXT,
    PRIMARY KEY (name, version),
    UNIQUE (name, content_hash)
);
CREATE TABLE IF NOT EXISTS labels (
    name    TEXT NOT NULL,
    label   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, label),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TABLE IF NOT EXISTS label_history (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL,
    label   TEXT NOT NULL,
    version INTEGER NOT NULL,
    time    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS label_history_by_label ON label_history(name, label, id);
"""


def _text(data: bytes) -> str:
    """TEXT columns as str even when a tampered index holds bytes that are not UTF-8 (the
    row checks then refuse what they cannot accept; sqlite3 would raise mid-query)."""
    return data.decode("utf-8", "replace")


F = TypeVar("F", bound=Callable[..., Any])


def _sqlite_errors(method: F) -> F:
    """A damaged index file ("database disk image is malformed", ...) is one RegistryError."""

    @functools.wraps(method)
    def wrapper(self: LocalRegistry, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise RegistryError(
                f"{self.index_path}: cannot read the local registry index ({str(exc)[:200]})",
                hint="restore index.sqlite3 from a backup",
            ) from None

    return wrapper  # type: ignore[return-value]


def default_root() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("mlenv")) / "registry"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalRegistry(Registry):
    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root).expanduser() if root else default_root()
        self.url = str(self.root)
        self._db: sqlite3.Connection | None = None

    # --- plumbing -------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _ensure_index(self) -> None:
        if self._db is None:
            self._db = self._connect()

    @property
    def index_path(self) -> Path:
        return self.root / "index.sqlite3"

    def _has_index(self) -> bool:
        """Whether there is an index to read. No index beside stored blobs is damage, not
        an empty registry (a fresh index would hand out version 1 again)."""
        if self.index_path.exists():
            return True
        if self._has_blobs():
            raise self._damaged("index.sqlite3 is missing")
        return False

    def _has_blobs(self) -> bool:
        try:
            return any(True for _ in (self.root / "blobs" / "sha256").iterdir())
        except OSError:
            return False

    def _damaged(self, what: str) -> RegistryError:
        return RegistryError(
            f"{self.index_path}: {what}, but the registry holds stored files "
            f"({self.root / 'blobs'}); refusing to treat it as an empty registry",
            hint="restore index.sqlite3 from a backup; mlenv never re-creates an index beside blobs",
        )

    def writable(self) -> bool:
        """Whether this user may write the registry (its directory and, when there, its index)."""
        if not self.root.exists():
            parent = next((p for p in self.root.parents if p.exists()), None)
            return parent is not None and os.access(parent, os.W_OK)
        return os.access(self.root, os.W_OK) and (not self.index_path.exists() or os.access(self.index_path, os.W_OK))

    def _require_writable(self) -> None:
        if not self.writable():
            raise RegistryError(
                f"the registry {self.url} is read-only for this user; nothing was written",
                hint="reads (list, versions, show, restore) work; to write, use a registry you can "
                "write (--registry DIR) or ask its owner",
            )

    def _connect(self) -> sqlite3.Connection:
        path = self.index_path
        if not path.exists() and self._has_blobs():  # before sqlite3 creates an empty file there
            raise self._damaged("index.sqlite3 is missing")
        try:
            writable = self.writable()
            if writable:
                self.root.mkdir(parents=True, exist_ok=True)
                # isolation_level=None: we issue BEGIN/COMMIT ourselves.
                db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA busy_timeout = 60000")
            else:
                db = self._connect_read_only(path)
            db.text_factory = _text
            tables = self._tables(db)  # before anything writes: a damaged index stays as it was found
            if "versions" not in tables:
                self._create(db, tables)
            else:
                self._check_schema(db)
            if writable:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a damaged file; its schema text may not decode
            raise RegistryError(
                f"{path}: cannot open the local registry ({str(exc)[:200]})",
                hint="check the path and permissions (MLENV_REGISTRY / --registry)",
            ) from None
        return db

    def _connect_read_only(self, path: Path) -> sqlite3.Connection:
        """A registry this user may not write: read it in place. SQLite needs write access to
        the directory for WAL's shared-memory file, so when mode=ro cannot read it, the index
        is opened immutable, which is exact when no write-ahead log is pending (a clean
        close leaves none)."""
        if not path.exists():
            raise RegistryError(
                f"the registry {self.url} does not exist and this user cannot create it",
                hint="pass --registry DIR with a directory you can write",
            )
        uri = path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            pass
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise RegistryError(
                f"{path}: the registry is read-only for this user and has a pending write-ahead log "
                f"({wal.name}) that only a writer can apply",
                hint="ask its owner to run any mlenv command on it once, or copy the directory",
            )
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    @staticmethod
    def _tables(db: sqlite3.Connection) -> set[str]:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _create(self, db: sqlite3.Connection, tables: set[str]) -> None:
        """A new index, only where there is nothing to lose: an empty file and no blobs.
        Decided under the write lock: another process or thread may be creating the same
        index right now (and then storing blobs), so what was read before the lock is read
        again inside it."""
        self._refuse_foreign(tables)
        if self._has_blobs():  # before anything writes: a damaged index stays as it was found
            # read after the blobs: whoever stored them committed the index first
            if "versions" not in self._tables(db):
                raise self._damaged("index.sqlite3 is empty")
            self._check_schema(db)
            return
        if not self.writable():
            raise RegistryError(f"{self.index_path}: empty index in a read-only registry")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = self._tables(db)
            created_meanwhile = "versions" in tables
            if not created_meanwhile:
                self._refuse_foreign(tables)
                if self._has_blobs():
                    raise self._damaged("index.sqlite3 is empty")
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if created_meanwhile:
            self._check_schema(db)

    def _refuse_foreign(self, tables: set[str]) -> None:
        foreign = sorted(t for t in tables if not t.startswith("sqlite_"))
        if foreign and "versions" not in tables:
            raise RegistryError(
                f"{self.index_path}: not an mlenv registry index (it has the tables "
                f"{quote(', '.join(foreign))} but no `versions`)",
                hint="point --registry / MLENV_REGISTRY at an mlenv registry directory",
            )

    def _check_schema(self, db: sqlite3.Connection) -> None:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is None:
            raise RegistryError(
                f"{self.index_path}: the index has no schema version (meta table); it is damaged",
                hint="restore index.sqlite3 from a backup",
            )
        value = row[0]
        if not (isinstance(value, str) and SCHEMA_RE.match(value)):
            raise RegistryError(
                f"{self.index_path}: the index's schema version {quote(value)} is not a number; it is damaged",
                hint="restore index.sqlite3 from a backup",
            )
        if int(value) > SCHEMA_VERSION:
            raise RegistryError(
                f"{self.index_path}: registry schema {value} is newer than this mlenv understands", hint="upgrade mlenv"
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def blob_path(self, hexdigest: str) -> Path:
        if not HEX64.match(hexdigest):  # a blob name is a sha256, never a path from a record
            raise damaged(str(self.index_path), f"blob name {quote(hexdigest)}")
        return self.root / "blobs" / "sha256" / hexdigest

    def _put_blob(self, data: bytes) -> str:
        hexdigest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(hexdigest)
        try:
            if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == hexdigest:
                return hexdigest
        except OSError:
            pass
        atomic_write(path, data, mode=0o444)
        return hexdigest

    def _get_blob(self, hexdigest: str, what: str) -> bytes:
        path = self.blob_path(hexdigest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RegistryError(
                f"{path}: the {what} blob is missing from the local registry",
                hint="the registry directory was damaged; restore it from a backup",
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != hexdigest:
            raise RegistryError(
                f"{path}: the stored {what} is corrupt or was tampered with (sha256 {actual[:12]}…, "
                f"expected {hexdigest[:12]}…); refusing to use it",
                hint="nothing was written; restore the registry directory from a backup or register the files again",
            )
        return data

    def _version(self, row, env_archived: bool = False, labels: list[str] | None = None) -> Version:
        """A Version from a `versions` row, every column checked (records.make_version)."""
        archived = row[7]
        if archived not in (0, 1):
            raise damaged(self._where(row), f"archived flag {quote(archived)}")
        return make_version(
            lambda: self._where(row),
            name=row[0],
            version=row[1],
            content_hash=row[2],
            spec_sha256=row[3],
            lock_sha256=row[4],
            created=row[5],
            description=row[6],
            archived=bool(archived) or env_archived,
            image=row[8],
            image_digest=row[9],
            labels=labels or [],
        )

    def _fetch_utf8(self, sql: str, args: tuple[object, ...]) -> list[Any] | None:
        """Every row of a query, TEXT decoded by sqlite3 itself (strict UTF-8, no Python call per
        value as with _text: 15 ms of a 10,000-row listing), or None when a value is not UTF-8.
        Rows read either way are checked alike; the factory is the connection's, so a query of
        another thread meanwhile may decode strictly too, and then fails as a damaged index."""
        db = self.db
        db.text_factory = str
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "UTF-8" not in str(exc):  # "Could not decode to UTF-8 column ..."
                raise
            return None
        finally:
            db.text_factory = _text

    def _where(self, row) -> str:
        return f"{self.index_path} (versions row {quote(row[0], 40)}@{quote(row[1], 12)})"

    _COLS = ", ".join(ROW_COLUMNS)  # records.make_versions takes rows in this order

    def _env(self, name: str) -> tuple[int]:
        row = self.db.execute("SELECT archived FROM environments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(
                f"no environment named {quote(name)} in the registry {self.url}",
                hint="`mlenv list` shows the registered names",
            )
        if row[0] not in (0, 1):
            raise damaged(f"{self.index_path} (environments row {quote(name, 40)})", f"archived flag {quote(row[0])}")
        return row

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, on a registry this user may write (one clear line if not)."""
        self._require_writable()
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc):
                self._require_writable()  # pragma: no cover - writable() said yes, SQLite says no
                raise RegistryError(f"the registry {self.url} is read-only ({exc}); nothing was written") from None
            raise
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- Registry -------------------------------------------------------------
    holds_artifacts = True

    @_sqlite_errors
    def register(self, name, spec, lock, content_hash, *, description="", image=None, image_digest=None,
                 artifacts=None) -> Registered:  # fmt: skip
        check_name(name)
        self._require_writable()
        self._ensure_index()  # the index first: blobs without an index would read as damage
        sweep_temp_files(self.root / "blobs" / "sha256")  # blob writes of killed registers (mlenv.runtime.fsutil)
        spec_hex = self._put_blob(spec)
        lock_hex = self._put_blob(lock)
        for sha, (_filename, data) in sorted((artifacts or {}).items()):  # built wheels: blobs like the others
            if self._put_blob(data) != sha:
                raise RegistryError(f"a built wheel given for {name} does not match its sha256 {sha[:12]}…")
        with self._transaction() as db:
            existing = db.execute(
                f"SELECT {self._COLS} FROM versions WHERE name = ? AND content_hash = ?", (name, content_hash)
            ).fetchone()
            if existing is not None:
                found = self._with_labels(existing)
            else:
                found = None
                created = now_iso()
                db.execute(
                    "INSERT OR IGNORE INTO environments(name, archived, created) VALUES (?, 0, ?)", (name, created)
                )
                (top,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?", (name,)).fetchone()
                if not (top == 0 or is_number(top)):
                    raise damaged(f"{self.index_path} (versions of {quote(name, 40)})", f"highest version {quote(top)}")
                number = top + 1
                db.execute(
                    f"INSERT INTO versions({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    (name, number, content_hash, spec_hex, lock_hex, created, description, image, image_digest),
                )
        if found is not None:
            return Registered(found, created=False)
        return Registered(self.resolve(name, str(number)), created=True)

    @_sqlite_errors
    def register_many(self, items) -> int:
        """Bulk import (benchmarks, migrations): items of (name, spec, lock, content_hash,
        description). One transaction; same semantics as register. Returns how many were new."""
        self._require_writable()
        self._ensure_index()  # the index first: blobs without an index would read as damage
        rows = [(check_name(n), self._put_blob(s), self._put_blob(lk), h, d) for n, s, lk, h, d in items]
        new = 0
        with self._transaction() as db:
            for name, spec_hex, lock_hex, content_hash, description in rows:
                if db.execute(
                    "SELECT 1 FROM versions WHERE name = ? AND content_hash = ?", (name, content_hash)
                ).fetchone():
                    continue
                created = now_iso()
                db.execute(
                    "INSERT OR IGNORE INTO environments(name, archived, created) VALUES (?, 0, ?)", (name, created)
                )
                (top,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?", (name,)).fetchone()
                db.execute(
                    f"INSERT INTO versions({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL)",
                    (name, top + 1, content_hash, spec_hex, lock_hex, created, description),
                )
                new += 1
        return new

    def _labels_of(self, name: str, version: int | None = None) -> dict[int, list[str]]:
        sql = "SELECT label, version FROM labels WHERE name = ?"
        args: tuple[object, ...] = (name,)
        if version is not None:
            sql, args = sql + " AND version = ?", (name, version)
        out: dict[int, list[str]] = {}
        for label, number in self.db.execute(sql + " ORDER BY label", args):
            if not is_label(label) or not is_number(number):
                raise damaged(
                    f"{self.index_path} (labels of {quote(name, 40)})", f"label {quote(label)} -> {quote(number)}"
                )
            out.setdefault(number, []).append(label)
        return out

    def _with_labels(self, row) -> Version:
        (env_archived,) = self._env(row[0])
        labels = self._labels_of(row[0], row[1]).get(row[1], [])
        return self._version(row, bool(env_archived), labels)

    @_sqlite_errors
    def names(self, *, include_archived: bool = False) -> list[str]:
        if not self._has_index():
            return []
        sql = "SELECT name FROM environments" + ("" if include_archived else " WHERE archived = 0") + " ORDER BY name"
        out = []
        for (name,) in self.db.execute(sql):
            if not is_name(name):
                raise damaged(f"{self.index_path} (environments)", f"name {quote(name)}")
            out.append(name)
        return out

    @_sqlite_errors
    def summary(self, *, include_archived: bool = False) -> list[dict]:
        """One row per name for `mlenv list`: versions, latest live version, labels, archived."""
        if not self._has_index():
            return []
        rows = self.db.execute(
            "SELECT e.name, e.archived, COUNT(v.version), MAX(CASE WHEN v.archived = 0 THEN v.version END), MAX(v.created) "
            "FROM environments e LEFT JOIN versions v ON v.name = e.name "
            + ("" if include_archived else "WHERE e.archived = 0 ")
            + "GROUP BY e.name ORDER BY e.name"
        ).fetchall()
        out = []
        for n, a, c, latest, upd in rows:
            where = f"{self.index_path} (environment {quote(n, 40)})"
            if not is_name(n) or a not in (0, 1):
                raise damaged(where, f"environment row {quote(n)} (archived {quote(a)})")
            if not (latest is None or is_number(latest)) or not (upd is None or is_text(upd, newlines=False)):
                raise damaged(where, f"version row (latest {quote(latest)}, created {quote(upd)})")
            out.append({"name": n, "archived": bool(a), "versions": c, "latest": None if a else latest, "updated": upd})
        return out

    @_sqlite_errors
    def versions(self, name: str) -> list[Version]:
        if not self._has_index():
            raise NotFound(
                f"no environment named {quote(name)} in the registry {self.url} (it is empty)",
                hint="`mlenv register` records the current spec and lock",
            )
        archived = bool(self._env(name)[0])
        labels = self._labels_of(name)
        sql = f"SELECT {self._COLS} FROM versions WHERE name = ? ORDER BY version"
        rows = self._fetch_utf8(sql, (name,))
        if rows is None:  # a text that is not UTF-8: read as _text reads it, for the checks to name
            rows = self.db.execute(sql, (name,)).fetchall()
        # every row checked a column at a time; a damaged one is named by the per-row path (records.make_versions)
        return make_versions(
            rows, lambda r: self._version(r, archived, labels.get(r[1], [])), labels=labels, env_archived=archived
        )

    @_sqlite_errors
    def find(self, name: str, content_hash: str) -> Version | None:
        if not self._has_index():
            return None
        row = self.db.execute(
            f"SELECT {self._COLS} FROM versions WHERE name = ? AND content_hash = ?", (name, content_hash)
        ).fetchone()
        return self._with_labels(row) if row else None

    @_sqlite_errors
    def content_hashes(self) -> set[str]:
        if not self._has_index():
            return set()
        out = set()
        for (h,) in self.db.execute("SELECT DISTINCT content_hash FROM versions"):
            if not (isinstance(h, str) and CONTENT_HASH.match(h)):
                raise damaged(f"{self.index_path} (versions)", f"content hash {quote(h)}")
            out.add(h)
        return out

    def read(self, version: Version) -> tuple[bytes, bytes]:
        return self._get_blob(version.spec_sha256, f"mlenv.toml of {version.ref}"), self._get_blob(
            version.lock_sha256, f"mlenv.lock of {version.ref}"
        )

    def read_artifact(self, version: Version, sha256: str) -> bytes | None:
        if not HEX64.match(sha256) or not self.blob_path(sha256).is_file():
            return None
        return self._get_blob(sha256, f"built wheel of {version.ref}")

    def _require(self, name: str, version: int) -> None:
        self._env(name)
        if self.db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone() is None:
            raise NotFound(f"{name}@{version}: no such version")

    @_sqlite_errors
    def set_label(self, name: str, version: int, label: str) -> None:
        check_label(label)
        with self._transaction() as db:
            self._require(name, version)
            current = db.execute("SELECT version FROM labels WHERE name = ? AND label = ?", (name, label)).fetchone()
            if current is None or current[0] != version:
                db.execute(
                    "INSERT INTO labels(name, label, version) VALUES (?, ?, ?) "
                    "ON CONFLICT(name, label) DO UPDATE SET version = excluded.version",
                    (name, label, version),
                )
                db.execute(
                    "INSERT INTO label_history(name, label, version, time) VALUES (?, ?, ?, ?)",
                    (name, label, version, now_iso()),
                )

    @_sqlite_errors
    def label_history(self, name: str, label: str) -> list[tuple[str, int]]:
        self._env(name)
        out = []
        for t, v in self.db.execute(
            "SELECT time, version FROM label_history WHERE name = ? AND label = ? ORDER BY id", (name, label)
        ):
            if not is_text(t, newlines=False) or not is_number(v):
                raise damaged(
                    f"{self.index_path} (label_history of {quote(name, 40)})", f"entry {quote(t)} -> {quote(v)}"
                )
            out.append((t, v))
        return out

    @_sqlite_errors
    def set_archived(self, name: str, version: int | None, archived: bool) -> None:
        with self._transaction() as db:
            if version is None:
                self._env(name)
                db.execute("UPDATE environments SET archived = ? WHERE name = ?", (int(archived), name))
            else:
                self._require(name, version)
                db.execute(
                    "UPDATE versions SET archived = ? WHERE name = ? AND version = ?", (int(archived), name, version)
                )

    @_sqlite_errors
    def update(self, name: str, version: int, *, description=None, image=None, image_digest=None) -> Version:
        with self._transaction() as db:
            self._require(name, version)
            for column, value in (("description", description), ("image", image), ("image_digest", image_digest)):
                if value is not None:
                    db.execute(
                        f"UPDATE versions SET {column} = ? WHERE name = ? AND version = ?", (value, name, version)
                    )
        return self.resolve(name, str(version))
