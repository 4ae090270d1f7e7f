"""The source tree of a local package: which files, and one hash over them.

Which files: inside a git work tree, what git would commit from that directory
(`git ls-files --cached --others --exclude-standard`: tracked files plus untracked
ones that are not ignored; tracked files deleted from the disk are left out).
Outside git, every file under the directory except the usual build and tool
output (EXCLUDED_DIRS, `*.pyc`). The project's own mlenv.toml and mlenv.lock
never count. mlenv builds the wheel from a copy of exactly
these files, so the wheel is a function of them and a build never writes into
the user's tree.

The **tree hash** is `sha256:` + the SHA-256 of the lines
`<path>\\0<kind>\\0<sha256 of the content>\\n` sorted by path, where path is
relative and '/'-separated and kind is `f` (file), `x` (executable file) or `l`
(symlink; the content is the link's target text). mtimes, owners and the other
permission bits do not count.

Finding out that nothing changed must not cost a build, nor hashing every file:
the last answer is kept per directory in `<user cache>/mlenv/local-sources/`,
with each file's (size, mtime_ns, ctime_ns, inode); a file whose stat is unchanged
keeps its recorded hash, unless it was modified within RACY_SECONDS of the
recording (git's "racy" rule: a second write in the same clock tick keeps the
mtime), in which case it is hashed again. Anything else is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

EXCLUDED_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", "node_modules", "build", "dist", ".eggs", ".ipynb_checkpoints",
})  # fmt: skip
RACY_SECONDS = 2.0
CACHE_FORMAT = 1


class TreeError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    path: str  # relative, '/'-separated
    kind: str  # f | x | l
    sha256: str


def _git_files(root: Path) -> list[str] | None:
    """Files git would commit from root (relative paths), or None outside a work tree."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return sorted(set(names))


def _walk_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS and not d.endswith(".egg-info"))
        rel = os.path.relpath(dirpath, root)
        for f in filenames:
            if f.endswith((".pyc", ".pyo")):
                continue
            out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(out)


def list_files(root: Path, exclude: frozenset[str] = frozenset()) -> list[str]:
    names = _git_files(root)
    if not names:  # outside git, or a directory git ignores entirely
        names = _walk_files(root)
    names = [n for n in names if n not in exclude]
    for n in names:
        if n.startswith("/") or ".." in n.split("/") or "\0" in n:
            raise TreeError(f"{root}: unexpected file name {n!r}")
    return names


def _hash_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cache_path(root: Path) -> Path:
    from ..runtime.cachedir import default_cache_root

    key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return default_cache_root() / "local-sources" / f"{key}.json"


def _load_cache(root: Path) -> dict:
    try:
        data = json.loads(_cache_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("root") != str(root):
        return {}
    return data


def scan(root: str | os.PathLike[str], *, exclude: frozenset[str] = frozenset(),
         use_cache: bool = True) -> tuple[str, list[Entry]]:  # fmt: skip
    """(tree hash, entries) of the source tree at root (a directory). `exclude`: relative
    paths left out (mlenv.toml and mlenv.lock when root is the project itself: writing
    the lock must not change the tree it records)."""
    root = Path(os.path.realpath(root))
    if not root.is_dir():
        raise TreeError(f"{root}: not a directory")
    cache = _load_cache(root) if use_cache else {}
    known: dict = cache.get("files", {}) if isinstance(cache.get("files"), dict) else {}
    taken = float(cache.get("taken", 0) or 0)
    started = time.time()
    entries: list[Entry] = []
    record: dict[str, list] = {}
    base = str(root) + os.sep
    for rel in list_files(root, exclude):
        path = base + rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # tracked by git but deleted from the disk: not part of the tree
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            entries.append(Entry(rel, "l", hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        kind = "x" if st.st_mode & 0o111 else "f"
        sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        old = known.get(rel)
        racy = st.st_mtime_ns / 1e9 >= taken - RACY_SECONDS
        if isinstance(old, list) and len(old) == 5 and old[:4] == sig and not racy:
            digest = str(old[4])
        else:
            digest = _hash_file(path)
        record[rel] = [*sig, digest]
        entries.append(Entry(rel, kind, digest))
    tree = tree_hash(entries)
    if use_cache and (record != known or tree != cache.get("tree")):
        from ..runtime.fsutil import atomic_write

        try:
            atomic_write(_cache_path(root), json.dumps({"format": CACHE_FORMAT, "root": str(root), "taken": started,
                                                        "tree": tree, "files": record}, sort_keys=True))  # fmt: skip
        except OSError:
            pass  # a read-only cache costs speed, not correctness
    return tree, entries


def tree_hash(entries: list[Entry]) -> str:
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.path):
        h.update(f"{e.path}\0{e.kind}\0{e.sha256}\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


def copy_tree(root: Path, entries: list[Entry], dest: Path) -> None:
    """Copy exactly `entries` of root into dest (symlinks as symlinks), checking that
    each file still has the content that was hashed."""
    import shutil

    root = Path(os.path.realpath(root))
    for e in entries:
        src, out = root / e.path, dest / e.path
        out.parent.mkdir(parents=True, exist_ok=True)
        if e.kind == "l":
            os.symlink(os.readlink(src), out)
            continue
        shutil.copyfile(src, out)
        if e.kind == "x":
            os.chmod(out, 0o755)
        if _hash_file(out) != e.sha256:
            raise TreeError(f"{src} changed while mlenv was reading it; run the command again")
