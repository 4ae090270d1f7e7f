"""`mlenv build` and `mlenv images`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from .common import emit_json, human_size, spec_option


def image_ref(repository: str, name: str, short_hash: str) -> str:
    return f"{repository.rstrip('/')}/{name}:{short_hash}"


def _log_path(name: str, short: str) -> Path:
    from platformdirs import user_cache_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(user_cache_dir("mlenv")) / "logs" / f"build-{name}-{short}-{stamp}.log"


def _index_urls(spec) -> tuple[str, ...]:
    """Credentialed index URLs from the environment only (the spec's ${VAR} URLs
    expanded, MLENV_INDEX_URL): used by the host-side artifact download, never
    written anywhere and never passed to the build."""
    from ..errors import MlenvError
    from ..spec import expand_env

    urls = []
    for url in ([spec.index_url] if spec.index_url else []) + list(spec.extra_index_urls):
        if "${" in url:
            try:
                urls.append(expand_env(url))
            except MlenvError:
                pass
    return tuple(urls)


class _Display:
    """Step lines (plain stderr) or a rich spinner with the current step on a tty."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.status = None

    def __enter__(self):
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status("building…")
            self.status.__enter__()
        return self

    def step(self, text: str) -> None:
        if self.quiet:
            return
        from ..build.dockerfile import describe

        text = describe(text)
        if self.status is not None:
            self.status.update(f"step {text[:110]}")
        else:
            click.echo(f"  step {text[:160]}", err=True)

    def line(self, text: str) -> None:
        if self.status is not None:
            self.status.update(self.status.status.split("\n")[0] + "\n  " + text[:110])

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.__exit__(*exc)
        return False


@click.command()
@spec_option
@click.option("--repository", default="mlenv", show_default=True, metavar="REPO",
              help="Image repository: the image is REPO/NAME:SHORT_HASH; `host:port/ns` names a registry.")
@click.option("--push", is_flag=True, help="Push the image to the registry named by --repository.")
@click.option("--force", is_flag=True, help="Build even if an image with this content hash exists.")
@click.option("--no-cache", "no_cache", is_flag=True, help="Do not use Docker's layer cache.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False), envvar="MLENV_CA_BUNDLE", metavar="FILE",
              help="CA bundle for mlenv's host-side downloads (env MLENV_CA_BUNDLE, else the ca-bundle setting); never in an image.")
@click.option("--platform", "platform", default="linux-64", show_default=True, metavar="PLATFORM",
              help="Platform of the lock to build.")
@click.option("--dockerfile-only", "dockerfile_only", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the Dockerfile and build context to DIR and stop.")
@click.option("--builder", type=click.Choice(["auto", "buildkit", "classic", "daemonless"]), envvar="MLENV_BUILDER",
              help="BuildKit (multi-stage, parallel builder stages; through the docker CLI) or the classic "
                   "builder (docker SDK). auto (default): BuildKit when a docker CLI on PATH can. Env MLENV_BUILDER.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def build(spec_file, repository, push, force, no_cache, ca_bundle, platform, dockerfile_only, builder, as_json, quiet):
    """Build (or reuse) the Docker image of mlenv.lock, tagged REPO/NAME:SHORT_HASH.

    An image with the lock's content hash is reused instead of built: a local
    one (found by label, under any name; retagged) or the tag in the registry
    of --repository. Build output is saved to a log file whose path is printed
    on failure.
    """
    from ..errors import LockError, MlenvError
    from ..lockfile import read_lock
    from ..spec import load_spec
    from .common import spec_path

    t0 = time.perf_counter()
    spec = load_spec(spec_path(spec_file))
    lock = read_lock(spec.lock_path)
    if lock.spec_hash != spec.spec_hash():  # the fresh case stays import-free for the cache-hit path
        from ..locking import require_current

        require_current(spec, lock, path=spec.lock_path, doing="build an image of an old lock")
    if platform not in lock.platforms:
        raise LockError(f"{spec.lock_path} has no {platform} packages (it has {', '.join(sorted(lock.platforms))})",
                        hint=f'add "{platform}" to [environment] platforms and run `mlenv lock`')
    ref = image_ref(repository, spec.name, lock.short_hash)
    result = {"image": ref, "name": spec.name, "content_hash": lock.content_hash, "short_hash": lock.short_hash}
    from ..build_hit import remember

    # these bytes are now known to be a current, verified pair: the next hit skips this path
    remember(spec, lock, platform)

    if builder == "daemonless" and not dockerfile_only:  # temporary wiring (the lead moves it behind the engine API)
        _daemonless(spec, lock, platform, ref, result, push=push, force=force, as_json=as_json, quiet=quiet, t0=t0)
        return

    from ..build import docker as engine

    if not dockerfile_only and not force:
        reused = _reuse(engine, lock, ref, result, push, quiet)
        if reused:
            result["seconds"] = round(time.perf_counter() - t0, 3)
            _report(result, as_json, quiet, reused)
            return

    # the CA bundle matters from here on (downloads); a hit needs none
    from .. import settings

    ca_bundle = ca_bundle or settings.get("ca-bundle")
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise MlenvError(f"CA bundle {ca_bundle}: no such file",
                         hint="pass an existing PEM file to --ca-bundle (or fix MLENV_CA_BUNDLE / ca-bundle in "
                              f"{settings.config_path()})")

    # Every artifact of the lock, on the host, in mlenv's content-addressed cache; the
    # install steps fetch them from mlenv's artifact server on 127.0.0.1 during the build
    # (no index, credential or CA in any layer, the context or the Dockerfile).
    from .. import install as installer
    from ..build.context import context_files, make_plan, missing_local_files, served_files
    from ..build.serve import ArtifactServer, default_port, url_for
    from .common import ProgressLine

    if ca_bundle:
        os.environ["MLENV_CA_BUNDLE"] = os.path.abspath(ca_bundle)  # this process's downloads only
    pkgs = lock.for_platform(platform, "conda") + lock.for_platform(platform, "pypi")
    with ProgressLine(quiet or as_json) as progress:
        artifacts = installer.fetch_artifacts(pkgs, index_urls=_index_urls(spec), progress=progress)
    from ..build import buildkit

    builder, cli = buildkit.choose(builder or settings.get("builder"))
    plan = make_plan(spec, lock, platform, ca_bundle=bool(ca_bundle), artifacts=artifacts, builder=builder)
    result["builder"] = builder
    if not plan.tools_inline:  # this host's uv cannot run in the image: the target's wheels
        from ..build.tools import tool_wheels

        with ProgressLine(quiet or as_json) as progress:
            artifacts.update(installer.fetch_artifacts(tool_wheels(plan, lock), progress=progress))
    served = served_files(lock, plan, ca_bundle=ca_bundle, artifacts=artifacts)
    if dockerfile_only:
        from ..build.context import write_dir

        plan.server = url_for(default_port())
        write_dir(context_files(spec, lock, plan), Path(dockerfile_only), served)
        result.update(action="rendered", directory=str(Path(dockerfile_only)))
        _report(result, as_json, quiet, f"Wrote the Dockerfile and build context of {ref} to {dockerfile_only}")
        return

    from ..fsutil import atomic_write
    from ..solve.pypi import strip_credentials_in_text

    client = engine.connect()
    missing = missing_local_files(served)
    if missing:
        raise MlenvError(f"files the build needs are missing: {', '.join(missing[:3])}",
                         hint="the artifact cache was cleaned during the build; run `mlenv build` again")
    secrets = [u.split("://", 1)[-1].split("@", 1)[0] for u in _index_urls(spec) if "@" in u]

    def scrub(text: str) -> str:
        text = strip_credentials_in_text(text)
        for s in secrets:
            text = text.replace(s, "***")
        return text

    log_path = _log_path(spec.name, lock.short_hash)
    if not quiet and not as_json:
        click.echo(f"Building {ref} ({plan.platform}, base {plan.base}, {len(plan.groups)} PyPI groups, {builder})", err=True)
    with ArtifactServer(served) as server:
        plan.server = server.url  # a busy default port: another one (correct, misses the layer cache)
        if cli:
            with _Display(quiet or as_json) as display:
                log = buildkit.build(cli, context_files(spec, lock, plan), ref, nocache=no_cache,
                                     on_step=display.step, on_line=display.line, scrub=scrub)
        else:
            with _Display(quiet or as_json) as display:
                log = engine.build(client, context_files(spec, lock, plan), ref, nocache=no_cache,
                                   on_step=display.step, on_line=display.line, scrub=scrub)
    atomic_write(log_path, "\n".join(log.lines) + "\n")
    if log.error or not log.image_id:
        raise engine.explain_failure(log, plan.base, log_path)
    result.update(action="built", id=client.api.inspect_image(ref)["Id"], log=str(log_path), seconds=round(time.perf_counter() - t0, 3))
    if push:
        result["pushed"] = _push(engine, client, ref, quiet)
    _report(result, as_json, quiet, f"built {ref} in {result['seconds']:.1f}s (log: {log_path})")


def _daemonless(spec, lock, platform: str, ref: str, result: dict, *, push: bool, force: bool, as_json: bool,
                quiet: bool, t0: float) -> None:
    """--builder daemonless: mlenv writes the image (mlenv.image.daemonless); --push sends it to
    the registry of --repository (reuse: one HEAD), else it is loaded into the local Engine."""
    from ..image.daemonless import build as daemonless_build

    say = None if (quiet or as_json) else (lambda m: click.echo(f"  {m}", err=True))
    res = daemonless_build(spec, lock, platform, push_to=ref if push else None, load=not push, force=force,
                           index_urls=_index_urls(spec), progress=say)
    result.update(builder="daemonless", action="reused" if res.reused else "built", where=res.reused,
                  digest=res.manifest_digest, id=res.image_id, upload=res.upload,
                  layers=[{"id": x.id, "digest": x.digest, "size": x.size, "cached": x.cached} for x in res.layers],
                  seconds=round(time.perf_counter() - t0, 3))
    if push and res.manifest_digest:
        result["pushed"] = res.manifest_digest
    what = f"reused {ref} ({res.reused})" if res.reused else f"built {ref} in {result['seconds']:.1f}s (daemonless)"
    _report(result, as_json, quiet, what)


def _reuse(engine, lock, ref: str, result: dict, push: bool, quiet: bool) -> str | None:
    """The cache-hit path: a local image with the content hash label, else the tag in
    the registry. Engine API on the unix socket with the stdlib (no docker SDK,
    requests or rich import) unless DOCKER_HOST is tcp:// / ssh://."""
    fast = engine.Engine.from_env()
    if fast is not None:
        try:
            local = fast.find_local(lock.content_hash, ref)
        except engine.EngineUnreachable as exc:
            raise engine.unreachable(str(exc)) from None
        tag = fast.ensure_tag
        registry_digest = engine.registry_digest_fast
    else:
        client = engine.connect()
        local = engine.find_local(client, lock.content_hash)
        tag = lambda image, ref: engine.ensure_tag(client, image, ref)  # noqa: E731
        registry_digest = engine.registry_digest
    if local is not None:
        retagged = tag(local, ref)
        result.update(action="reused", where="local", id=local["Id"], retagged=retagged)
        if push:
            result["pushed"] = _push(engine, engine.connect(), ref, quiet, only_if_missing=True)
        return f"reused {ref} (local image {local['Id'][7:19]}" + (", tagged" if retagged else "") + ")"
    digest = registry_digest(ref)
    if digest:
        result.update(action="reused", where="registry", digest=digest)
        return f"reused {ref} (in the registry, {digest[:19]}…); nothing to build"
    return None


def _push(engine, client, ref: str, quiet: bool, only_if_missing: bool = False) -> str | None:
    from ..errors import MlenvError

    if not engine._names_registry(ref):
        raise MlenvError(f"--push needs a registry in --repository (e.g. 127.0.0.1:5000/team), not {ref.rsplit('/', 1)[0]!r}")
    if only_if_missing:
        digest = engine.registry_digest(ref)
        if digest:
            return digest
    if not quiet:
        click.echo(f"  pushing {ref}", err=True)
    return engine.push(client, ref)


def _report(result: dict, as_json: bool, quiet: bool, message: str) -> None:
    if as_json:
        emit_json(result)
    elif not quiet:
        click.echo(message)
        if result.get("pushed"):
            click.echo(f"  pushed {result['image']} ({result['pushed'][:19]}…)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--name", "name", metavar="NAME", help="Only images of this environment.")
def images(as_json, name):
    """List the local images mlenv built (found by their org.mlenv.content-hash label)."""
    from ..build import docker as engine

    rows = engine.list_images(engine.connect())
    if name:
        rows = [r for r in rows if r["name"] == name]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no mlenv images (build one with `mlenv build`)", err=True)
        return
    header = ("NAME", "HASH", "SIZE", "CREATED", "TAGS")
    table = [(r["name"], r["short_hash"], human_size(r["size"]),
              time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])), ", ".join(r["tags"]) or "<untagged>")
             for r in rows]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for row in (header, *table):
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
