"""Sources that move under an unchanged spec: local packages and git refs.

The spec hash says whether mlenv.toml changed; it cannot see a local package's
files change, nor a git tag being moved. So a lock whose spec hash matches is
still checked for these (the only work the no-op `mlenv lock` does beyond reading
two files):

- every local package (`source = "path"`, a directory): its tree hash now
  (mlenv.wheelbuild.tree: a listing of its files with their content hashes; files
  whose stat is unchanged keep their cached hash, so nothing is rebuilt and little
  is read) against the lock's `source-tree`. A local archive: its sha256;
- every git package locked from a branch or tag (`requested`, not a commit id): what
  the ref names now (`git ls-remote`, one per repository, in parallel). A tag that
  names another commit than the locked one means history was rewritten under the
  same tag: the lock is stale, and `mlenv lock` moves to the new commit and says so
  (the previous lock's wheel is still what installs from it get). A branch that moved
  is normal: a note only; `mlenv lock --upgrade-package NAME` takes it. A repository
  that cannot be reached is a warning (the lock is kept as it is); `--offline` skips
  the check. `mlenv lock --check` and every solve read the refs; a no-op `mlenv lock`
  trusts refs it read less than REFS_TTL (10 minutes) ago (`<user cache>/mlenv/git-refs/`),
  so it stays fast (a read is a round trip to the git server: 60 ms on 127.0.0.1,
  a few hundred on the internet).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Drift:
    reasons: list[str] = field(default_factory=list)  # the lock is stale because of these
    move: set[str] = field(default_factory=set)  # package names whose git ref moved (re-resolved on the next lock)
    notes: list[str] = field(default_factory=list)  # warnings: moved branches, unreachable repositories


def _git_urls(spec) -> dict[str, str]:
    """repository URL without credentials -> as written (${VAR} userinfo), from the spec."""
    from ..reqforms import quick_git_url, strip_userinfo

    out = {}
    for dep in spec.pypi_dependencies:
        url = quick_git_url(dep) if "git+" in dep else None
        if url:
            out[strip_userinfo(url)] = url
    return out


def local_changes(spec, lock, *, missing_ok: bool = False) -> list[str]:
    """Why the lock's local packages no longer match their sources (empty: unchanged).
    missing_ok: a source that is not on this machine at all does not count (building or
    installing from the lock uses the locked wheel)."""
    from ..wheelbuild import project_dir, project_excludes

    root = project_dir(spec)
    seen: dict[str, str | None] = {}
    for p in lock.packages:
        if p.manager != "pypi" or p.get("source") != "path":
            continue
        rel = str(p.url)
        if rel in seen:
            continue
        target = Path(os.path.realpath(root / rel))
        if target != root and root not in target.parents:
            seen[rel] = f"local package {rel} is outside the project"
        elif not target.exists() and missing_ok:
            seen[rel] = None
        elif p.get("source-tree"):
            if not target.is_dir():
                seen[rel] = f"local package {rel} is gone"
            else:
                from ..wheelbuild.tree import TreeError, scan

                try:
                    tree, _ = scan(target, exclude=project_excludes(spec, target))
                except TreeError as exc:
                    tree = str(exc)
                seen[rel] = None if tree == p.get("source-tree") else f"local package {rel} changed"
        else:
            from ..runtime.fetch import sha256_file

            ok = target.is_file() and sha256_file(target) == p.sha256
            seen[rel] = None if ok else f"local archive {rel} changed"
    return sorted({r for r in seen.values() if r})


REFS_TTL = 600  # seconds a no-op `mlenv lock` trusts the refs it read last (`--check` and solves always read)


def _refs_cache(plain: str) -> Path:
    import hashlib

    from ..runtime.cachedir import default_cache_root

    return default_cache_root() / "git-refs" / (hashlib.sha256(plain.encode()).hexdigest()[:32] + ".json")


class _Cached:
    """Refs read at most REFS_TTL seconds ago (a no-op lock need not ask the server again)."""

    def __init__(self, refs: dict[str, str]):
        self.refs = refs

    def result(self) -> dict[str, str]:
        return self.refs


def _recent_refs(plain: str) -> dict[str, str] | None:
    import json
    import time

    try:
        data = json.loads(_refs_cache(plain).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != plain or not isinstance(data.get("refs"), dict):
        return None
    age = time.time() - float(data.get("time") or 0)
    return {str(k): str(v) for k, v in data["refs"].items()} if 0 <= age < REFS_TTL else None


def _remember_refs(plain: str, refs: dict[str, str]) -> None:
    import json
    import time

    from ..runtime.fsutil import atomic_write

    try:
        atomic_write(_refs_cache(plain), json.dumps({"url": plain, "time": time.time(), "refs": refs}, sort_keys=True))
    except OSError:
        pass


def _start_ref_reads(spec, lock, *, fresh: bool) -> dict:
    """git ls-remote of every repository a locked git package was resolved from by a
    branch or tag, started in the background (or refs read less than REFS_TTL ago,
    unless `fresh`): repository -> (reader, [packages])."""
    from ..spec import expand_env
    from ..wheelbuild.refs import COMMIT as _COMMIT

    written = _git_urls(spec)
    wanted: dict[str, list] = {}
    for p in lock.packages:
        if p.manager != "pypi" or p.get("source") != "git":
            continue
        requested = p.get("requested")
        if not requested or _COMMIT.match(str(requested)):
            continue
        repo = str(p.url)[len("git+") :].split("#", 1)[0].rsplit("@", 1)[0]
        if repo in written:
            wanted.setdefault(written[repo], []).append(p)
    from ..runtime.secrets import strip_credentials

    out: dict = {}
    for url, pkgs in sorted(wanted.items()):
        recent = None if fresh else _recent_refs(strip_credentials(url))
        if recent is not None:
            out[url] = (_Cached(recent), pkgs)
            continue
        try:
            expanded = expand_env(url)
        except Exception as exc:  # an unset ${VAR}: reported, the lock is kept
            out[url] = (exc, pkgs)
            continue
        from ..wheelbuild.git import LsRemote

        out[url] = (LsRemote(expanded), pkgs)
    return out


def _judge(reads: dict, drift: Drift) -> None:
    from ..errors import MlenvError
    from ..runtime.secrets import strip_credentials
    from ..wheelbuild.refs import resolve_ref
    from .names import normalize

    reported: set[tuple] = set()
    for url, (reader, pkgs) in reads.items():
        shown = strip_credentials(url)
        try:
            if isinstance(reader, Exception):
                raise reader
            refs = reader.result()
            if not isinstance(reader, _Cached):
                _remember_refs(shown, refs)
        except MlenvError as exc:
            drift.notes.append(f"could not check the git refs of {shown} ({exc.message}); the lock keeps its commits")
            continue
        for p in pkgs:
            requested, locked = str(p.get("requested")), str(p.get("commit"))
            if (shown, requested, locked) in reported:
                continue
            reported.add((shown, requested, locked))
            states = resolve_ref(refs, requested)
            if not states:
                drift.notes.append(f"{shown} no longer has the ref {requested!r} ({p.name} stays at {locked[:12]})")
            elif all(s.commit != locked for s in states):
                now = states[0]
                if now.kind == "tag":
                    drift.reasons.append(f"tag {requested} of {shown} now names commit {now.commit[:12]}, but the "
                                         f"lock pins {locked[:12]}: history was rewritten under the same tag")  # fmt: skip
                    drift.move.add(normalize(p.name))
                else:
                    drift.notes.append(f"branch {requested} of {shown} has moved on ({locked[:12]} is locked, "
                                       f"{now.commit[:12]} is its head); `mlenv lock --upgrade-package {p.name}` "
                                       "takes it")  # fmt: skip


def check(spec, lock, *, offline: bool = False, fresh_refs: bool = True) -> Drift:
    """Local packages and git refs of a lock (see the module docstring). The ref reads run
    in the background while local trees are hashed. fresh_refs=False (the no-op `mlenv
    lock`): refs read less than REFS_TTL seconds ago are trusted."""
    drift = Drift()
    if not lock.has_moving_sources():
        return drift
    reads = {} if offline else _start_ref_reads(spec, lock, fresh=fresh_refs)
    try:
        drift.reasons += local_changes(spec, lock)
    finally:
        _judge(reads, drift)
    return drift
