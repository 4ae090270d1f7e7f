"""`mlenv export --format F [--platform P] [-o FILE]` (mlenv.api.export)."""

from __future__ import annotations

import click

from ...api import export as api
from ..options import platform_option, spec_option
from ..render import warn

FORMAT_NAMES = ("requirements", "environment-yml", "conda-explicit", "conda-lock", "pylock", "azureml", "dockerfile")


@click.command()
@spec_option()
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), required=True, help="Target format.")
@platform_option("Platform to export (per-platform formats; default: the only one, else linux-64).", "-p", default=None)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    metavar="FILE",
    help="Write to FILE (atomically); '-' prints to stdout.",
)
def export(spec_file, fmt, platform, output):  # fmt: skip
    """Export mlenv.lock to another tool's format.

    requirements (pinned, with hashes), environment-yml (pinned), conda-explicit
    (@EXPLICIT with URLs and md5), conda-lock (conda-lock.yml v1), pylock (PEP 751),
    azureml (Azure ML v2 environment YAML), dockerfile (standalone). What a format
    cannot hold is reported on stderr. Formats: docs/formats.md.
    """
    result = api.export(fmt, spec=spec_file, platform=platform, output=output)
    for n in result.notes:
        warn(n)
    if output == "-":
        click.echo(result.text, nl=False)
    else:
        click.echo(f"Wrote {output} ({fmt})", err=True)
