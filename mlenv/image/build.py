"""`mlenv build` as a function: reuse an image that exists for the lock's content
hash, else fetch every artifact on the host and let a builder (mlenv.image.engine)
make the image, then push it when asked.

An image with the lock's content hash is reused instead of built: a local one
(found by label under any name, and tagged) or the tag in the registry named by
the repository. Identical environments are never built twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import LockError, MlenvError
from ..lockfile import Lock
from ..spec import Spec
from .result import ImageResult

Progress = Callable[[str], None]


def image_ref(repository: str, name: str, short_hash: str) -> str:
    return f"{repository.rstrip('/')}/{name}:{short_hash}"


def log_path(name: str, short: str) -> Path:
    from ..runtime.fetch import default_cache_root

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return default_cache_root() / "logs" / f"build-{name}-{short}-{stamp}.log"


def build_image(
    spec: Spec,
    lock: Lock,
    *,
    platform: str = "linux-64",
    repository: str = "mlenv",
    push: bool = False,
    force: bool = False,
    no_cache: bool = False,
    ca_bundle: str | None = None,
    builder: str | None = None,
    dockerfile_only: str | os.PathLike[str] | None = None,
    layout: str | os.PathLike[str] | None = None,
    index_urls: tuple[str, ...] = (),
    progress: Progress | None = None,
    on_step: Progress | None = None,
    on_line: Progress | None = None,
    on_warning: Progress | None = None,
) -> ImageResult:
    """Build (or reuse) the image of a current, verified lock, tagged REPO/NAME:SHORT_HASH.
    index_urls: credentialed index URLs (in memory only) for the host-side downloads."""
    t0 = time.perf_counter()
    if platform not in lock.platforms:
        raise LockError(f"{spec.lock_path} has no {platform} packages (it has {', '.join(sorted(lock.platforms))})",
                        hint=f'add "{platform}" to [environment] platforms and run `mlenv lock`')  # fmt: skip
    if builder and builder.lower() != "auto":
        from .engine import builder_class

        builder_class(builder.lower())  # a misspelt builder is an error, also when the image exists
    ref = image_ref(repository, spec.name, lock.short_hash)
    result = ImageResult(ref, spec.name, lock.content_hash, lock.short_hash)
    # a layout asked for is an output to write, not a question whether the image exists somewhere
    if not (dockerfile_only or force or layout) and _reuse(lock, result, push, engine_required=not push):
        result.seconds = round(time.perf_counter() - t0, 3)
        return result

    from ..runtime.fetch import fetch_artifacts
    from ..runtime.secrets import remember_url
    from ..runtime.secrets import scrub as scrub_text  # masks every secret remembered (index passwords, netrc)

    for url in index_urls:
        remember_url(url)
    from .engine import BuildJob, choose

    if ca_bundle and not Path(ca_bundle).is_file():
        raise MlenvError(f"CA bundle {ca_bundle}: no such file",
                         hint="pass an existing PEM file to --ca-bundle (or fix MLENV_CA_BUNDLE / the ca-bundle setting)")  # fmt: skip
    from ..apt import legacy_unpinned
    from ..apt.fetch import fetch_debs
    from ..installing import artifact

    if legacy_unpinned(lock) and on_warning:
        on_warning(f"{spec.lock_path.name} does not pin [image] apt-packages (written before mlenv locked Debian "
                   "packages): the image gets what the mirror has today; `mlenv lock --upgrade` pins them")  # fmt: skip
    from ..wheelbuild.ensure import ensure

    ensure(lock.for_platform(platform, "pypi"), project=spec.path.parent, spec=spec, progress=progress)
    pkgs = lock.for_platform(platform, "conda") + lock.for_platform(platform, "pypi")
    artifacts = fetch_artifacts([artifact(p) for p in pkgs], index_urls=index_urls, ca_bundle=ca_bundle,
                                progress=progress)  # fmt: skip
    artifacts.update(fetch_debs(lock.for_platform(platform, "apt"), ca_bundle=ca_bundle, progress=progress))
    from ..oci.client import names_registry
    from .docker import DockerEngine

    secrets = [u.split("://", 1)[-1].split("@", 1)[0] for u in index_urls if "@" in u]
    if push and not names_registry(ref):
        raise MlenvError(
            f"--push needs a registry in --repository (e.g. 127.0.0.1:5000/team), not {ref.rsplit('/', 1)[0]!r}"
        )
    job = BuildJob(spec=spec, lock=lock, platform=platform, ref=ref, artifacts=artifacts,
                   log_path=log_path(spec.name, lock.short_hash), ca_bundle=ca_bundle, no_cache=no_cache,
                   scrub=lambda text: scrub_text(text, secrets), on_step=on_step, on_line=on_line,
                   push_to=ref if push else None, layout=os.fspath(layout) if layout else None,
                   engine=not (push or layout) and DockerEngine.available() is not None,
                   index_urls=index_urls)  # fmt: skip
    chosen = choose(builder, None if dockerfile_only else job, dockerfile=bool(dockerfile_only))
    result.builder = chosen.name
    if dockerfile_only:
        chosen.render(job, Path(dockerfile_only))
        result.action, result.directory = "rendered", str(Path(dockerfile_only))
        result.message = f"Wrote the Dockerfile and build context of {ref} to {result.directory}"
        return result

    from ..runtime.fsutil import atomic_write
    from .docker import DockerEngine
    from .dockerbuild import explain_failure

    if progress:
        progress(f"building {ref} ({platform}, base {lock.image.get('reference') or spec.base_image}, {chosen.name})")
    built = chosen.build(job)
    atomic_write(job.log_path, "\n".join(built.log.lines) + "\n")
    result.action, result.log = "built", str(job.log_path)
    if built.digest is not None:  # the builder wrote the image itself (daemonless): pushed, laid out or loaded
        result.id, result.digest, result.pushed = built.image_id, built.digest, built.pushed
        result.layers, result.upload = built.extra.get("layers"), built.extra.get("upload")
        result.pycs = built.extra.get("pycs") or None
        result.seconds = round(time.perf_counter() - t0, 3)
        where = ", ".join(w for w in ("pushed" if built.pushed else "", "loaded" if built.image_id else "",
                                      f"layout {layout}" if layout else "") if w)  # fmt: skip
        result.message = f"built {ref} in {result.seconds:.1f}s ({chosen.name}; {where}; {built.digest[:19]}…)"
        return result
    if built.log.error or not built.image_id:
        raise explain_failure(built.log, lock.image.get("reference") or spec.base_image, job.log_path)
    with DockerEngine() as engine:
        result.id = engine.image_id(ref)
        result.seconds = round(time.perf_counter() - t0, 3)
        if push:
            result.pushed = _push(engine, ref, progress)
    result.message = f"built {ref} in {result.seconds:.1f}s (log: {job.log_path})"
    return result


def _reuse(lock: Lock, result: ImageResult, push: bool, engine_required: bool) -> bool:
    """The cache-hit path. With --push: the tag in the registry, or nothing (the image is
    built and pushed by its builder, so the registry gets the builder's exact bytes).
    Without: a local image with the content hash label (tagged if needed), else the tag in
    the registry. No local Engine is needed when the image goes to a registry or a layout."""
    from ..oci.client import remote_has as registry_digest
    from .docker import DockerEngine

    if not push:
        engine = DockerEngine() if engine_required else DockerEngine.available()
        if engine is not None:
            with engine:
                local = engine.find(lock.content_hash, result.image)
                if local is not None:
                    result.retagged = engine.tag(local, result.image)
                    result.action, result.where, result.id = "reused", "local", local["Id"]
                    result.message = (f"reused {result.image} (local image {local['Id'][7:19]}"
                                      + (", tagged" if result.retagged else "") + ")")  # fmt: skip
                    return True
    digest = registry_digest(result.image)
    if digest:
        result.action, result.where, result.digest = "reused", "registry", digest
        result.pushed = digest if push else None
        result.message = f"reused {result.image} (in the registry, {digest[:19]}…); nothing to build"
        return True
    return False


def _push(engine, ref: str, progress: Progress | None) -> str | None:
    if progress:
        progress(f"pushing {ref}")
    return engine.push(ref)


def rebase(
    spec: Spec,
    lock: Lock,
    *,
    from_image: str,
    platform: str = "linux-64",
    repository: str = "mlenv",
    push: bool = False,
    layout: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> ImageResult:
    """The image of a current, verified lock made from `from_image` (an image of an
    earlier lock that differs only in its base image) without building
    (mlenv.image.rebase.rebase_image), tagged REPO/NAME:SHORT_HASH: pushed to the
    registry of the repository (push), written as an OCI layout, or else loaded into
    the local Engine. Raises RebaseRefused (one line) where a rebase is not sound."""
    from ..oci.client import names_registry
    from .rebase import rebase_image

    t0 = time.perf_counter()
    if platform not in lock.platforms:
        raise LockError(f"{spec.lock_path} has no {platform} packages (it has {', '.join(sorted(lock.platforms))})",
                        hint=f'add "{platform}" to [environment] platforms and run `mlenv lock`')  # fmt: skip
    ref = image_ref(repository, spec.name, lock.short_hash)
    if push and not names_registry(ref):
        raise MlenvError(
            f"--push needs a registry in --repository (e.g. 127.0.0.1:5000/team), not {ref.rsplit('/', 1)[0]!r}"
        )
    load = not (push or layout)
    if load:
        from .docker import DockerEngine

        if DockerEngine.available() is None:
            raise MlenvError("nowhere to put the rebased image: no --push to a registry, no --layout and no local "
                             "Docker Engine", hint="pass --push --repository HOST/NS, or --layout DIR")  # fmt: skip
    res = rebase_image(spec, lock, platform, from_image, push_to=ref if push else None, layout=layout, load=load,
                       load_as=ref, progress=progress)  # fmt: skip
    result = ImageResult(ref, spec.name, lock.content_hash, lock.short_hash, action="rebased", builder="daemonless")
    result.id, result.digest = res.image_id, res.manifest_digest
    result.pushed = res.manifest_digest if push else None
    result.layers = [{"id": x.id, "digest": x.digest, "size": x.size, "cached": x.cached} for x in res.layers]
    result.upload = res.upload
    result.seconds = round(time.perf_counter() - t0, 3)
    where = ", ".join(w for w in ("pushed" if push else "", "loaded" if res.image_id else "",
                                  f"layout {layout}" if layout else "") if w)  # fmt: skip
    result.message = (f"rebased {ref} from {from_image} in {result.seconds:.1f}s ({where}; "
                      f"{res.manifest_digest[:19]}…)")  # fmt: skip
    return result
