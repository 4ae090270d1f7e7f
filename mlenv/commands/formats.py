"""`mlenv export --format F [--platform P] [-o FILE]`."""

from __future__ import annotations

import click

from .common import spec_option, spec_path, warn

FORMAT_NAMES = ("requirements", "environment-yml", "conda-explicit", "conda-lock", "pylock", "azureml", "dockerfile")


def load_current(spec_file):
    """(spec, lock) with the lock verified and current for the spec."""
    from ..lockfile import read_lock
    from ..spec import load_spec

    spec = load_spec(spec_path(spec_file))
    lock = read_lock(spec.lock_path)
    from ..locking import require_current

    require_current(spec, lock, path=spec.lock_path, doing="export an old lock")
    return spec, lock


@click.command()
@spec_option
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), required=True, help="Target format.")
@click.option("--platform", "-p", default=None, metavar="PLATFORM",
              help="Platform to export (per-platform formats; default: the only one, else linux-64).")
@click.option("--output", "-o", default="-", show_default=True, metavar="FILE",
              help="Write to FILE (atomically); '-' prints to stdout.")
def export(spec_file, fmt, platform, output):
    """Export mlenv.lock to another tool's format.

    requirements (pinned, with hashes), environment-yml (pinned), conda-explicit
    (@EXPLICIT with URLs and md5), conda-lock (conda-lock.yml v1), pylock (PEP 751),
    azureml (Azure ML v2 environment YAML), dockerfile (standalone). What a format
    cannot hold is reported on stderr. Formats: docs/formats.md.
    """
    from ..formats.exporters import export as run

    spec, lock = load_current(spec_file)
    result = run(fmt, spec, lock, platform)
    for note in result.notes:
        warn(note)
    if output == "-":
        click.echo(result.text, nl=False)
        return
    from ..fsutil import atomic_write

    atomic_write(output, result.text)
    click.echo(f"Wrote {output} ({fmt})", err=True)
