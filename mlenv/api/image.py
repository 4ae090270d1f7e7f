"""build / rebase / images / gc: images of locks in a Docker Engine and registries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .progress import Progress
from .results import Image


def build(
    spec: str | os.PathLike[str] | None = None,
    *,
    repository: str = "mlenv",
    push: bool = False,
    force: bool = False,
    no_cache: bool = False,
    ca_bundle: str | None = None,
    platform: str = "linux-64",
    builder: str | None = None,
    dockerfile_only: str | os.PathLike[str] | None = None,
    layout: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    on_step: Progress | None = None,
    on_line: Progress | None = None,
    on_warning: Progress | None = None,
) -> Image:
    """Build (or reuse) the image of mlenv.lock, tagged REPO/NAME:SHORT_HASH.

    The lock must be current for the spec. An image with the lock's content hash is
    reused instead of built: a local one (found by label under any name; tagged) or
    the tag in the registry of `repository`. Options: `builder` (auto, buildkit,
    classic), `ca_bundle` (for mlenv's host-side downloads; never in an image), each
    from its argument, else MLENV_BUILDER / MLENV_CA_BUNDLE, else the settings file.
    `layout`: also write the image as an OCI image layout (daemonless builder): a
    directory, or one deterministic tar file (written atomically) when the path ends in
    `.tar`; asking for a layout always builds (reuse would leave it unwritten)."""
    from ..image.build import build_image
    from ..image.hit import remember
    from ..lockfile import read_lock
    from ..spec import load_spec
    from . import options
    from . import progress as progress_mod

    s = load_spec(options.spec_file(spec))
    lock = read_lock(s.lock_path)
    if lock.spec_hash != s.spec_hash():
        from ..locking import require_current

        require_current(s, lock, path=s.lock_path, doing="build an image of an old lock")
    from ..sources import check_sources

    check_sources(lock, s, where=str(s.lock_path))
    remember(s, lock, platform)  # these bytes are a current, verified pair: the next hit skips this path
    say = progress_mod.default(progress, f"building {s.name}")
    result = build_image(s, lock, platform=platform, repository=repository, push=push, force=force,
                         no_cache=no_cache, ca_bundle=options.ca_bundle(ca_bundle, required=False),
                         builder=options.resolve("builder", builder), dockerfile_only=dockerfile_only, layout=layout,
                         index_urls=options.index_urls(s), progress=say, on_step=on_step,
                         on_line=on_line, on_warning=on_warning)  # fmt: skip
    progress_mod.finish(say, result.message)
    return Image.of(result)


def rebase(
    spec: str | os.PathLike[str] | None = None,
    *,
    from_image: str,
    repository: str = "mlenv",
    push: bool = False,
    layout: str | os.PathLike[str] | None = None,
    platform: str = "linux-64",
    progress: Progress | None = None,
) -> Image:
    """The image of mlenv.lock made from `from_image`, an image of an earlier lock that
    differs from it only in the base image (a patched base: same tag, new digest,
    pinned by `mlenv lock --upgrade`), without building: the new base's layers, the
    old image's environment layers as they are, a new metadata layer. The result is
    byte for byte the image `build(builder="daemonless")` makes of the lock.

    Where it goes: pushed to the registry of `repository` (push=True), written as an
    OCI layout (layout=DIR, or a tar file when it ends in .tar), else loaded into the local Docker Engine; tagged
    REPO/NAME:SHORT_HASH. Allowed only where sound (a self-contained conda env, a new
    base meeting the lock's glibc floor); otherwise a one-line `RebaseRefused` says why
    (e.g. a venv on the base image's Python). docs/build.md#rebase."""
    from ..image.build import rebase as rebase_image
    from ..lockfile import read_lock
    from ..spec import load_spec
    from . import options
    from . import progress as progress_mod

    s = load_spec(options.spec_file(spec))
    lock = read_lock(s.lock_path)
    if lock.spec_hash != s.spec_hash():
        from ..locking import require_current

        require_current(s, lock, path=s.lock_path, doing="rebase an image onto an old lock")
    from ..sources import check_sources

    check_sources(lock, s, where=str(s.lock_path))
    say = progress_mod.default(progress, f"rebasing {s.name}")
    result = rebase_image(s, lock, from_image=from_image, platform=platform, repository=repository, push=push,
                          layout=layout, progress=say)  # fmt: skip
    progress_mod.finish(say, result.message)
    return Image.of(result)


def images(name: str | None = None) -> list[dict]:
    """The local images mlenv built (found by their org.mlenv.content-hash label)."""
    from ..image.docker import DockerEngine

    with DockerEngine() as engine:
        rows = engine.mlenv_images()
    return [r for r in rows if not name or r["name"] == name]


@dataclass
class GcResult:
    daemon: bool
    dry_run: bool = True
    kept: int = 0
    unreferenced: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        if not self.daemon:
            return {"daemon": False, "unreferenced": [], "removed": []}
        return {"daemon": True, "dry_run": self.dry_run, "kept": self.kept, "unreferenced": self.unreferenced,
                "removed": self.removed, "failed": self.failed}  # fmt: skip


def gc(*, registry: str | None = None, yes: bool = False, names: tuple[str, ...] | list[str] = (),
       lock: str | os.PathLike[str] | None = "mlenv.lock") -> GcResult:  # fmt: skip
    """Local mlenv images that no registered version (archived ones included) and no
    `lock` reference; removed with yes=True (default: a dry run)."""
    from pathlib import Path

    from ..image.docker import DockerEngine
    from .registry import open_registry

    engine = DockerEngine.available()
    if engine is None:
        return GcResult(daemon=False)
    with engine:
        with open_registry(registry) as reg:
            keep = set(reg.content_hashes())
        if lock and Path(lock).exists():
            from ..lockfile import read_lock

            keep.add(read_lock(Path(lock), verify=False).content_hash)
        result = GcResult(daemon=True, dry_run=not yes)
        for img in engine.mlenv_images():
            if names and img["name"] not in names:
                continue
            if img["content_hash"] in keep:
                result.kept += 1
                continue
            result.unreferenced.append({"id": img["id"], "tags": img["tags"], "content_hash": img["content_hash"],
                                        "size": img["size"]})  # fmt: skip
        if yes:
            for item in result.unreferenced:
                try:
                    for tag in item["tags"] or [item["id"]]:
                        engine.remove(tag)
                    result.removed.append(item)
                except Exception as exc:  # docker.errors.APIError: in use, conflict
                    from ..runtime.text import clip, first_line

                    result.failed.append({**item, "error": clip(first_line(exc))})
    return result
