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
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from ..runtime.fsutil import atomic_write, sweep_temp_files
from .base import NotFound, Registered, Registry, RegistryError, Version, check_label

SCHEMA_VERSION = 1

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


def default_root() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("mlenv")) / "registry"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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

    def _connect(self) -> sqlite3.Connection:
        path = self.root / "index.sqlite3"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 60000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            row = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='versions'").fetchone()
            if row is None:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in SCHEMA.split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            else:
                schema = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if schema and int(schema[0]) > SCHEMA_VERSION:
                    raise RegistryError(f"{path}: registry schema {schema[0]} is newer than this mlenv understands",
                                        hint="upgrade mlenv")
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"{path}: cannot open the local registry ({exc})",
                                hint="check the path and permissions (MLENV_REGISTRY / --registry)") from None
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def blob_path(self, hexdigest: str) -> Path:
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
            raise RegistryError(f"{path}: the {what} blob is missing from the local registry",
                                hint="the registry directory was damaged; restore it from a backup") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != hexdigest:
            raise RegistryError(
                f"{path}: the stored {what} is corrupt or was tampered with (sha256 {actual[:12]}…, "
                f"expected {hexdigest[:12]}…); refusing to use it",
                hint="nothing was written; restore the registry directory from a backup or register the files again",
            )
        return data

    def _version(self, row, env_archived: bool = False, labels: list[str] | None = None) -> Version:
        return Version(
            name=row[0], version=row[1], content_hash=row[2], spec_sha256=row[3], lock_sha256=row[4],
            created=row[5], description=row[6], archived=bool(row[7]) or env_archived,
            image=row[8], image_digest=row[9], labels=labels or [],
        )

    _COLS = "name, version, content_hash, spec_sha256, lock_sha256, created, description, archived, image, image_digest"

    def _env(self, name: str):
        row = self.db.execute("SELECT archived FROM environments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no environment named {name!r} in the registry {self.url}",
                           hint="`mlenv list` shows the registered names")
        return row

    # --- Registry -------------------------------------------------------------
    def register(self, name, spec, lock, content_hash, *, description="", image=None, image_digest=None) -> Registered:
        sweep_temp_files(self.blob_path("0").parent)  # blob writes of killed registers (mlenv.runtime.fsutil)
        spec_hex = self._put_blob(spec)
        lock_hex = self._put_blob(lock)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            existing = db.execute(f"SELECT {self._COLS} FROM versions WHERE name = ? AND content_hash = ?",
                                  (name, content_hash)).fetchone()
            if existing is not None:
                db.execute("COMMIT")
                return Registered(self._with_labels(existing), created=False)
            created = now_iso()
            db.execute("INSERT OR IGNORE INTO environments(name, archived, created) VALUES (?, 0, ?)", (name, created))
            (top,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?", (name,)).fetchone()
            number = top + 1
            db.execute(
                f"INSERT INTO versions({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (name, number, content_hash, spec_hex, lock_hex, created, description, image, image_digest),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Registered(self.resolve(name, str(number)), created=True)

    def register_many(self, items) -> int:
        """Bulk import (benchmarks, migrations): items of (name, spec, lock, content_hash,
        description). One transaction; same semantics as register. Returns how many were new."""
        db = self.db
        rows = [(n, self._put_blob(s), self._put_blob(lk), h, d) for n, s, lk, h, d in items]
        new = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for name, spec_hex, lock_hex, content_hash, description in rows:
                if db.execute("SELECT 1 FROM versions WHERE name = ? AND content_hash = ?", (name, content_hash)).fetchone():
                    continue
                created = now_iso()
                db.execute("INSERT OR IGNORE INTO environments(name, archived, created) VALUES (?, 0, ?)", (name, created))
                (top,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?", (name,)).fetchone()
                db.execute(f"INSERT INTO versions({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL)",
                           (name, top + 1, content_hash, spec_hex, lock_hex, created, description))
                new += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def _with_labels(self, row) -> Version:
        (env_archived,) = self._env(row[0])
        labels = [r[0] for r in self.db.execute("SELECT label FROM labels WHERE name = ? AND version = ? ORDER BY label",
                                                (row[0], row[1]))]
        return self._version(row, bool(env_archived), labels)

    def names(self, *, include_archived: bool = False) -> list[str]:
        if not (self.root / "index.sqlite3").exists():
            return []
        sql = "SELECT name FROM environments" + ("" if include_archived else " WHERE archived = 0") + " ORDER BY name"
        return [r[0] for r in self.db.execute(sql)]

    def summary(self, *, include_archived: bool = False) -> list[dict]:
        """One row per name for `mlenv list`: versions, latest live version, labels, archived."""
        if not (self.root / "index.sqlite3").exists():
            return []
        rows = self.db.execute(
            "SELECT e.name, e.archived, COUNT(v.version), MAX(CASE WHEN v.archived = 0 THEN v.version END), MAX(v.created) "
            "FROM environments e LEFT JOIN versions v ON v.name = e.name "
            + ("" if include_archived else "WHERE e.archived = 0 ")
            + "GROUP BY e.name ORDER BY e.name"
        ).fetchall()
        return [{"name": n, "archived": bool(a), "versions": c, "latest": None if a else latest, "updated": upd}
                for n, a, c, latest, upd in rows]

    def versions(self, name: str) -> list[Version]:
        if not (self.root / "index.sqlite3").exists():
            raise NotFound(f"no environment named {name!r} in the registry {self.url} (it is empty)",
                           hint="`mlenv register` records the current spec and lock")
        (env_archived,) = self._env(name)
        labels: dict[int, list[str]] = {}
        for label, version in self.db.execute("SELECT label, version FROM labels WHERE name = ? ORDER BY label", (name,)):
            labels.setdefault(version, []).append(label)
        rows = self.db.execute(f"SELECT {self._COLS} FROM versions WHERE name = ? ORDER BY version", (name,))
        return [self._version(r, bool(env_archived), labels.get(r[1], [])) for r in rows]

    def find(self, name: str, content_hash: str) -> Version | None:
        if not (self.root / "index.sqlite3").exists():
            return None
        row = self.db.execute(f"SELECT {self._COLS} FROM versions WHERE name = ? AND content_hash = ?",
                              (name, content_hash)).fetchone()
        return self._with_labels(row) if row else None

    def content_hashes(self) -> set[str]:
        if not (self.root / "index.sqlite3").exists():
            return set()
        return {r[0] for r in self.db.execute("SELECT DISTINCT content_hash FROM versions")}

    def read(self, version: Version) -> tuple[bytes, bytes]:
        return self._get_blob(version.spec_sha256, f"mlenv.toml of {version.ref}"), \
            self._get_blob(version.lock_sha256, f"mlenv.lock of {version.ref}")

    def _require(self, name: str, version: int) -> None:
        self._env(name)
        if self.db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone() is None:
            raise NotFound(f"{name}@{version}: no such version")

    def set_label(self, name: str, version: int, label: str) -> None:
        check_label(label)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._require(name, version)
            current = db.execute("SELECT version FROM labels WHERE name = ? AND label = ?", (name, label)).fetchone()
            if current is None or current[0] != version:
                db.execute("INSERT INTO labels(name, label, version) VALUES (?, ?, ?) "
                           "ON CONFLICT(name, label) DO UPDATE SET version = excluded.version", (name, label, version))
                db.execute("INSERT INTO label_history(name, label, version, time) VALUES (?, ?, ?, ?)",
                           (name, label, version, now_iso()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def label_history(self, name: str, label: str) -> list[tuple[str, int]]:
        self._env(name)
        return [(t, v) for t, v in self.db.execute(
            "SELECT time, version FROM label_history WHERE name = ? AND label = ? ORDER BY id", (name, label))]

    def set_archived(self, name: str, version: int | None, archived: bool) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if version is None:
                self._env(name)
                db.execute("UPDATE environments SET archived = ? WHERE name = ?", (int(archived), name))
            else:
                self._require(name, version)
                db.execute("UPDATE versions SET archived = ? WHERE name = ? AND version = ?", (int(archived), name, version))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def update(self, name: str, version: int, *, description=None, image=None, image_digest=None) -> Version:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._require(name, version)
            for column, value in (("description", description), ("image", image), ("image_digest", image_digest)):
                if value is not None:
                    db.execute(f"UPDATE versions SET {column} = ? WHERE name = ? AND version = ?", (value, name, version))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self.resolve(name, str(version))
