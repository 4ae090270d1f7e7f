"""Helpers shared by the command modules: locating the spec, output, JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

spec_option = click.option(
    "--file", "-f", "spec_file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
    help="The spec file (default: ./mlenv.toml).",
)


def spec_path(spec_file: str | None) -> Path:
    from ..spec import find_spec

    return find_spec(Path(spec_file) if spec_file else None)


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


class ProgressLine:
    """A rich spinner on a terminal, plain lines on stderr otherwise."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.status = None

    def __enter__(self):
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status("working…")
            self.status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        if self.status is not None:
            self.status.update(message)
        else:
            click.echo(f"  {message}", err=True)

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.__exit__(*exc)
        return False


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as docker prints them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
