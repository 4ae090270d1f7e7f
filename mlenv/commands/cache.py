"""`mlenv cache info|prune|clean`: mlenv's host caches (mlenv.cache)."""

from __future__ import annotations

import click

from .common import emit_json, human_size

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


@click.group()
def cache():
    """mlenv's host caches: downloaded artifacts, build tools, build logs, uv's and
    rattler's caches (in the user cache directory)."""


@cache.command()
@json_option
def info(as_json):
    """Where the caches are, and how big."""
    from ..cache import AREAS, cache_root, scan

    areas = scan()
    if as_json:
        emit_json({"root": str(cache_root()), "areas": [
            {"name": a.name, "path": str(a.path), "files": a.files, "size": a.size} for a in areas]})
        return
    click.echo(f"mlenv cache: {cache_root()}")
    for a in areas:
        click.echo(f"  {a.name:<13} {human_size(a.size):>9}  {a.files:>6} files  {AREAS[a.name]}")
    click.echo(f"  {'total':<13} {human_size(sum(a.size for a in areas)):>9}")


@cache.command()
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=30, show_default=True, metavar="DAYS",
              help="Remove entries not used for DAYS days.")
@click.option("--yes", is_flag=True, help="Delete (default: dry run, say what would go).")
@json_option
def prune(days, yes, as_json):
    """Remove cache entries not used for a while (artifacts, build tools, hit records,
    logs; uv prunes its own). Everything removed is fetched or rebuilt when needed."""
    from ..cache import prune as do_prune
    from ..cache import scan

    areas = scan(older_than_days=days)
    stale = {a.name: {"files": len(a.stale), "size": a.stale_size} for a in areas if a.stale}
    removed = do_prune(areas) if yes else (0, 0)
    if as_json:
        emit_json({"older_than_days": days, "stale": stale, "removed": {"files": removed[0], "size": removed[1]},
                   "dry_run": not yes})
        return
    if not stale:
        click.echo(f"nothing unused for {days:g} days")
    for name, s in stale.items():
        click.echo(f"  {name:<13} {s['files']:>6} files  {human_size(s['size']):>9}  unused for {days:g}+ days")
    if yes:
        click.echo(f"removed {removed[0]} files ({human_size(removed[1])})")
    elif stale:
        click.echo("dry run: pass --yes to remove them")


@cache.command()
@click.option("--yes", is_flag=True, help="Delete (default: dry run).")
@json_option
def clean(yes, as_json):
    """Remove all of mlenv's caches."""
    from ..cache import cache_root, scan
    from ..cache import clean as do_clean

    total = sum(a.size for a in scan())
    if yes:
        do_clean()
    removed = total if yes else 0
    if as_json:
        emit_json({"root": str(cache_root()), "size": total, "removed": removed, "dry_run": not yes})
    elif yes:
        click.echo(f"removed {cache_root()} ({human_size(removed)})")
    else:
        click.echo(f"would remove {cache_root()} ({human_size(total)}); pass --yes")
