"""`mlenv install` and `mlenv verify` (mlenv.api.install)."""

from __future__ import annotations

import sys

import click

from ...api import install as api
from ..render import ProgressLine, emit_json, spec_option, warn


@click.command()
@spec_option
@click.option(
    "--lock",
    "lock_file",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="The lock file (default: next to the spec, or ./mlenv.lock).",
)
@click.option(
    "--prefix",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Directory to install the environment into (created if missing).",
)
@click.option(
    "--platform", "platform", metavar="PLATFORM", help="Platform of the lock to install (default: this host's)."
)
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="Base interpreter for the venv when the lock has no conda Python (default: [image] python, else python3).",
)
@click.option(
    "--pypi-prefix",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Install PyPI packages under DIR (added to the env by a .pth file) instead of into the env itself.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="CA bundle for every download (else MLENV_CA_BUNDLE, else the ca-bundle setting).",
)
@click.option("--no-cache", is_flag=True, help="Do not keep downloaded artifacts in mlenv's cache.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--quiet", "-q", is_flag=True)
def install(spec_file, lock_file, prefix, platform, python, pypi_prefix, ca_bundle, no_cache, as_json, quiet):  # fmt: skip
    """Materialize mlenv.lock into --prefix: conda packages with py-rattler,
    then PyPI packages with uv (--require-hashes --no-deps). Every artifact is
    sha256-checked against the lock; nothing is resolved afresh."""
    with ProgressLine(quiet or as_json) as progress:
        res = api.install(prefix, spec=spec_file, lock=lock_file, platform=platform, python=python,
                          pypi_prefix=pypi_prefix, ca_bundle=ca_bundle, no_cache=no_cache, progress=progress,
                          on_warning=warn)  # fmt: skip
    if as_json:
        emit_json(res.to_json())
    elif not quiet:
        r = res.result
        click.echo(f"Installed {res.lock.short_hash} ({r.platform}: {r.conda} conda + {r.pypi} PyPI) into {r.prefix}")
        if r.removed:
            click.echo(f"  removed packages not in the lock: {', '.join(r.removed)}")


@click.command()
@spec_option
@click.option(
    "--lock",
    "lock_file",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="The lock file (default: next to the spec, or ./mlenv.lock; with --image and no local lock, the image's own).",
)
@click.option("--prefix", type=click.Path(file_okay=False), metavar="DIR", help="The installed prefix to check.")
@click.option("--image", "image", metavar="REF", help="Check a Docker image built by mlenv instead of a prefix.")
@click.option(
    "--platform", "platform", metavar="PLATFORM", help="Platform of the lock to compare with (default: this host's)."
)
@click.option(
    "--pypi-prefix", type=click.Path(file_okay=False), metavar="DIR", help="Where PyPI packages were put, if apart."
)
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def verify(spec_file, lock_file, prefix, image, platform, pypi_prefix, as_json):  # fmt: skip
    """Report every difference between a prefix (or an image) and mlenv.lock:
    missing, extra or wrong-version packages and missing files. Exit 1 on any."""
    res = api.verify(prefix=prefix, image=image, spec=spec_file, lock=lock_file, platform=platform,
                     pypi_prefix=pypi_prefix)  # fmt: skip
    if as_json:
        emit_json(res.to_json())
    else:
        for d in res.differences:
            click.echo(str(d))
        if res.differences:
            click.echo(
                f"{res.target}: {len(res.differences)} difference(s) from the lock ({res.lock.short_hash})", err=True
            )
        else:
            click.echo(f"{res.target} matches mlenv.lock {res.lock.short_hash}")
    if res.differences:
        sys.exit(1)
