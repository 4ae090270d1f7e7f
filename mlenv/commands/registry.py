"""`mlenv register/list/versions/show/diff/label/archive/unarchive/restore/gc`.

Kept light at import: the read commands on the local registry touch only
sqlite3, click and json; rich, requests and docker are imported where needed.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import click

from .common import emit_json, spec_option, spec_path, warn

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"
IMAGE_LOCK = "/opt/mlenv/mlenv.lock"
IMAGE_SPEC = "/opt/mlenv/mlenv.toml"

registry_option = click.option(
    "--registry", "registry_url", metavar="URL", default=None,
    help="Registry: a directory (embedded, the default is the user data dir), oci://host[:port]/namespace "
         "or azureml://... (default: $MLENV_REGISTRY, else `registry` in the user settings).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


def _open(url: str | None):
    from ..registry.base import open_registry

    return open_registry(url)


def _resolve(reg, text: str):
    from ..registry.base import parse_ref

    name, ref = parse_ref(text)
    return reg.resolve(name, ref)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- output --------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str], title: str | None = None) -> None:
    """A rich table on a terminal (small outputs); aligned plain text otherwise (fast, pipe-friendly)."""
    if sys.stdout.isatty() and len(rows) <= 2000:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for h in header:
            table.add_column(h, overflow="fold")
        for r in rows:
            table.add_row(*r)
        Console().print(table)
        return
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    out = []
    if title:
        out.append(title)
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    sys.stdout.write("\n".join(out) + "\n")


def _created(text: str) -> str:
    return text[:19].replace("T", " ") if text else ""


def _short_digest(d: str | None) -> str:
    return d.split(":", 1)[-1][:12] if d else ""


# --- docker (lazy, optional) ---------------------------------------------------


def _docker_client(required: bool = False):
    """A docker client when a daemon answers, else None (or an error when required)."""
    from ..registry.base import RegistryError

    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        if required:
            raise RegistryError("no Docker daemon (no DOCKER_HOST, no /var/run/docker.sock)",
                                hint="start Docker, or set DOCKER_HOST")
        return None
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except Exception as exc:  # docker raises many types; all mean "no daemon"
        if required:
            raise RegistryError(f"no Docker daemon answers ({type(exc).__name__})", hint="start Docker, or set DOCKER_HOST") from None
        return None


def _norm_hash(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"


def _mlenv_images(client) -> list:
    return client.images.list(filters={"label": LABEL_HASH})


def find_built_image(client, content_hash: str) -> tuple[str | None, str | None]:
    """(image reference, registry digest) of a local image built for content_hash."""
    best = None
    for img in _mlenv_images(client):
        if _norm_hash(img.labels.get(LABEL_HASH)) != content_hash:
            continue
        digests = img.attrs.get("RepoDigests") or []
        tags = img.tags or []
        if digests:
            repo, _, digest = digests[0].partition("@")
            tag = next((t for t in tags if t.rsplit(":", 1)[0] == repo), None)
            return tag or repo, digest
        if best is None and tags:
            best = (tags[0], None)
    return best or (None, None)


# --- register ------------------------------------------------------------------


@click.command()
@spec_option
@registry_option
@click.option("--description", default=None, metavar="TEXT", help="Description of this version.")
@click.option("--no-image", is_flag=True, help="Do not look for a locally built image to record.")
@json_option
def register(spec_file, registry_url, description, no_image, as_json):
    """Record the current spec and lock as the next version of the environment.

    The lock must be current (`mlenv lock --check` passes). Content already
    registered under this name returns its existing version, so registering is
    idempotent. When a local image built by `mlenv build` carries the lock's
    content hash, its reference and digest are recorded too.
    """
    from ..errors import LockError
    from ..lockfile import loads_lock
    from ..spec import load_spec

    spec = load_spec(spec_path(spec_file))
    lock_path = spec.lock_path
    try:
        lock_bytes = lock_path.read_bytes()
    except FileNotFoundError:
        raise LockError(f"{lock_path}: no such file", hint="run `mlenv lock` first") from None
    spec_bytes = spec.path.read_bytes()
    if spec_bytes.decode("utf-8", errors="replace") != spec.text:  # changed between the two reads
        raise LockError(f"{spec.path} changed while registering", hint="retry")
    lock = loads_lock(lock_bytes, lock_path)
    from ..locking import require_current

    require_current(spec, lock, path=lock_path, doing="register an old lock")
    image = image_digest = None
    if not no_image:
        client = _docker_client()
        if client is not None:
            try:
                image, image_digest = find_built_image(client, lock.content_hash)
            finally:
                client.close()
    with _open(registry_url) as reg:
        result = reg.register(spec.name, spec_bytes, lock_bytes, lock.content_hash,
                              description=description if description is not None else "",
                              image=image, image_digest=image_digest)
        v = result.version
        changes = {}
        if not result.created:
            if description is not None and description != v.description:
                changes["description"] = description
            if image and (image != v.image or (image_digest and image_digest != v.image_digest)):
                changes["image"], changes["image_digest"] = image, image_digest
            if changes:
                v = reg.update(v.name, v.version, **changes)
        if as_json:
            emit_json({**v.to_json(), "new": result.created, "updated": sorted(changes), "registry": reg.url})
            return
        if result.created:
            click.echo(f"registered {v.ref} ({v.short_hash})" + (f", image {v.image}" if v.image else ""))
        else:
            extra = f"; updated {', '.join(k for k in changes if k != 'image_digest')}" if changes else ""
            click.echo(f"already registered as {v.ref} ({v.short_hash}){extra}")


# --- read commands ---------------------------------------------------------------


@click.command("list")
@registry_option
@click.option("--all", "show_all", is_flag=True, help="Include archived environments.")
@json_option
def list_(registry_url, show_all, as_json):
    """List registered environments (archived ones with --all)."""
    with _open(registry_url) as reg:
        if hasattr(reg, "summary"):
            rows = reg.summary(include_archived=show_all)
        else:
            rows = []
            for name in reg.names(include_archived=show_all):
                vs = reg.versions(name)
                live = [v for v in vs if not v.archived]
                rows.append({"name": name, "archived": all(v.archived for v in vs), "versions": len(vs),
                             "latest": live[-1].version if live else None,
                             "updated": max((v.created for v in vs), default="")})
        if as_json:
            emit_json({"registry": reg.url, "environments": rows})
            return
        if not rows:
            click.echo(f"no environments registered in {reg.url}", err=True)
            return
        _table([[r["name"], str(r["versions"]), str(r["latest"] or "-"), _created(r["updated"] or ""),
                 "yes" if r["archived"] else ""] for r in rows],
               ["NAME", "VERSIONS", "LATEST", "UPDATED", "ARCHIVED"])


@click.command()
@click.argument("name")
@registry_option
@click.option("--all", "show_all", is_flag=True, help="Include archived versions.")
@json_option
def versions(name, registry_url, show_all, as_json):
    """List the versions of an environment (archived ones with --all)."""
    with _open(registry_url) as reg:
        vs = reg.versions(name.partition("@")[0])
        if not show_all:
            vs = [v for v in vs if not v.archived]
        if as_json:
            emit_json({"registry": reg.url, "name": name, "versions": [v.to_json() for v in vs]})
            return
        if not vs:
            click.echo(f"{name}: every version is archived (`mlenv versions --all {name}` shows them)", err=True)
            return
        rows = [[str(v.version), v.short_hash, _created(v.created), ",".join(v.labels), v.image or "",
                 _short_digest(v.image_digest), "yes" if v.archived else ""] for v in vs]
        _table(rows, ["VERSION", "HASH", "CREATED", "LABELS", "IMAGE", "DIGEST", "ARCHIVED"])


def _read_verified(reg, v):
    """(spec bytes, lock bytes, Lock) of a version, every hash checked."""
    from ..lockfile import loads_lock
    from ..registry.base import RegistryError

    spec_bytes, lock_bytes = reg.read(v)
    if _sha256(spec_bytes) != v.spec_sha256 or _sha256(lock_bytes) != v.lock_sha256:
        raise RegistryError(f"{v.ref}: stored files do not match their recorded sha256; refusing to use them")
    lock = loads_lock(lock_bytes, f"{v.ref}:mlenv.lock")
    if lock.content_hash != v.content_hash:
        raise RegistryError(f"{v.ref}: the stored lock has content hash {lock.content_hash[:19]}…, "
                            f"the registry recorded {v.content_hash[:19]}…; refusing to use it")
    return spec_bytes, lock_bytes, lock


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_option
@click.option("--packages", "show_packages", is_flag=True, help="List every package, not only counts.")
@json_option
def show(ref, registry_url, show_packages, as_json):
    """Show one registered version: spec, packages per platform, variables, image."""
    with _open(registry_url) as reg:
        v = _resolve(reg, ref)
        spec_bytes, _, lock = _read_verified(reg, v)
    platforms = {}
    for plat in sorted(lock.platforms):
        pkgs = lock.for_platform(plat)
        platforms[plat] = {
            "python": lock.platform_python(plat),
            "conda": sum(p.manager == "conda" for p in pkgs),
            "pypi": sum(p.manager == "pypi" for p in pkgs),
            "packages": [{"manager": p.manager, "name": p.name, "version": p.version}
                         for p in sorted(pkgs, key=lambda p: (p.manager, p.name))],
        }
    from ..runtime.secrets import scrub

    # A version registered before literal credentials were refused may still hold one.
    data = {**v.to_json(), "spec": scrub(spec_bytes.decode("utf-8", errors="replace")), "platforms": platforms,
            "variables": lock.variables, "base_image": lock.image.get("reference") or lock.image.get("base"),
            "apt_packages": lock.image.get("apt-packages", [])}
    if as_json:
        emit_json(data)
        return
    lines = [f"{v.ref}  ({v.content_hash})", f"created:     {_created(v.created)}"]
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
    for plat, info in platforms.items():
        lines.append(f"  {plat}: python {info['python'] or '-'}, {info['conda']} conda, {info['pypi']} pypi")
        if show_packages:
            lines += [f"    {p['name']} {p['version']} ({p['manager']})" for p in info["packages"]]
        elif info["packages"]:
            names = ", ".join(f"{p['name']}=={p['version']}" for p in info["packages"][:12])
            more = len(info["packages"]) - 12
            lines.append(f"    {names}" + (f", … ({more} more; --packages lists all)" if more > 0 else ""))
    lines.append("spec (mlenv.toml):")
    lines += ["  " + line for line in data["spec"].rstrip("\n").splitlines()]
    click.echo("\n".join(lines))


@click.command()
@click.argument("left", metavar="NAME@A")
@click.argument("right", metavar="NAME@B")
@registry_option
@json_option
def diff(left, right, registry_url, as_json):
    """Compare two registered versions: packages per platform, python, base image, variables."""
    from ..registry.diff import diff_locks, render

    with _open(registry_url) as reg:
        a = _resolve(reg, left)
        b = _resolve(reg, right)
        _, _, la = _read_verified(reg, a)
        _, _, lb = _read_verified(reg, b)
    d = diff_locks(la, lb)
    if as_json:
        emit_json({"left": a.to_json(), "right": b.to_json(), **d})
        return
    click.echo("\n".join(render(d, a.ref, b.ref)))


# --- labels and archive -----------------------------------------------------------


@click.command()
@click.argument("ref", metavar="NAME@VERSION")
@click.argument("label_name", metavar="LABEL")
@registry_option
@click.option("--history", is_flag=True, help="Show where LABEL has pointed over time (REF may be just NAME).")
@json_option
def label(ref, label_name, registry_url, history, as_json):
    """Point LABEL at a version (moving it), e.g. `mlenv label fraud-train@3 prod`."""
    from ..registry.base import check_label, parse_ref

    with _open(registry_url) as reg:
        name, version_ref = parse_ref(ref)
        if history:
            moves = reg.label_history(name, label_name)
            if as_json:
                emit_json({"name": name, "label": label_name, "history": [{"time": t, "version": n} for t, n in moves]})
            elif not moves:
                click.echo(f"{name}: label {label_name!r} was never set", err=True)
            else:
                _table([[_created(t), str(n)] for t, n in moves], ["TIME", "VERSION"], title=f"{name}@{label_name}")
            return
        check_label(label_name)
        if "@" not in ref:
            from ..registry.base import RegistryError

            raise RegistryError(f"{ref!r}: say which version gets the label", hint=f"e.g. `mlenv label {name}@3 {label_name}`")
        v = reg.resolve(name, version_ref)
        before = reg.labels(name).get(label_name)
        reg.set_label(name, v.version, label_name)
        if as_json:
            emit_json({"name": name, "label": label_name, "version": v.version, "previous": before})
        elif before == v.version:
            click.echo(f"{name}@{label_name} already is {v.ref}")
        else:
            moved = f" (was @{before})" if before else ""
            click.echo(f"{name}@{label_name} -> {v.ref}{moved}")


def _set_archived(ref: str, registry_url: str | None, archived: bool, as_json: bool) -> None:
    from ..registry.base import parse_ref

    with _open(registry_url) as reg:
        name, version_ref = parse_ref(ref)
        if "@" in ref:
            if archived or not version_ref.isdigit():
                v = reg.resolve(name, version_ref)
                number = v.version
            else:
                number = int(version_ref)
            reg.set_archived(name, number, archived)
            target = f"{name}@{number}"
        else:
            reg.set_archived(name, None, archived)
            target = name
    word = "archived" if archived else "unarchived"
    if as_json:
        emit_json({"target": target, "archived": archived})
    else:
        click.echo(f"{word} {target}")


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_option
@json_option
def archive(ref, registry_url, as_json):
    """Hide an environment (NAME) or one version (NAME@V) from list and latest; restorable."""
    _set_archived(ref, registry_url, True, as_json)


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@registry_option
@json_option
def unarchive(ref, registry_url, as_json):
    """Undo `mlenv archive`."""
    _set_archived(ref, registry_url, False, as_json)


# --- restore --------------------------------------------------------------------


def write_pair(into: Path, spec_bytes: bytes, lock_bytes: bytes, *, force: bool, known: set[str]) -> list[str]:
    """Write mlenv.toml and mlenv.lock into `into`, both or neither.

    An existing file is replaced only when it is identical, when its bytes are a
    registered version's (nothing is lost: `known` holds those sha256s), or with
    force. Returns the names written."""
    from ..fsutil import atomic_write
    from ..registry.base import RegistryError

    targets = [(into / "mlenv.toml", spec_bytes), (into / "mlenv.lock", lock_bytes)]
    plan = []
    for path, data in targets:
        old = None
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise RegistryError(f"{path} is a directory") from None
        if old == data:
            continue
        if old is not None and not force and _sha256(old) not in known:
            raise RegistryError(f"{path} has local changes that are not in the registry; refusing to overwrite it",
                                hint="commit or move it, restore --into another directory, or pass --force")
        plan.append((path, data, old))
    done = []
    try:
        for path, data, old in plan:
            atomic_write(path, data)
            done.append((path, old))
    except BaseException:
        for path, old in reversed(done):  # put back what we replaced: both or neither
            if old is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, old)
        raise
    return [p.name for p, _, _ in plan]


def _install(lock_path: Path, spec_file: Path, prefix: Path, quiet: bool = False):
    """Materialize the restored lock into prefix with the installer (mlenv.install.install),
    with the same index credentials (${VAR} URLs of the spec) as `mlenv install`."""
    from .. import install as installer
    from ..lockfile import read_lock
    from .common import ProgressLine

    try:
        from .install import _index_urls

        index_urls = _index_urls(str(spec_file), lock_path)
    except ImportError:
        index_urls = ()
    with ProgressLine(quiet) as progress:
        return installer.install(read_lock(lock_path), prefix, index_urls=index_urls, progress=progress)


def _pull(image: str, digest: str) -> str:
    from ..image_ref import parse

    ref = f"{parse(image).name}@{digest}"
    client = _docker_client(required=True)
    try:
        client.images.pull(ref)
    except Exception as exc:
        from ..registry.base import RegistryError

        raise RegistryError(f"could not pull {ref}: {str(exc).splitlines()[0][:200]}") from None
    finally:
        client.close()
    return ref


def read_from_image(reference: str) -> tuple[bytes, bytes, str, str | None]:
    """(spec bytes, lock bytes, content hash, name) from an image mlenv built:
    create a container (never started), copy /opt/mlenv/mlenv.{toml,lock} out, remove it."""
    import io
    import tarfile

    from ..lockfile import loads_lock
    from ..registry.base import RegistryError

    client = _docker_client(required=True)
    try:
        import docker

        try:
            img = client.images.get(reference)
        except docker.errors.ImageNotFound:
            try:
                img = client.images.pull(reference)
            except Exception as exc:
                raise RegistryError(f"image {reference} is not local and could not be pulled "
                                    f"({str(exc).splitlines()[0][:200]})") from None
        labels = img.labels or {}
        expected = _norm_hash(labels.get(LABEL_HASH))
        if not expected:
            raise RegistryError(f"image {reference} was not built by mlenv (no {LABEL_HASH} label)")
        files = {}
        container = client.containers.create(img.id, command=["/bin/true"], network_mode="none")
        try:
            for path in (IMAGE_SPEC, IMAGE_LOCK):
                try:
                    stream, _ = container.get_archive(path)
                except docker.errors.NotFound:
                    raise RegistryError(f"image {reference} has no {path}") from None
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    member = next((m for m in tar.getmembers() if m.isfile()), None)
                    if member is None:
                        raise RegistryError(f"image {reference}: {path} is not a file")
                    files[path] = tar.extractfile(member).read()
        finally:
            container.remove(force=True)
    finally:
        client.close()
    lock = loads_lock(files[IMAGE_LOCK], f"{reference}:{IMAGE_LOCK}")
    if lock.content_hash != expected:
        raise RegistryError(f"image {reference}: {IMAGE_LOCK} has content hash {lock.content_hash[:19]}…, "
                            f"the image label says {expected[:19]}…; refusing to restore it")
    return files[IMAGE_SPEC], files[IMAGE_LOCK], expected, labels.get(LABEL_NAME)


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]", required=False)
@registry_option
@click.option("--into", "into", type=click.Path(file_okay=False), default=".", show_default=True, metavar="DIR",
              help="Directory to write mlenv.toml and mlenv.lock into.")
@click.option("--force", is_flag=True, help="Overwrite local files that have changes not in the registry.")
@click.option("--prefix", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also install the environment into DIR.")
@click.option("--pull", is_flag=True, help="Also pull the recorded image by digest.")
@click.option("--from-image", "from_image", metavar="IMAGE", default=None,
              help="Recover spec and lock from an image mlenv built instead of a registry.")
@json_option
def restore(ref, registry_url, into, force, prefix, pull, from_image, as_json):
    """Write the spec and lock of a registered version, exactly as registered.

    Every byte is verified against its hash before anything is written; both
    files are written atomically (both or neither).
    """
    from ..registry.base import RegistryError

    into_dir = Path(into)
    if from_image:
        if ref:
            raise RegistryError("give either NAME@VERSION or --from-image, not both")
        spec_bytes, lock_bytes, content_hash, name = read_from_image(from_image)
        written = write_pair(into_dir, spec_bytes, lock_bytes, force=force, known=set())
        result = {"source": from_image, "name": name, "content_hash": content_hash, "into": str(into_dir),
                  "written": written}
        what = f"{from_image} ({content_hash.split(':')[-1][:12]})"
        v = None
    else:
        if not ref:
            raise RegistryError("say what to restore: NAME@VERSION (or --from-image IMAGE)")
        if ref.startswith("azureml://"):
            from ..registry.azureml import split_ref

            parts = split_ref(ref)
            if parts is None:
                raise RegistryError(f"{ref!r}: expected azureml://subscriptions/S/resourceGroups/R/workspaces/W/environments/NAME@V")
            registry_url, ref = parts
        with _open(registry_url) as reg:
            v = _resolve(reg, ref)
            spec_bytes, lock_bytes, _ = _read_verified(reg, v)
            known = {s for x in reg.versions(v.name) for s in (x.spec_sha256, x.lock_sha256)}
        written = write_pair(into_dir, spec_bytes, lock_bytes, force=force, known=known)
        result = {**v.to_json(), "into": str(into_dir), "written": written}
        what = f"{v.ref} ({v.short_hash})"
    if not as_json:
        state = "restored" if written else "already in place:"
        click.echo(f"{state} {what} -> {into_dir / 'mlenv.toml'}, {into_dir / 'mlenv.lock'}")
    if pull:
        if v is None or not (v.image and v.image_digest):
            warn("no image digest was recorded for this version; nothing to pull")
        else:
            result["pulled"] = _pull(v.image, v.image_digest)
            if not as_json:
                click.echo(f"pulled {result['pulled']}")
    if prefix:
        res = _install(into_dir / "mlenv.lock", into_dir / "mlenv.toml", Path(prefix), quiet=as_json)
        result["prefix"] = str(prefix)
        result["installed"] = {"conda": res.conda, "pypi": res.pypi, "interpreter": res.interpreter}
        if not as_json:
            click.echo(f"installed into {prefix}")
    if as_json:
        emit_json(result)


# --- gc -------------------------------------------------------------------------


@click.command()
@registry_option
@click.option("--yes", is_flag=True, help="Delete (default: dry run, list what would go).")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Only images of this environment (label org.mlenv.name; repeatable).")
@json_option
def gc(registry_url, yes, names, as_json):
    """Remove local mlenv images that no registered version and no ./mlenv.lock reference.

    Images are found by their label org.mlenv.content-hash; an image is kept when
    any version in the chosen registry (archived ones included) or ./mlenv.lock has
    that content hash. Dry run unless --yes.
    """
    client = _docker_client()
    if client is None:
        if as_json:
            emit_json({"daemon": False, "unreferenced": [], "removed": []})
        else:
            click.echo("no Docker daemon answers: no images to collect", err=True)
        return
    try:
        with _open(registry_url) as reg:
            keep = set(reg.content_hashes())
        current = Path("mlenv.lock")
        if current.exists():
            from ..lockfile import read_lock

            keep.add(read_lock(current, verify=False).content_hash)
        unreferenced, kept = [], 0
        for img in _mlenv_images(client):
            if names and img.labels.get(LABEL_NAME) not in names:
                continue
            h = _norm_hash(img.labels.get(LABEL_HASH))
            if h in keep:
                kept += 1
                continue
            unreferenced.append({"id": img.id, "tags": img.tags, "content_hash": h,
                                 "size": img.attrs.get("Size", 0)})
        removed, failed = [], []
        if yes:
            import docker

            for item in unreferenced:
                try:
                    for tag in item["tags"] or [item["id"]]:
                        client.images.remove(tag)
                    removed.append(item)
                except docker.errors.APIError as exc:
                    failed.append({**item, "error": str(exc.explanation or exc)[:200]})
    finally:
        client.close()
    if as_json:
        emit_json({"daemon": True, "dry_run": not yes, "kept": kept, "unreferenced": unreferenced,
                   "removed": removed, "failed": failed})
        return
    if not unreferenced:
        click.echo(f"nothing to collect ({kept} mlenv image(s), all referenced)")
        return
    verb = "removed" if yes else "would remove"
    for item in unreferenced:
        if yes and item not in removed:
            continue
        click.echo(f"{verb} {', '.join(item['tags']) or item['id'][:19]}  ({(item['size'] or 0) / 1e6:.0f} MB)")
    for item in failed:
        warn(f"could not remove {', '.join(item['tags']) or item['id'][:19]}: {item['error']}")
    if not yes:
        click.echo(f"dry run: {len(unreferenced)} image(s); pass --yes to delete", err=True)
    if failed:
        sys.exit(1)
