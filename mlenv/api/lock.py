"""lock / check / hash: mlenv.toml -> mlenv.lock (mlenv.locking does the solving).

Kept light at import: the no-op lock (spec hash unchanged) reads two files with
tomllib and hashes; nothing of the solvers is imported on that path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import LockError
from ..lockfile import Lock, read_lock
from ..spec import Spec, load_spec
from .lockresults import CheckResult, LockOutcome
from .options import spec_file

if TYPE_CHECKING:
    from .progress import Progress

HINT_UNDECLARED = (
    "an index or channel served a file from a host the spec does not declare; declare that host as an "
    'index (docs/security.md, "File names and artifact sources")'
)


def check_existing(existing: Lock, spec: Spec) -> None:
    """The sources rule (mlenv.sources) for the lock beside a spec. A lock whose spec hash
    is the spec's claims to be its solve, so it may declare no source the spec does not
    (else it was tampered with); a stale lock (the spec was edited since) is checked
    alone, and reported stale by the freshness rules."""
    from ..sources import check_sources

    check_sources(existing, spec if existing.spec_hash == spec.spec_hash() else None, where=str(spec.lock_path))


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
    if existing is not None:
        try:
            check_existing(existing, s)
        except LockError as exc:  # a lock with foreign sources is never kept, nor used as preferences
            warn(f"{exc.message}; solving from scratch and replacing it")
            existing = None
    if existing is not None and existing.spec_hash == s.spec_hash() and not (upgrade or upgrade_packages or platforms):
        from ..apt import legacy_unpinned, pins_current

        if (pins_current(existing) or legacy_unpinned(existing)) and not sources_moved(s, existing, offline, warn):
            return LockOutcome(s, existing, "fresh", warnings=warnings)

    from ..locking import lock_spec
    from . import progress as progress_mod

    say = progress_mod.default(progress, f"locking {s.name}")
    from .options import index_urls

    index_urls(s)  # the expanded credentials are remembered: the scrubber masks them in every message
    result = lock_spec(s, platforms=tuple(platforms), upgrade=upgrade, upgrade_packages=tuple(upgrade_packages),
                       offline=offline, resolver=resolver, progress=say, existing=existing)  # fmt: skip
    for w in result.warnings:
        warn(w)
    new = result.lock
    from ..errors import SolveError
    from ..sources import check_sources

    try:  # what the solvers returned obeys the same rule as what install will fetch
        check_sources(new, s, where="the solved lock")
    except LockError as exc:
        raise SolveError(exc.message + " (nothing was written)", hint=HINT_UNDECLARED) from None
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
    if not existing.has_moving_sources():
        return False
    from ..solve.moved import check

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
        if existing is not None:
            check_existing(existing, s)
    except LockError as exc:
        raise LockError(str(exc.message), hint=exc.hint or "run `mlenv lock` to regenerate it", exit_code=1) from None
    if existing is not None and existing.spec_hash == s.spec_hash() and not existing.has_moving_sources():
        return CheckResult(True, "fresh", [], s.path, s.lock_path, existing.content_hash)
    from ..locking import status

    st = status(s, existing, offline=offline)
    reasons = st.reasons or (["variables, image or python changed"] if st.env_changed else [])
    return CheckResult(st.check_ok, st.state, [] if st.check_ok else reasons, s.path, s.lock_path,
                       existing.content_hash if existing else None, notes=list(st.notes))  # fmt: skip


def content_hash(lock: str | os.PathLike[str] | None = None, *, spec: str | os.PathLike[str] | None = None) -> Lock:
    """The lock at `lock` (default: next to `spec`, else ./mlenv.lock), its content hash verified."""
    from .install import lock_path

    return read_lock(lock_path(spec, lock))
