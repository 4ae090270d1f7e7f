"""`mlenv build`, `mlenv rebase`, `mlenv images`, `mlenv gc` (mlenv.api.image)."""

from __future__ import annotations

import sys
import time

import click

from ...api import image as api
from ...runtime.text import human_size
from ..options import (
    ca_bundle_option,
    dir_option,
    json_option,
    layout_option,
    platform_option,
    push_option,
    quiet_option,
    registry_option,
    repository_option,
    spec_option,
    yes_option,
)
from ..render import ProgressLine, aligned, emit_json, warn


@click.command()
@spec_option()
@repository_option()
@push_option()
@click.option("--force", is_flag=True, help="Build even if an image with this content hash exists.")
@click.option("--no-cache", "no_cache", is_flag=True, help="Do not use Docker's layer cache.")
@ca_bundle_option("mlenv's host-side downloads", "; never in an image")
@platform_option("Platform of the lock to build.", default="linux-64", show_default=True)
@dir_option("--dockerfile-only", "dockerfile_only", help="Write the Dockerfile and build context to DIR and stop.")
@click.option(
    "--builder",
    metavar="NAME",
    help="auto (default: daemonless where it can build the lock, else buildkit, else classic), "
    "daemonless (mlenv writes the image: bit-reproducible, no daemon needed), buildkit "
    "(multi-stage, through the docker CLI) or classic (docker SDK); else MLENV_BUILDER, else the "
    "builder setting.",
)
@layout_option("Also write", " (daemonless builder)")
@json_option("Print a machine-readable result on stdout.")
@quiet_option()
def build(spec_file, repository, push, force, no_cache, ca_bundle, platform, dockerfile_only, builder, layout, as_json,
          quiet):  # fmt: skip
    """Build (or reuse) the Docker image of mlenv.lock, tagged REPO/NAME:SHORT_HASH.

    An image with the lock's content hash is reused instead of built: a local
    one (found by label, under any name; retagged) or the tag in the registry
    of --repository. Build output is saved to a log file whose path is printed
    on failure.
    """
    with ProgressLine(quiet or as_json, "building…") as display:
        result = api.build(spec_file, repository=repository, push=push, force=force, no_cache=no_cache,
                           ca_bundle=ca_bundle, platform=platform, builder=builder, dockerfile_only=dockerfile_only, layout=layout,
                           progress=display, on_step=display.step, on_line=display.line,
                           on_warning=None if quiet else warn)  # fmt: skip
    if as_json:
        emit_json(result.to_json())
    elif not quiet:
        click.echo(result.message)
        if result.pushed:
            click.echo(f"  pushed {result.image} ({result.pushed[:19]}…)")


@click.command()
@spec_option()
@click.option(
    "--from",
    "from_image",
    required=True,
    metavar="IMAGE",
    help="An image of an earlier lock that differs from mlenv.lock only in its base image.",
)
@repository_option()
@push_option()
@layout_option()
@platform_option("Platform of the lock.", default="linux-64", show_default=True)
@json_option("Print a machine-readable result on stdout.")
@quiet_option()
def rebase(spec_file, from_image, repository, push, layout, platform, as_json, quiet):
    """Make the image of mlenv.lock from IMAGE without building: swap its base layers.

    For a lock that differs from IMAGE's only in the base image (a patched base under
    the same tag, pinned by `mlenv lock --upgrade`). Pushed with --push, written with
    --layout, else loaded into the local Docker Engine. Refused, with the reason, where
    it is not sound (e.g. a venv on the base image's Python): build it instead.
    """
    with ProgressLine(quiet or as_json, "rebasing…") as display:
        result = api.rebase(spec_file, from_image=from_image, repository=repository, push=push, layout=layout,
                            platform=platform, progress=display)  # fmt: skip
    if as_json:
        emit_json(result.to_json())
    elif not quiet:
        click.echo(result.message)


@click.command()
@json_option("Print a JSON list.")
@click.option("--name", "name", metavar="NAME", help="Only images of this environment.")
def images(as_json, name):
    """List the local images mlenv built (found by their org.mlenv.content-hash label)."""
    rows = api.images(name)
    if as_json:
        emit_json([{k: v for k, v in r.items() if k != "digests"} for r in rows])
        return
    if not rows:
        click.echo("no mlenv images (build one with `mlenv build`)", err=True)
        return
    header = ("NAME", "HASH", "SIZE", "CREATED", "TAGS")
    table = [(r["name"], r["short_hash"], human_size(r["size"]),
              time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])), ", ".join(r["tags"]) or "<untagged>")
             for r in rows]  # fmt: skip
    for line in aligned([header, *table]):
        click.echo(line)


@click.command()
@registry_option()
@yes_option()
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only images of this environment (label org.mlenv.name; repeatable).",
)
@json_option()
def gc(registry_url, yes, names, as_json):
    """Remove local mlenv images that no registered version and no ./mlenv.lock reference.

    Images are found by their label org.mlenv.content-hash; an image is kept when
    any version in the chosen registry (archived ones included) or ./mlenv.lock has
    that content hash. Dry run unless --yes.
    """
    res = api.gc(registry=registry_url, yes=yes, names=names)
    if as_json:
        emit_json(res.to_json())
        return
    if not res.daemon:
        click.echo("no Docker daemon answers: no images to collect", err=True)
        return
    if not res.unreferenced:
        click.echo(f"nothing to collect ({res.kept} mlenv image(s), all referenced)")
        return
    verb = "removed" if yes else "would remove"
    for item in res.unreferenced:
        if yes and item not in res.removed:
            continue
        click.echo(f"{verb} {_image_name(item)}  ({(item['size'] or 0) / 1e6:.0f} MB)")
    for item in res.failed:
        warn(f"could not remove {_image_name(item)}: {item['error']}")
    if not yes:
        click.echo(f"dry run: {len(res.unreferenced)} image(s); pass --yes to delete", err=True)
    if res.failed:
        sys.exit(1)


def _image_name(item: dict) -> str:
    """An image gc lists: its tags, else the start of its id."""
    return ", ".join(item["tags"]) or item["id"][:19]
