"""lock / check / hash: mlenv.toml -> mlenv.lock (mlenv.locking does the solving).

Kept light at import: the no-op lock (spec hash unchanged) reads two files with
tomllib and hashes; nothing of the solvers is imported on that path.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LockError
from ..lockfile import Lock, read_lock
from ..spec import Spec, load_spec
from .options import spec_file
from .progress import Progress
from .results import CheckResult, LockOutcome


def read_existing(spec: Spec, *, on_corrupt=None) -> Lock | None:
    """The spec's mlenv.lock, None when absent. A corrupt or tampered lock is reported
    to on_corrupt (it is then regenerated, never used as preferences); without
    on_corrupt it is an error."""
    if not spec.lock_path.exists():
        return None
    try:
        return read_lock(spec.lock_path)
    except LockError as exc:
        if on_corrupt is None:
            raise
        on_corrupt(f"{exc.message}; solving from scratch and replacing it")
        return None


def lock(
    spec: str | os.PathLike[str] | Spec | None = None,
    *,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] | list[str] = (),
    platforms: tuple[str, ...] | list[str] = (),
    offline: bool = False,
    resolver: str = "uv",
    progress: Progress | None = None,
    on_warning=None,
) -> LockOutcome:
    """Solve mlenv.toml into mlenv.lock.

    A lock whose spec hash matches is left alone (no solve, no write). A lock that
    still satisfies a changed spec is updated without solving. Otherwise conda
    packages are solved with rattler and PyPI packages with uv, given the conda
    result. The write is atomic: on any failure the old lock stays intact. A corrupt
    lock is replaced (on_warning is told)."""
    s = spec if isinstance(spec, Spec) else load_spec(spec_file(spec))
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        if on_warning:
            on_warning(msg)

    existing = read_existing(s, on_corrupt=warn)
    if existing is not None and existing.spec_hash == s.spec_hash() and not (upgrade or upgrade_packages or platforms):
        from ..apt import legacy_unpinned, pins_current

        if (pins_current(existing) or legacy_unpinned(existing)) and not sources_moved(s, existing, offline, warn):
            return LockOutcome(s, existing, "fresh", warnings=warnings)

    from . import progress as progress_mod
    from ..locking import lock_spec

    say = progress_mod.default(progress, f"locking {s.name}")
    result = lock_spec(s, platforms=tuple(platforms), upgrade=upgrade, upgrade_packages=tuple(upgrade_packages),
                       offline=offline, resolver=resolver, progress=say, existing=existing)  # fmt: skip
    for w in result.warnings:
        warn(w)
    new = result.lock
    changed = existing is None or new.dumps() != existing.dumps()
    if changed:
        new.write(s.lock_path)
    progress_mod.finish(say, f"{result.action}: {new.short_hash}")
    return LockOutcome(s, new, result.action, changed=changed,
                       previous_hash=existing.content_hash if existing else None, warnings=warnings)  # fmt: skip


def sources_moved(spec: Spec, existing: Lock, offline: bool, warn=None) -> bool:
    """A lock whose spec hash matches is still stale when a local package's files changed
    or a git tag was moved (mlenv.solve.moved); a moved branch or an unreachable
    repository is only a warning. Free for locks without local or git packages."""
    from ..solve.moved import check, has_sources

    if not has_sources(existing):
        return False
    drift = check(spec, existing, offline=offline, fresh_refs=False)
    if not drift.reasons:
        for note in drift.notes:
            if warn:
                warn(note)
    return bool(drift.reasons)


def check(spec: str | os.PathLike[str] | Spec | None = None, *, offline: bool = False) -> CheckResult:
    """Is mlenv.lock current for mlenv.toml? Decided without solving (the spec hash,
    then pixi's satisfiability rule; local packages' files and git tags are checked
    too, offline: not git tags); a corrupt lock is a LockError (exit 1)."""
    s = spec if isinstance(spec, Spec) else load_spec(spec_file(spec))
    try:
        existing = read_existing(s)
    except LockError as exc:
        raise LockError(str(exc.message), hint="run `mlenv lock` to regenerate it", exit_code=1) from None
    from ..solve.moved import has_sources

    if existing is not None and existing.spec_hash == s.spec_hash() and not has_sources(existing):
        return CheckResult(True, "fresh", [], s.path, s.lock_path, existing.content_hash)
    from ..locking import status

    st = status(s, existing, offline=offline)
    reasons = st.reasons or (["variables, image or python changed"] if st.env_changed else [])
    return CheckResult(st.check_ok, st.state, [] if st.check_ok else reasons, s.path, s.lock_path,
                       existing.content_hash if existing else None, notes=list(st.notes))  # fmt: skip


def content_hash(lock: str | os.PathLike[str] | None = None, *, spec: str | os.PathLike[str] | None = None) -> Lock:
    """The lock at `lock` (default: next to `spec`, else ./mlenv.lock), its content hash verified."""
    if lock:
        path = Path(lock)
    elif spec:
        path = Path(spec).with_name("mlenv.lock") if Path(spec).suffix == ".toml" else Path(spec) / "mlenv.lock"
    else:
        path = Path("mlenv.lock")
    return read_lock(path)
