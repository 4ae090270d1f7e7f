"""export: mlenv.lock in another tool's format (docs/formats.md)."""

from __future__ import annotations

import os

from ..formats.exporters import Exported


def current(spec: str | os.PathLike[str] | None = None):
    """(spec, lock): the lock verified and current for the spec."""
    from ..lockfile import read_lock
    from ..locking import require_current
    from ..spec import load_spec
    from .options import spec_file

    s = load_spec(spec_file(spec))
    lk = read_lock(s.lock_path)
    require_current(s, lk, path=s.lock_path, doing="export an old lock")
    from ..sources import check_sources

    check_sources(lk, s, where=str(s.lock_path))  # an export hands the URLs to another tool
    return s, lk


def export(fmt: str, *, spec: str | os.PathLike[str] | None = None, platform: str | None = None,
           output: str | os.PathLike[str] | None = None) -> Exported:  # fmt: skip
    """The lock as `fmt` (requirements, environment-yml, conda-explicit, conda-lock,
    pylock, azureml, dockerfile); written atomically to `output` when given. What the
    format cannot hold is in `.notes`."""
    from ..formats.exporters import export as run

    s, lk = current(spec)
    result = run(fmt, s, lk, platform)
    if output is not None and str(output) != "-":
        from ..runtime.fsutil import atomic_write

        atomic_write(output, result.text)
    return result
