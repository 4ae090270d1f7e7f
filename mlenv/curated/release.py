"""Release the curated catalog: re-lock every spec and bump a version only when
its locked result changed (Azure ML's curated release rule).

    python -m mlenv.curated.release [--upgrade] [--check] [NAME ...]

--upgrade   re-resolve to the newest allowed versions (a scheduled release);
            without it the shipped pins are kept as preferences, so only a
            changed spec moves anything.
--check     write nothing; exit 1 when a release would change the catalog.

For each entry: the spec is locked (uv against the real indexes); when the new
content hash differs from the catalog's, the lock is written and the version
goes up by one; when only the spec hash differs (a description edit), the lock
is rewritten and the version stays; otherwise nothing is touched.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..runtime.fsutil import atomic_write
from .catalog import CATALOG_DIR, Entry, dumps_catalog, load_catalog


@dataclass
class Change:
    name: str
    action: str  # "unchanged" | "relocked" (same content, new spec hash) | "bumped" | "released" | "failed"
    old_version: int
    new_version: int
    old_hash: str
    new_hash: str
    warnings: list[str]


def relock(entry: Entry, *, upgrade: bool) -> tuple[str, str, list[str]]:
    """(lock text, content hash, warnings) of entry's spec, solved now."""
    from ..lockfile import read_lock
    from ..locking import lock_spec
    from ..spec import load_spec

    with tempfile.TemporaryDirectory(prefix="mlenv-curated-") as tmp:
        spec_path = Path(tmp) / "mlenv.toml"
        shutil.copyfile(entry.spec_path, spec_path)
        existing = read_lock(entry.lock_path) if entry.lock_path.exists() else None
        spec = load_spec(spec_path)
        result = lock_spec(spec, existing=existing, upgrade=upgrade, force_solve=True)
        return result.lock.dumps(), result.lock.content_hash, result.warnings


def check_result(entry: Entry, lock_text: str) -> str | None:
    """What the catalog promises beyond "it solves": a cpu entry ships no CUDA libraries.
    (An unreachable CPU index would otherwise let the resolver fall through to PyPI's
    CUDA builds.)"""
    from ..lockfile import loads_lock

    lock = loads_lock(lock_text, entry.lock_path)
    if entry.accelerator == "cpu":
        cuda = sorted({p.name for p in lock.packages if p.name.startswith("nvidia-")})
        if cuda:
            return (
                f"{entry.name} is a cpu environment but its lock has CUDA packages ({', '.join(cuda[:3])}, ...); "
                "is its CPU index reachable? Not released."
            )
    return None


def failed(entry: Entry, reason: str) -> Change:
    """The change of an entry that is not released: it stays at its version and hash."""
    return Change(entry.name, "failed", entry.version, entry.version, entry.content_hash, entry.content_hash, [reason])


def release(
    directory: Path | None = None, *, upgrade: bool = False, names: tuple[str, ...] = (), check: bool = False
) -> list[Change]:
    directory = Path(directory) if directory else CATALOG_DIR
    entries = load_catalog(directory)
    changes: list[Change] = []
    for entry in entries:
        if names and entry.name not in names:
            continue
        from ..errors import MlenvError

        try:
            text, content_hash, warnings = relock(entry, upgrade=upgrade)
        except MlenvError as exc:  # one broken entry does not stop the others; it is never shipped
            changes.append(failed(entry, str(exc)))
            continue
        problem = check_result(entry, text)
        if problem:
            changes.append(failed(entry, problem))
            continue
        old_version, old_hash = entry.version, entry.content_hash
        current = entry.lock_path.read_text(encoding="utf-8") if entry.lock_path.exists() else None
        if content_hash != old_hash or not entry.released:
            entry.version = old_version + 1
            entry.content_hash = content_hash
            action = "released" if old_version == 0 else "bumped"
        elif text != current:
            action = "relocked"
        else:
            action = "unchanged"
        if action != "unchanged" and not check:
            atomic_write(entry.lock_path, text)
        changes.append(Change(entry.name, action, old_version, entry.version, old_hash, content_hash, warnings))
    if not check and any(c.action not in ("unchanged", "failed") for c in changes):
        atomic_write(directory / "catalog.toml", dumps_catalog(entries))
    return changes


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlenv.curated.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--upgrade", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--dir", default=None, help="catalog directory (default: the package's)")
    args = parser.parse_args(argv)
    from ..errors import MlenvError

    try:
        changes = release(
            Path(args.dir) if args.dir else None, upgrade=args.upgrade, names=tuple(args.names), check=args.check
        )
    except MlenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for c in changes:
        short = c.new_hash.split(":")[-1][:12]
        print(f"{c.name}: {c.action} (version {c.old_version} -> {c.new_version}, {short})")
        for w in c.warnings:
            print(f"  {'error' if c.action == 'failed' else 'warning'}: {w}", file=sys.stderr)
    if any(c.action == "failed" for c in changes):
        return 2
    if args.check and any(c.action != "unchanged" for c in changes):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
