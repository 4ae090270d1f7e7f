"""`mlenv lock` and `mlenv hash`."""

from __future__ import annotations

import sys

import click

from .common import ProgressLine, emit_json, spec_option, spec_path, warn


def _summary(spec, result) -> dict:
    lock = result.lock
    return {
        "name": spec.name,
        "lock": str(spec.lock_path),
        "action": result.action,
        "content_hash": lock.content_hash,
        "short_hash": lock.short_hash,
        "spec_hash": lock.spec_hash,
        "image": lock.image.get("reference"),
        "platforms": {
            plat: {
                "python": info.get("python"),
                "conda": len(lock.for_platform(plat, "conda")),
                "pypi": len(lock.for_platform(plat, "pypi")),
                **({"apt": n} if (n := len(lock.for_platform(plat, "apt"))) else {}),
            }
            for plat, info in sorted(lock.platforms.items())
        },
        "warnings": result.warnings,
    }


@click.command()
@spec_option
@click.option("--check", is_flag=True, help="Exit 1 when mlenv.lock is stale; write nothing (for CI).")
@click.option("--upgrade", "-U", is_flag=True, help="Re-solve everything to the newest allowed versions.")
@click.option("--upgrade-package", "-P", "upgrade_packages", multiple=True, metavar="NAME",
              help="Allow NAME to move to its newest allowed version (repeatable).")
@click.option("--platform", "-p", "platforms", multiple=True, metavar="PLATFORM",
              help="Re-solve only this platform (repeatable); the others are kept.")
@click.option("--offline", is_flag=True, help="Never touch the network (uv cache, file:// channels only).")
@click.option("--resolver", type=click.Choice(["uv", "pip-tools"]), default="uv", show_default=True,
              help="PyPI resolver.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def lock(spec_file, check, upgrade, upgrade_packages, platforms, offline, resolver, as_json, quiet):
    """Solve mlenv.toml into mlenv.lock.

    A lock whose spec hash matches is left alone (no solve, no write). A lock
    that still satisfies a changed spec is updated without solving. Otherwise
    conda packages are solved with rattler and PyPI packages with uv, given the
    conda result. The write is atomic: on any failure the old lock stays intact.
    """
    from ..lockfile import read_lock
    from ..spec import load_spec

    from ..errors import LockError

    spec = load_spec(spec_path(spec_file))
    try:
        existing = read_lock(spec.lock_path) if spec.lock_path.exists() else None
    except LockError as exc:
        if check:
            raise LockError(str(exc.message), hint="run `mlenv lock` to regenerate it", exit_code=1) from None
        # Regenerating is what `mlenv lock` is for: a corrupt or hand-edited lock is
        # replaced by a fresh solve (never used as preferences), and the user is told.
        warn(f"{exc.message}; solving from scratch and replacing it")
        existing = None

    # The no-op path: only tomllib, hashlib and json have been imported so far.
    from ..apt import legacy_unpinned, pins_current

    fresh = existing is not None and existing.spec_hash == spec.spec_hash()
    if fresh and not (upgrade or upgrade_packages or platforms) and (pins_current(existing) or legacy_unpinned(existing)):
        if as_json:
            from ..locking import LockResult, Status

            emit_json(_summary(spec, LockResult(existing, "fresh", Status("fresh"))))
        elif not quiet:
            click.echo(f"{spec.lock_path.name} is up to date (content hash {existing.short_hash})", err=True)
        return

    from ..locking import lock_spec, status

    if check:
        st = status(spec, existing)
        if st.check_ok:
            click.echo(f"{spec.lock_path.name} satisfies {spec.path.name} (content hash {existing.short_hash})", err=True)
            return
        reasons = st.reasons or (["variables, image or python changed"] if st.env_changed else [])
        click.echo(f"{spec.lock_path}: stale: " + "; ".join(reasons), err=True)
        click.echo("  hint: run `mlenv lock`", err=True)
        sys.exit(1)

    with ProgressLine(quiet or as_json) as progress:
        result = lock_spec(spec, platforms=tuple(platforms), upgrade=upgrade, upgrade_packages=tuple(upgrade_packages),
                           offline=offline, resolver=resolver, progress=progress, existing=existing)
    for w in result.warnings:
        warn(w)
    new = result.lock
    changed = existing is None or new.dumps() != existing.dumps()
    if changed:
        new.write(spec.lock_path)
    if as_json:
        emit_json(_summary(spec, result))
        return
    if quiet:
        return
    counts = ", ".join(
        f"{plat}: {len(new.for_platform(plat, 'conda'))} conda + {len(new.for_platform(plat, 'pypi'))} pypi"
        + (f" + {n} apt" if (n := len(new.for_platform(plat, "apt"))) else "")
        for plat in sorted(new.platforms)
    )
    verb = {"solved": "Locked", "rewritten": "Updated", "fresh": "Unchanged"}[result.action]
    if not changed:
        verb = "Unchanged"
    click.echo(f"{verb} {spec.name} -> {spec.lock_path.name} ({counts})")
    if existing is not None and existing.content_hash != new.content_hash:
        click.echo(f"  content hash {existing.short_hash} -> {new.short_hash}")
    click.echo(f"  content hash: {new.content_hash}")
    click.echo(f"  short hash:   {new.short_hash}")


@click.command("hash")
@spec_option
@click.option("--lock", "lock_file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="A lock file (default: the one next to the spec, or ./mlenv.lock).")
@click.option("--short", is_flag=True, help="Print only the 12-digit short hash.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def hash_(spec_file, lock_file, short, as_json):
    """Print the content hash of mlenv.lock (verified against its content)."""
    from pathlib import Path

    from ..lockfile import read_lock

    if lock_file:
        path = Path(lock_file)
    elif spec_file:
        path = Path(spec_file).with_name("mlenv.lock")
    else:
        path = Path("mlenv.lock")
    lk = read_lock(path)
    if as_json:
        emit_json({"content_hash": lk.content_hash, "short_hash": lk.short_hash, "spec_hash": lk.spec_hash})
    elif short:
        click.echo(lk.short_hash)
    else:
        click.echo(lk.content_hash)
        click.echo(f"short: {lk.short_hash}")
