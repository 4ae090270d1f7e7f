"""`mlenv curated list` and `mlenv curated show NAME`: the shipped catalog."""

from __future__ import annotations

import click

from ... import curated as api
from ..options import json_option
from ..render import aligned, emit_json


@click.group()
def curated():
    """The curated environment catalog (start from one: mlenv init --curated NAME)."""


@curated.command("list")
@json_option()
def list_(as_json):
    """List the curated environments: name, version, content hash, accelerator, purpose."""
    entries = api.list()
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    rows = [
        [
            e.name,
            str(e.version) if e.released else "-",
            e.short_hash if e.released else "unreleased",
            e.accelerator,
            _clip(e.purpose, 70),
        ]
        for e in entries
    ]
    for line in aligned([["NAME", "VERSION", "HASH", "ACCEL", "PURPOSE"], *rows], free_last=True):
        click.echo(line)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@curated.command()
@click.argument("name")
@click.option("--packages", "show_packages", is_flag=True, help="List every locked package.")
@json_option()
def show(name, show_packages, as_json):
    """Show one curated environment: purpose, version, hash, base image, spec and packages."""
    detail = api.show(name)
    entry, lock, spec_text, packages = detail.entry, detail.lock, detail.spec_text, detail.packages()
    if as_json:
        emit_json(detail.to_json())
        return
    click.echo(f"{entry.name}  version {entry.version if entry.released else '- (not released)'}")
    click.echo(f"  purpose:     {entry.purpose}")
    click.echo(f"  framework:   {entry.framework} {entry.framework_version}".rstrip())
    click.echo(f"  python:      {entry.python}")
    click.echo(f"  accelerator: {entry.accelerator}")
    click.echo(f"  base image:  {entry.base}")
    if lock is not None:
        total = sum(p["size"] or 0 for p in packages)
        click.echo(f"  content hash: {lock.content_hash}")
        click.echo(f"  packages:    {len(packages)} ({total / 1e6:.0f} MB of wheels)")
        if show_packages:
            for p in packages:
                click.echo(f"    {p['name']}=={p['version']}  ({p['manager']}, {p['platform']})")
    else:
        click.echo("  not released: no lock ships for it yet (see docs/curated.md)")
    click.echo("")
    click.echo(spec_text.rstrip())
