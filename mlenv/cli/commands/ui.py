"""`mlenv ui`: serve (or export) a read-only web catalog of a registry (mlenv.ui)."""

from __future__ import annotations

import click

from ...api import ui as api
from ..options import dir_option, registry_option
from ..render import warn


@click.command()
@registry_option()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="Address to listen on. Another than loopback makes the catalog reachable by others.",
)
@click.option(
    "--port",
    default=8040,
    show_default=True,
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Port to listen on (0: any free port; the URL is printed).",
)
@dir_option(
    "--export", "export_dir", default=None, help="Write the catalog as a static site into DIR instead of serving it."
)
@dir_option(
    "--curated",
    "curated_dir",
    exists=True,
    default=None,
    help="A curated catalog directory (catalog.toml + specs + locks) instead of the one mlenv ships.",
)
@click.option(
    "--image-layers",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Read pushed images' layer sizes from their registry: auto = only from the OCI registry being "
    "browsed, always = from any registry a version names, never.",
)
@click.option(
    "--refresh",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Server: reuse the list of versions for this long before asking the registry again.",
)
def ui(registry_url, host, port, export_dir, curated_dir, image_layers, refresh):
    """Serve a read-only web catalog of a registry: environments, versions (spec,
    packages, image, sizes), diffs, the curated catalog and package search.

    Binds to 127.0.0.1 unless --host says otherwise; answers GET and HEAD only.
    With --export DIR, writes the same catalog as static files instead (docs/ui.md).
    """

    def ready(url: str, label: str) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            warn(f"listening on {host}: anyone who can reach this address can read the catalog")
        click.echo(f"serving {label} at {url} (read-only; Ctrl-C stops)")

    report = api.ui(registry_url, host=host, port=port, export_dir=export_dir, curated_dir=curated_dir,
                    image_layers=image_layers, refresh=refresh, on_ready=ready)  # fmt: skip
    if report is not None:
        for problem in report.problems:
            warn(problem)
        click.echo(f"exported {report.files} files to {report.directory} (open {report.directory / 'index.html'})")
