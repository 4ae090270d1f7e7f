"""register / list / versions / show / diff / label / archive / restore.

Every read is verified: the stored spec and lock must match their recorded sha256,
and the lock's content hash the version's. Registering requires a current lock and
is idempotent (the same content under the same name returns its version).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..lockfile import Lock, loads_lock
from ..registry import open_registry
from ..registry.base import RegistryError, Version, check_label, parse_ref
from ..registry.verify import read_verified
from .progress import Progress
from .results import Diff, EnvironmentList, Registration, Restored, VersionDetail, VersionList

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"
IMAGE_LOCK = "/opt/mlenv/mlenv.lock"
IMAGE_SPEC = "/opt/mlenv/mlenv.toml"

__all__ = ["open_registry", "register", "environments", "versions", "show", "diff", "label", "label_history",
           "archive", "unarchive", "restore", "read_verified", "write_pair"]  # fmt: skip


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve(reg, text: str) -> Version:
    name, ref = parse_ref(text)
    return reg.resolve(name, ref)


# --- register ---------------------------------------------------------------------------


def register(
    spec: str | os.PathLike[str] | None = None,
    *,
    registry: str | None = None,
    description: str | None = None,
    image: bool = True,
    on_warning=None,
) -> Registration:
    """Record the current spec and lock as the next version of the environment.

    The lock must be current (`check()` passes). Content already registered under
    this name returns its existing version (idempotent; a new description or image
    record updates it). With image=True, a local image built for the lock's content
    hash is recorded (reference and digest) when a Docker daemon answers. The wheels
    mlenv built for the lock (git and local packages) are stored with the version
    (local and OCI registries), so `restore --prefix` elsewhere needs neither git nor
    the sources; a registry that cannot hold them is told to on_warning."""
    from ..errors import LockError
    from ..locking import require_current
    from ..spec import load_spec
    from .options import spec_file

    s = load_spec(spec_file(spec))
    try:
        lock_bytes = s.lock_path.read_bytes()
    except FileNotFoundError:
        raise LockError(f"{s.lock_path}: no such file", hint="run `mlenv lock` first") from None
    spec_bytes = s.path.read_bytes()
    if spec_bytes.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n") != s.text:
        raise LockError(f"{s.path} changed while registering", hint="retry")
    try:
        lock_text = lock_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise LockError(f"{s.lock_path}: not UTF-8 text", hint="`mlenv lock` regenerates it") from None
    lock = loads_lock(lock_text, s.lock_path)
    require_current(s, lock, path=s.lock_path, doing="register an old lock")
    from ..sources import check_sources

    check_sources(lock, s, where=str(s.lock_path))  # a registry entry is someone else's install later
    image_ref = image_digest = None
    if image:
        from ..image.docker import DockerEngine

        engine = DockerEngine.available()
        if engine is not None:
            with engine:
                image_ref, image_digest = engine.built_image(lock.content_hash)
    with open_registry(registry) as reg:
        extra: dict = {}
        built = built_wheels(s, lock)
        if built and reg.holds_artifacts:
            extra["artifacts"] = built
        elif built and on_warning:
            on_warning(f"{reg.url} cannot hold the {len(built)} wheel(s) mlenv built for this lock (git or local "
                       "packages): `restore --prefix` elsewhere rebuilds them from their sources")  # fmt: skip
        result = reg.register(s.name, spec_bytes, lock_bytes, lock.content_hash,
                              description=description if description is not None else "",
                              image=image_ref, image_digest=image_digest, **extra)  # fmt: skip
        v = result.version
        changes: dict = {}
        if not result.created:
            if description is not None and description != v.description:
                changes["description"] = description
            if image_ref and (image_ref != v.image or (image_digest and image_digest != v.image_digest)):
                changes["image"], changes["image_digest"] = image_ref, image_digest
            if changes:
                v = reg.update(v.name, v.version, **changes)
        return Registration(v, result.created, sorted(changes), reg.url)


def built_wheels(spec, lock: Lock) -> dict[str, tuple[str, bytes]]:
    """sha256 -> (file name, bytes) of every wheel mlenv built for the lock (git and local
    packages, every platform), from the artifact cache, rebuilt first when missing."""
    from ..wheelbuild.build import cached
    from ..wheelbuild.ensure import BUILT, ensure

    pkgs = [p for p in lock.packages if p.manager == "pypi" and p.get("source") in BUILT]
    if not pkgs:
        return {}
    ensure(pkgs, project=spec.path.parent, spec=spec)
    out = {}
    for p in pkgs:
        path = cached(p.sha256)
        if path is not None:
            out[p.sha256] = (str(p.get("filename") or f"{p.name}-{p.version}.whl"), path.read_bytes())
    return out


def fetch_built_wheels(reg, v: Version, lock: Lock) -> int:
    """Put the wheels a registered version carries (git and local packages) into the
    artifact cache, each checked against its sha256; how many were fetched."""
    from ..wheelbuild.build import cached, store
    from ..wheelbuild.ensure import BUILT

    got = 0
    for p in lock.packages:
        if p.manager != "pypi" or p.get("source") not in BUILT or cached(p.sha256) is not None:
            continue
        data = reg.read_artifact(v, p.sha256)
        if data is not None and hashlib.sha256(data).hexdigest() == p.sha256:
            store(data, p.sha256)
            got += 1
    return got


# --- reads -------------------------------------------------------------------------------


def environments(*, registry: str | None = None, include_archived: bool = False) -> EnvironmentList:
    """Registered environments (archived ones with include_archived)."""
    with open_registry(registry) as reg:
        return EnvironmentList(reg.url, reg.summary(include_archived=include_archived))


def versions(name: str, *, registry: str | None = None, include_archived: bool = False) -> VersionList:
    """The versions of an environment, ascending (archived ones with include_archived)."""
    with open_registry(registry) as reg:
        vs = reg.versions(name.partition("@")[0])
        if not include_archived:
            vs = [v for v in vs if not v.archived]
        return VersionList(name, reg.url, vs)


def show(ref: str, *, registry: str | None = None) -> VersionDetail:
    """One version (NAME@3, NAME@latest, NAME@label, NAME@<hash prefix>): spec, lock, record."""
    with open_registry(registry) as reg:
        v = resolve(reg, ref)
        spec_bytes, _, lock = read_verified(reg, v)
    return VersionDetail(v, spec_bytes.decode("utf-8", errors="replace"), lock)


def diff(left: str, right: str, *, registry: str | None = None) -> Diff:
    """What changed between two versions: packages per platform, python, base, variables."""
    from ..registry.diff import diff_locks

    with open_registry(registry) as reg:
        a, b = resolve(reg, left), resolve(reg, right)
        _, _, la = read_verified(reg, a)
        _, _, lb = read_verified(reg, b)
    return Diff(a.ref, b.ref, diff_locks(la, lb), a, b)


def label(ref: str, name: str, *, registry: str | None = None) -> tuple[Version, int | None]:
    """Point label `name` at the version `ref` (moving it); (version, where it pointed before)."""
    check_label(name)
    env, version_ref = parse_ref(ref)
    if "@" not in ref:
        raise RegistryError(f"{ref!r}: say which version gets the label", hint=f"e.g. `mlenv label {env}@3 {name}`")
    with open_registry(registry) as reg:
        v = reg.resolve(env, version_ref)
        before = reg.labels(env).get(name)
        reg.set_label(env, v.version, name)
        return v, before


def label_history(env: str, name: str, *, registry: str | None = None) -> list[tuple[str, int]]:
    """(time, version) moves of a label, oldest first."""
    with open_registry(registry) as reg:
        return reg.label_history(parse_ref(env)[0], name)


def _set_archived(ref: str, registry: str | None, archived: bool) -> str:
    with open_registry(registry) as reg:
        name, version_ref = parse_ref(ref)
        if "@" not in ref:
            reg.set_archived(name, None, archived)
            return name
        if archived or not version_ref.isdigit():
            number = reg.resolve(name, version_ref).version
        else:
            number = int(version_ref)
        reg.set_archived(name, number, archived)
        return f"{name}@{number}"


def archive(ref: str, *, registry: str | None = None) -> str:
    """Hide an environment (NAME) or one version (NAME@V) from list and latest; restorable."""
    return _set_archived(ref, registry, True)


def unarchive(ref: str, *, registry: str | None = None) -> str:
    return _set_archived(ref, registry, False)


# --- restore ---------------------------------------------------------------------------


def write_pair(into: Path, spec_bytes: bytes, lock_bytes: bytes, *, force: bool, known: set[str]) -> list[str]:
    """Write mlenv.toml and mlenv.lock into `into`, both or neither, also when the
    process is killed (mlenv.runtime.journal: the next mlenv command in that directory
    completes an interrupted write).

    An existing file is replaced only when it is identical, when its bytes are a
    registered version's (nothing is lost: `known` holds those sha256s), or with
    force. Returns the names written."""
    from ..runtime.journal import recover, write_files

    recover(into)
    targets = [(into / "mlenv.toml", spec_bytes), (into / "mlenv.lock", lock_bytes)]
    files: dict[str, bytes] = {}
    old_sha: dict[str, str | None] = {}
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
                                hint="commit or move it, restore --into another directory, or pass --force")  # fmt: skip
        files[path.name] = data
        old_sha[path.name] = _sha256(old) if old is not None else None
    if files:
        write_files(into, files, old_sha)
    return list(files)


def read_from_image(reference: str) -> tuple[bytes, bytes, str, str | None]:
    """(spec bytes, lock bytes, content hash, name) from an image mlenv built (a
    created, never started container; the files copied out), checked against the
    image's content-hash label."""
    from ..errors import MlenvError
    from ..image.docker import DockerEngine, norm_hash

    with DockerEngine() as engine:
        info = engine.image(reference)
        if info is None:
            try:
                engine.pull(reference)
            except MlenvError as exc:
                why = str(exc).removeprefix(f"could not pull {reference}: ")
                raise RegistryError(f"image {reference} is not local and could not be pulled ({why})") from None
            info = engine.image(reference) or {}
        labels = (info.get("Config") or {}).get("Labels") or {}
        expected = norm_hash(labels.get(LABEL_HASH))
        if not expected:
            raise RegistryError(f"image {reference} was not built by mlenv (no {LABEL_HASH} label)")
        files = {}
        for path in (IMAGE_SPEC, IMAGE_LOCK):
            data = engine.read_file(info.get("Id", reference), path)
            if data is None:
                raise RegistryError(f"image {reference} has no file {path}")
            files[path] = data
    try:
        lock = loads_lock(files[IMAGE_LOCK].decode("utf-8"), f"{reference}:{IMAGE_LOCK}")
    except UnicodeDecodeError:
        raise RegistryError(f"image {reference}: {IMAGE_LOCK} is not UTF-8 text") from None
    if lock.content_hash != expected:
        raise RegistryError(f"image {reference}: {IMAGE_LOCK} has content hash {lock.content_hash[:19]}…, "
                            f"the image label says {expected[:19]}…; refusing to restore it")  # fmt: skip
    return files[IMAGE_SPEC], files[IMAGE_LOCK], expected, labels.get(LABEL_NAME)


def fetch_version(ref: str, *, registry: str | None = None,
                  wheels: bool = False) -> tuple[Version, bytes, bytes, Lock, set[str]]:  # fmt: skip
    """(version, spec bytes, lock bytes, lock, sha256s of every version's files) of a
    registered version, verified; `ref` may be a full azureml://.../environments/NAME@V.
    wheels: also put the built wheels the version carries into the artifact cache."""
    if ref.startswith("azureml://"):
        from ..registry.azureml import split_ref

        parts = split_ref(ref)
        if parts is None:
            raise RegistryError(f"{ref!r}: expected azureml://subscriptions/S/resourceGroups/R/workspaces/W/"
                                "environments/NAME@V")  # fmt: skip
        registry, ref = parts
    with open_registry(registry) as reg:
        v = resolve(reg, ref)
        spec_bytes, lock_bytes, lock = read_verified(reg, v)
        known = {s for x in reg.versions(v.name) for s in (x.spec_sha256, x.lock_sha256)}
        if wheels:
            fetch_built_wheels(reg, v, lock)
    return v, spec_bytes, lock_bytes, lock, known


def _check_pair(spec_bytes: bytes, lock: Lock, into: Path, where: str) -> None:
    """The sources rule (mlenv.sources) for a pair about to be restored and installed."""
    from ..errors import MlenvError
    from ..sources import check_sources
    from ..spec import parse_spec

    try:
        spec = parse_spec(spec_bytes.decode("utf-8"), into / "mlenv.toml")
    except (MlenvError, UnicodeDecodeError):
        spec = None  # install reads the lock alone then
    check_sources(lock, spec, where=f"{where}:mlenv.lock")


def restore(
    ref: str | None = None,
    *,
    registry: str | None = None,
    into: str | os.PathLike[str] = ".",
    force: bool = False,
    prefix: str | os.PathLike[str] | None = None,
    pull: bool = False,
    from_image: str | None = None,
    ca_bundle: str | None = None,
    progress: Progress | None = None,
    on_warning=None,
) -> Restored:
    """Write the spec and lock of a registered version (or of an image mlenv built),
    exactly as registered: every byte verified before anything is written, both files
    or neither. Optionally pull the recorded image by digest and install into prefix."""
    into_dir = Path(into)
    if from_image:
        if ref:
            raise RegistryError("give either NAME@VERSION or --from-image, not both")
        spec_bytes, lock_bytes, content_hash, name = read_from_image(from_image)
        if prefix:
            _check_pair(spec_bytes, loads_lock(lock_bytes.decode("utf-8"), from_image), into_dir, from_image)
        written = write_pair(into_dir, spec_bytes, lock_bytes, force=force, known=set())
        result = Restored(written, into_dir, content_hash, from_image, name=name)
    else:
        if not ref:
            raise RegistryError("say what to restore: NAME@VERSION (or --from-image IMAGE)")
        # with --prefix, the wheels mlenv built for this version come with it: no git, no sources needed
        v, spec_bytes, lock_bytes, lock, known = fetch_version(ref, registry=registry, wheels=bool(prefix))
        if prefix:  # refuse what install would refuse before writing anything
            _check_pair(spec_bytes, lock, into_dir, v.ref)
        written = write_pair(into_dir, spec_bytes, lock_bytes, force=force, known=known)
        result = Restored(written, into_dir, v.content_hash, v.ref, version=v, name=v.name)
    if pull:
        recorded = result.version
        if recorded is None or not (recorded.image and recorded.image_digest):
            if on_warning:
                on_warning("no image digest was recorded for this version; nothing to pull")
        else:
            from ..image.docker import DockerEngine
            from ..image_ref import parse

            pinned = f"{parse(recorded.image).name}@{recorded.image_digest}"
            with DockerEngine() as engine:
                engine.pull(pinned)
            result.pulled = pinned
    if prefix:
        from .install import install

        result.installed = install(prefix, lock=into_dir / "mlenv.lock", ca_bundle=ca_bundle, progress=progress,
                                   on_warning=on_warning)  # fmt: skip
    return result


# --- search --------------------------------------------------------------------------


def search(query: str, *, registry: str | None = None, platform: str | None = None,
           include_archived: bool = False, reindex: bool = False):  # fmt: skip
    """Every registered version whose lock holds a package matching `query`: `numpy`,
    `numpy==1.26.4`, `urllib3<2.2.2`, `conda:openssl>=3`, `pypi:torch~=2.5` (PEP 440;
    names normalized; a conda package is also found under the PyPI name it provides).
    Answered from a derived index keyed by lock sha256 (docs/ui.md)."""
    from ..ui.catalog import Catalog
    from .results import Found

    with Catalog.open(registry) as catalog:
        if reindex:
            catalog.reindex()
        return Found(catalog.search(query, platform=platform, include_archived=include_archived), catalog.label)
