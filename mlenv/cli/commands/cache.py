"""`mlenv cache info|prune|clean`: mlenv's host caches (mlenv.cache)."""

from __future__ import annotations

import click

from ... import cache as api
from ...runtime.text import human_size
from ..options import json_option, yes_option
from ..render import emit_json


@click.group()
def cache():
    """mlenv's host caches: downloaded artifacts, build tools, build logs, uv's and
    rattler's caches (in the user cache directory)."""


@cache.command()
@json_option()
def info(as_json):
    """Where the caches are, and how big."""
    areas = api.scan()
    if as_json:
        emit_json({"root": str(api.cache_root()), "areas": [
            {"name": a.name, "path": str(a.path), "files": a.files, "size": a.size} for a in areas]})  # fmt: skip
        return
    click.echo(f"mlenv cache: {api.cache_root()}")
    for a in areas:
        click.echo(f"  {a.name:<13} {human_size(a.size):>9}  {a.files:>6} files  {api.AREAS[a.name]}")
    click.echo(f"  {'total':<13} {human_size(sum(a.size for a in areas)):>9}")


@cache.command()
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    metavar="DAYS",
    help="Remove entries not used for DAYS days.",
)
@yes_option()
@json_option()
def prune(days, yes, as_json):  # fmt: skip
    """Remove cache entries not used for a while (artifacts, build tools, hit records,
    logs; uv prunes its own). Everything removed is fetched or rebuilt when needed."""
    res = api.prune_unused(days, yes=yes)
    if as_json:
        emit_json(res.to_json())
        return
    if not res.stale:
        click.echo(f"nothing unused for {days:g} days")
    for name, s in res.stale.items():
        click.echo(f"  {name:<13} {s['files']:>6} files  {human_size(s['size']):>9}  unused for {days:g}+ days")
    if yes:
        click.echo(f"removed {res.removed_files} files ({human_size(res.removed_size)})")
    elif res.stale:
        click.echo("dry run: pass --yes to remove them")


@cache.command()
@yes_option()
@json_option()
def clean(yes, as_json):
    """Remove all of mlenv's caches."""
    root, total, removed = api.clean_all(yes=yes)
    if as_json:
        emit_json({"root": str(root), "size": total, "removed": removed, "dry_run": not yes})
    elif yes:
        click.echo(f"removed {root} ({human_size(removed)})")
    else:
        click.echo(f"would remove {root} ({human_size(total)}); pass --yes")
