"""install / verify: a lock materialized into a prefix on this host, and compared
with a prefix or an image."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MlenvError
from ..lockfile import read_lock
from .progress import Progress
from .results import Installed, Verified


def lock_path(spec: str | os.PathLike[str] | None, lock: str | os.PathLike[str] | None) -> Path:
    """The lock file: `lock`, else next to `spec`, else ./mlenv.lock. An interrupted
    write of its directory is completed first (mlenv.runtime.journal)."""
    from ..runtime.journal import recover

    if lock:
        path = Path(lock)
    elif spec:
        p = Path(spec)
        path = p.with_name("mlenv.lock") if p.suffix == ".toml" else p / "mlenv.lock"
    else:
        path = Path("mlenv.lock")
    recover(path.parent)
    return path


def spec_beside(path: Path):
    """The valid mlenv.toml next to a lock, or None (a lock may travel alone)."""
    from ..spec import load_spec

    spec_path = path.with_name("mlenv.toml")
    if not spec_path.is_file():
        return None
    try:
        return load_spec(spec_path)
    except MlenvError:
        return None


def spec_index_urls(path: Path, on_warning=None) -> tuple[str, ...]:
    """Credentialed index URLs from the spec next to the lock (its ${VAR} URLs expanded
    from the environment) and MLENV_INDEX_URL; the lock's URLs never carry credentials."""
    from ..spec import expand_env, load_spec
    from .options import index_urls, source_urls

    spec_path = path.with_name("mlenv.toml")
    if not spec_path.is_file():
        return index_urls(None)
    try:
        spec = load_spec(spec_path)
    except MlenvError:
        return index_urls(None)
    for url in source_urls(spec):
        try:
            expand_env(url)
        except MlenvError as exc:
            if on_warning:
                on_warning(str(exc))
    return index_urls(spec)


def install(
    prefix: str | os.PathLike[str],
    *,
    spec: str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    platform: str | None = None,
    python: str | None = None,
    pypi_prefix: str | os.PathLike[str] | None = None,
    ca_bundle: str | None = None,
    no_cache: bool = False,
    progress: Progress | None = None,
    on_warning=None,
) -> Installed:
    """Materialize mlenv.lock into prefix: conda packages with py-rattler, then PyPI
    packages with uv (--require-hashes --no-deps). Every artifact is sha256-checked
    against the lock; nothing is resolved afresh."""
    from .. import installing as installer
    from ..sources import check_sources
    from . import options
    from . import progress as progress_mod

    path = lock_path(spec, lock)
    lk = read_lock(path)
    beside = spec_beside(path)
    check_sources(lk, beside, where=str(path))  # before anything is downloaded or written
    ca = options.ca_bundle(ca_bundle)
    say = progress_mod.default(progress, f"installing {lk.short_hash}")
    res = installer.install(lk, prefix, platform=platform, python=python, pypi_prefix=pypi_prefix, no_cache=no_cache,
                            index_urls=spec_index_urls(path, on_warning), ca_bundle=ca, progress=say,
                            project=path.absolute().parent, spec=beside)  # fmt: skip
    progress_mod.finish(say, f"installed into {res.prefix}")
    return Installed(res, lk)


def verify(
    *,
    prefix: str | os.PathLike[str] | None = None,
    image: str | None = None,
    spec: str | os.PathLike[str] | None = None,
    lock: str | os.PathLike[str] | None = None,
    platform: str | None = None,
    pypi_prefix: str | os.PathLike[str] | None = None,
) -> Verified:
    """Every difference between a prefix (or an image) and mlenv.lock: missing, extra
    or wrong-version packages and missing files. With an image and no local lock,
    the image's own /opt/mlenv/mlenv.lock."""
    if bool(prefix) == bool(image):
        raise MlenvError("verify needs exactly one of --prefix DIR or --image REF")
    path = lock_path(spec, lock)
    if image:
        from ..image.verify import verify_image

        lk, diffs = verify_image(image, path if (lock or spec or path.exists()) else None)
        return Verified(image, lk, diffs)
    from .. import installing as installer

    lk = read_lock(path)
    assert prefix is not None
    return Verified(str(prefix), lk, installer.verify(lk, prefix, platform=platform, pypi_prefix=pypi_prefix))
