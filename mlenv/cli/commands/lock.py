"""`mlenv lock` and `mlenv hash` (mlenv.api.lock)."""

from __future__ import annotations

import sys

import click

from ...api import lock as api
from ..options import json_option, lock_option, quiet_option, spec_option
from ..render import ProgressLine, emit_json, short_digest, warn


@click.command()
@spec_option()
@click.option("--check", is_flag=True, help="Exit 1 when mlenv.lock is stale; write nothing (for CI).")
@click.option("--upgrade", "-U", is_flag=True, help="Re-solve everything to the newest allowed versions.")
@click.option(
    "--upgrade-package",
    "-P",
    "upgrade_packages",
    multiple=True,
    metavar="NAME",
    help="Allow NAME to move to its newest allowed version (repeatable).",
)
@click.option(
    "--platform",
    "-p",
    "platforms",
    multiple=True,
    metavar="PLATFORM",
    help="Re-solve only this platform (repeatable); the others are kept.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Never touch the network (uv cache, file:// channels only; with --check: git tags are not read).",
)
@click.option(
    "--resolver", type=click.Choice(["uv", "pip-tools"]), default="uv", show_default=True, help="PyPI resolver."
)
@json_option("Print a machine-readable summary on stdout.")
@quiet_option()
def lock(spec_file, check, upgrade, upgrade_packages, platforms, offline, resolver, as_json, quiet):  # fmt: skip
    """Solve mlenv.toml into mlenv.lock.

    A lock whose spec hash matches is left alone (no solve, no write). A lock
    that still satisfies a changed spec is updated without solving. Otherwise
    conda packages are solved with rattler and PyPI packages with uv, given the
    conda result. The write is atomic: on any failure the old lock stays intact.
    """
    if check:
        res = api.check(spec_file, offline=offline)
        for note in res.notes:
            warn(note)
        if res.ok:  # ok: a lock exists, so it has a content hash
            short = short_digest(res.content_hash)
            click.echo(f"{res.lock_path.name} satisfies {res.spec_path.name} (content hash {short})", err=True)
            return
        click.echo(f"{res.lock_path}: stale: " + "; ".join(res.reasons), err=True)
        click.echo("  hint: run `mlenv lock`", err=True)
        sys.exit(1)
    with ProgressLine(quiet or as_json) as progress:
        result = api.lock(spec_file, upgrade=upgrade, upgrade_packages=upgrade_packages, platforms=platforms,
                          offline=offline, resolver=resolver, progress=progress, on_warning=warn)  # fmt: skip
    if as_json:
        emit_json(result.to_json())
    elif result.action == "fresh":
        if not quiet:
            click.echo(f"{result.path.name} is up to date (content hash {result.short_hash})", err=True)
    elif not quiet:
        click.echo("\n".join(result.lines()))


@click.command("hash")
@spec_option()
@lock_option()
@click.option("--short", is_flag=True, help="Print only the 12-digit short hash.")
@json_option("Print a JSON object.")
def hash_(spec_file, lock_file, short, as_json):
    """Print the content hash of mlenv.lock (verified against its content)."""
    lk = api.content_hash(lock_file, spec=spec_file)
    if as_json:
        emit_json({"content_hash": lk.content_hash, "short_hash": lk.short_hash, "spec_hash": lk.spec_hash})
    elif short:
        click.echo(lk.short_hash)
    else:
        click.echo(lk.content_hash)
        click.echo(f"short: {lk.short_hash}")
