"""`mlenv register/list/versions/show/diff/label/archive/unarchive/restore`
(mlenv.api.registry). Kept light at import: the read commands on the local
registry touch only sqlite3, click and json."""

from __future__ import annotations

import click

from ...api import registry as api
from ..options import archived_option, dir_option, json_option, registry_option, spec_option
from ..render import emit_json, short_digest, table, warn, when


@click.command()
@spec_option()
@registry_option()
@click.option("--description", default=None, metavar="TEXT", help="Description of this version.")
@click.option("--no-image", is_flag=True, help="Do not look for a locally built image to record.")
@json_option()
def register(spec_file, registry_url, description, no_image, as_json):
    """Record the current spec and lock as the next version of the environment.

    The lock must be current (`mlenv lock --check` passes). Content already
    registered under this name returns its existing version, so registering is
    idempotent. When a local image built by `mlenv build` carries the lock's
    content hash, its reference and digest are recorded too.
    """
    res = api.register(spec_file, registry=registry_url, description=description, image=not no_image, on_warning=warn)
    if as_json:
        emit_json(res.to_json())
    else:
        click.echo(res.message())


@click.command("list")
@registry_option()
@archived_option("environments")
@json_option()
def list_(registry_url, show_all, as_json):
    """List registered environments (archived ones with --all)."""
    res = api.environments(registry=registry_url, include_archived=show_all)
    if as_json:
        emit_json(res.to_json())
        return
    if not res.environments:
        click.echo(f"no environments registered in {res.registry}", err=True)
        return
    table([[r["name"], str(r["versions"]), str(r["latest"] or "-"), when(r["updated"] or ""),
            "yes" if r["archived"] else ""] for r in res.environments],
          ["NAME", "VERSIONS", "LATEST", "UPDATED", "ARCHIVED"])  # fmt: skip


@click.command()
@click.argument("name")
@registry_option()
@archived_option("versions")
@json_option()
def versions(name, registry_url, show_all, as_json):
    """List the versions of an environment (archived ones with --all)."""
    res = api.versions(name, registry=registry_url, include_archived=show_all)
    if as_json:
        emit_json(res.to_json())
        return
    if not res.versions:
        click.echo(f"{name}: every version is archived (`mlenv versions --all {name}` shows them)", err=True)
        return
    rows = [[str(v.version), v.short_hash, when(v.created), ",".join(v.labels), v.image or "",
             short_digest(v.image_digest), "yes" if v.archived else ""] for v in res.versions]  # fmt: skip
    table(rows, ["VERSION", "HASH", "CREATED", "LABELS", "IMAGE", "DIGEST", "ARCHIVED"])


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_option()
@click.option("--packages", "show_packages", is_flag=True, help="List every package, not only counts.")
@json_option()
def show(ref, registry_url, show_packages, as_json):
    """Show one registered version: spec, packages per platform, variables, image."""
    detail = api.show(ref, registry=registry_url)
    data = detail.to_json()
    if as_json:
        emit_json(data)
        return
    v, lock = detail.version, detail.lock
    lines = [f"{v.ref}  ({v.content_hash})", f"created:     {when(v.created)}"]
    if v.description:
        lines.append(f"description: {v.description}")
    if v.labels:
        lines.append(f"labels:      {', '.join(v.labels)}")
    if v.archived:
        lines.append("archived:    yes")
    lines.append(f"base image:  {data['base_image']}")
    if v.image:
        lines.append(f"image:       {v.image}" + (f"@{v.image_digest}" if v.image_digest else ""))
    if lock.variables:
        lines.append("variables:   " + ", ".join(f"{k}={val}" for k, val in sorted(lock.variables.items())))
    lines.append("packages:")
    for plat, info in data["platforms"].items():
        lines.append(f"  {plat}: python {info['python'] or '-'}, {info['conda']} conda, {info['pypi']} pypi")
        if show_packages:
            lines += [f"    {p['name']} {p['version']} ({p['manager']})" for p in info["packages"]]
        elif info["packages"]:
            names = ", ".join(f"{p['name']}=={p['version']}" for p in info["packages"][:12])
            more = len(info["packages"]) - 12
            lines.append(f"    {names}" + (f", … ({more} more; --packages lists all)" if more > 0 else ""))
    lines.append("spec (mlenv.toml):")
    lines += ["  " + line for line in data["spec"].rstrip("\n").splitlines()]
    from ...runtime.secrets import scrub

    click.echo(scrub("\n".join(lines)))


@click.command()
@click.argument("left", metavar="NAME@A")
@click.argument("right", metavar="NAME@B")
@registry_option()
@json_option()
def diff(left, right, registry_url, as_json):
    """Compare two registered versions: packages per platform, python, base image, variables."""
    d = api.diff(left, right, registry=registry_url)
    if as_json:
        emit_json(d.to_json())
    else:
        click.echo("\n".join(d.lines()))


@click.command()
@click.argument("ref", metavar="NAME@VERSION")
@click.argument("label_name", metavar="LABEL")
@registry_option()
@click.option("--history", is_flag=True, help="Show where LABEL has pointed over time (REF may be just NAME).")
@json_option()
def label(ref, label_name, registry_url, history, as_json):
    """Point LABEL at a version (moving it), e.g. `mlenv label fraud-train@3 prod`."""
    name = ref.partition("@")[0]
    if history:
        moves = api.label_history(ref, label_name, registry=registry_url)
        if as_json:
            emit_json({"name": name, "label": label_name, "history": [{"time": t, "version": n} for t, n in moves]})
        elif not moves:
            click.echo(f"{name}: label {label_name!r} was never set", err=True)
        else:
            table([[when(t), str(n)] for t, n in moves], ["TIME", "VERSION"], title=f"{name}@{label_name}")
        return
    v, before = api.label(ref, label_name, registry=registry_url)
    if as_json:
        emit_json({"name": v.name, "label": label_name, "version": v.version, "previous": before})
    elif before == v.version:
        click.echo(f"{v.name}@{label_name} already is {v.ref}")
    else:
        moved = f" (was @{before})" if before else ""
        click.echo(f"{v.name}@{label_name} -> {v.ref}{moved}")


def _archived(target: str, archived: bool, as_json: bool) -> None:
    if as_json:
        emit_json({"target": target, "archived": archived})
    else:
        click.echo(f"{'archived' if archived else 'unarchived'} {target}")


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_option()
@json_option()
def archive(ref, registry_url, as_json):
    """Hide an environment (NAME) or one version (NAME@V) from list and latest; restorable."""
    _archived(api.archive(ref, registry=registry_url), True, as_json)


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_option()
@json_option()
def unarchive(ref, registry_url, as_json):
    """Undo `mlenv archive`."""
    _archived(api.unarchive(ref, registry=registry_url), False, as_json)


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]", required=False)
@registry_option()
@dir_option("--into", "into", default=".", show_default=True, help="Directory to write mlenv.toml and mlenv.lock into.")
@click.option("--force", is_flag=True, help="Overwrite local files that have changes not in the registry.")
@dir_option("--prefix", default=None, help="Also install the environment into DIR.")
@click.option("--pull", is_flag=True, help="Also pull the recorded image by digest.")
@click.option(
    "--from-image",
    "from_image",
    metavar="IMAGE",
    default=None,
    help="Recover spec and lock from an image mlenv built instead of a registry.",
)
@json_option()
def restore(ref, registry_url, into, force, prefix, pull, from_image, as_json):  # fmt: skip
    """Write the spec and lock of a registered version, exactly as registered.

    Every byte is verified against its hash before anything is written; both
    files are written atomically (both or neither).
    """
    from ..render import ProgressLine

    with ProgressLine(as_json) as progress:
        res = api.restore(ref, registry=registry_url, into=into, force=force, prefix=prefix, pull=pull,
                          from_image=from_image, progress=progress, on_warning=warn)  # fmt: skip
    if as_json:
        emit_json(res.to_json())
        return
    what = f"{res.source} ({short_digest(res.content_hash)})"
    state = "restored" if res.written else "already in place:"
    click.echo(f"{state} {what} -> {res.into / 'mlenv.toml'}, {res.into / 'mlenv.lock'}")
    if res.pulled:
        click.echo(f"pulled {res.pulled}")
    if res.installed is not None:
        click.echo(f"installed into {prefix}")
