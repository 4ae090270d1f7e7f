"""`mlenv install` and `mlenv verify` (mlenv.api.install)."""

from __future__ import annotations

import sys

import click

from ...api import install as api
from ..options import ca_bundle_option, dir_option, json_option, lock_option, platform_option, quiet_option, spec_option
from ..render import ProgressLine, emit_json, warn


@click.command()
@spec_option()
@lock_option()
@dir_option("--prefix", required=True, help="Directory to install the environment into (created if missing).")
@platform_option("Platform of the lock to install (default: this host's).")
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="Base interpreter for the venv when the lock has no conda Python (default: [image] python, else python3).",
)
@dir_option(
    "--pypi-prefix",
    help="Install PyPI packages under DIR (added to the env by a .pth file) instead of into the env itself.",
)
@ca_bundle_option("every download")
@click.option("--no-cache", is_flag=True, help="Do not keep downloaded artifacts in mlenv's cache.")
@json_option("Print a machine-readable summary on stdout.")
@quiet_option()
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
@spec_option()
@lock_option("; with --image and no local lock, the image's own")
@dir_option("--prefix", help="The installed prefix to check.")
@click.option("--image", "image", metavar="REF", help="Check a Docker image built by mlenv instead of a prefix.")
@platform_option("Platform of the lock to compare with (default: this host's).")
@dir_option("--pypi-prefix", help="Where PyPI packages were put, if apart.")
@json_option("Print the differences as JSON.")
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
