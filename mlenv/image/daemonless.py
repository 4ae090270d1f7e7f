"""The daemonless builder: the image of a lock, written by mlenv itself, no Engine.

    build(spec, lock, platform, *, store, push_to, layout, load, ...) -> BuildResult

1. reuse: with push_to, one manifest HEAD of `push_to` (a registry that has the
   tag means nothing is built); with load, a local Engine image carrying the
   content-hash label;
2. the base image by the lock's pinned digest into the blob store
   (mlenv.image.transport), and the facts read off its files (basefacts);
3. the lock's artifacts into mlenv's artifact cache (sha256-checked);
4. the layer plan (mlenv.image.layering); each layer's *cache key* is a digest of
   everything its bytes depend on (artifact sha256s, platform, prefix, Python X.Y,
   the pyc compiler's version, installer/rattler/compressor versions); a key found
   in `<cache>/layers/` whose blob is in the store is not built again;
5. the missing layers: materialized on the host (mlenv.image.materialize), tar +
   gzip (mlenv.oci.layer), into the store;
6. config + manifest (mlenv.oci.image): base config, PATH/MLENV_PREFIX/[variables],
   labels, fixed `created`;
7. outputs: push (HEAD per blob, mount, upload, then the manifest under the tag),
   an OCI layout, a load into the local Engine.

Layers, in order: base; `skeleton` (the venv's pyvenv.cfg and python links, or
conda-meta/history); the planned environment layers; `unowned` (files of the
conda prefix no single package owns, if any); `metadata` (/opt/mlenv/mlenv.lock
and mlenv.toml). Layer descriptors carry the annotation `org.mlenv.layer` (which
units the layer holds), which costs nothing in the blobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import MlenvError
from ..oci.layer import FIXED_MTIME, Entry, compressor_version, write_layer
from ..oci.store import OCI_LAYER_GZIP, BlobStore, Descriptor, default_store
from .engine import Builder, Built
from .materialize import PREFIX, materialize_conda, materialize_wheels

LAYER_FORMAT = "mlenv-daemonless-layer-v1"
APT_LAYER_FORMAT = "mlenv-daemonless-apt-layer-v1"  # with the .debs' sha256 and the base digest: the apt layer's key
LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"
LABEL_BUILDER = "org.mlenv.builder"
LABEL_PYC = "org.mlenv.pyc"
ANNOTATION_LAYER = "org.mlenv.layer"


@dataclass
class LayerInfo:
    id: str
    digest: str
    diff_id: str
    size: int  # compressed
    uncompressed: int
    cached: bool = False  # came from the layer cache (not built in this run)


@dataclass
class BuildResult:
    reference: str | None
    content_hash: str
    platform: str
    manifest_digest: str | None = None
    config_digest: str | None = None
    layers: list[LayerInfo] = field(default_factory=list)
    base_layers: int = 0
    reused: str | None = None  # "registry" | "local" | None (built)
    upload: dict | None = None
    image_id: str | None = None
    layout: str | None = None
    pyc: str = "none"
    pycs: dict = field(default_factory=dict)  # .pyc files compiled / reused from the pyc cache by this run
    rebase: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _say(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda msg: None)


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    from ..runtime.fetch import default_cache_root

    return Path(cache_dir) if cache_dir else default_cache_root()


def base_reference(lock) -> str:
    ref = lock.image.get("reference") or lock.image.get("base")
    if not ref:
        raise MlenvError("mlenv.lock names no base image", hint="set [image] base and run `mlenv lock`")
    return ref


def labels_for(spec, lock, platform: str, *, rebase: str, floor: str | None, pyc: str, base_layers: int) -> dict:
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.description": spec.description or f"mlenv environment {spec.name}",
        "org.opencontainers.image.version": lock.short_hash,
        "org.opencontainers.image.base.name": lock.image.get("reference") or lock.image.get("base") or "",
        LABEL_HASH: lock.content_hash,
        LABEL_NAME: spec.name,
        "org.mlenv.platform": platform,
        "org.mlenv.prefix": PREFIX,
        LABEL_BUILDER: "daemonless",
        LABEL_PYC: pyc,
    }
    from .rebasable import LABEL_BASE_LAYERS, LABEL_FLOOR, LABEL_REBASE

    labels[LABEL_REBASE] = rebase
    labels[LABEL_BASE_LAYERS] = str(base_layers)
    if floor:
        labels[LABEL_FLOOR] = floor
    if lock.image.get("digest"):
        labels["org.opencontainers.image.base.digest"] = lock.image["digest"]
    return labels


def env_updates(lock, base_config: dict, needs_env: bool) -> list[tuple[str, str]]:
    from ..oci.image import DEFAULT_PATH, env_value

    out: list[tuple[str, str]] = []
    if needs_env:
        base_path = env_value(list((base_config.get("config") or {}).get("Env") or []), "PATH") or DEFAULT_PATH
        out += [("PATH", f"{PREFIX}/bin:{base_path}"), ("MLENV_PREFIX", PREFIX)]
    out += sorted(lock.variables.items())
    return out


def _key(payload: dict) -> str:
    from ..oci.manifest import canonical_json

    return hashlib.sha256(canonical_json(payload)).hexdigest()


class LayerCache:
    """<cache>/layers/<key>.json -> a layer blob in the store, built from exactly those inputs."""

    def __init__(self, root: Path, store: BlobStore):
        self.dir = root / "layers"
        self.store = store

    def get(self, key: str) -> LayerInfo | None:
        try:
            data = json.loads((self.dir / f"{key}.json").read_text())
            info = LayerInfo(**data)
        except (OSError, ValueError, TypeError):
            return None
        if info.digest and not self.store.has(info.digest):
            return None
        try:
            os.utime(self.dir / f"{key}.json")  # used: its mtime is its last use (`mlenv cache prune`)
        except OSError:
            pass
        info.cached = True
        return info

    def put(self, key: str, info: LayerInfo) -> None:
        from ..runtime.fsutil import atomic_write

        data = {k: v for k, v in asdict(info).items() if k != "cached"}
        # no fsync: a torn record is not JSON (a miss), and an fsync here would flush the blob just written
        atomic_write(self.dir / f"{key}.json", json.dumps(data, sort_keys=True), sync=False)


def _write(entries: list[Entry], store: BlobStore, layer_id: str, pool, early=None) -> LayerInfo:
    layer = write_layer(entries, store, pool=pool)
    if early is not None:
        early.submit(layer.descriptor)
    return LayerInfo(layer_id, layer.descriptor.digest, layer.diff_id, layer.descriptor.size, layer.size)


def _version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def _versions() -> dict:
    return {"installer": _version("installer"), "rattler": _version("py-rattler"), "compressor": compressor_version()}


def build(
    spec,
    lock,
    platform: str = "linux-64",
    *,
    store: BlobStore | None = None,
    push_to: str | None = None,
    layout: str | os.PathLike[str] | None = None,
    load: bool = False,
    force: bool = False,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    index_urls: tuple[str, ...] = (),
    ca_bundle: str | None = None,
    artifacts: dict[str, Path] | None = None,
    min_layer_bytes: int | None = None,
    load_as: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """The image of lock for platform (linux-64 / linux-aarch64), with no daemon.

    push_to: an image reference (`host[:port]/repo[:tag]`, tag default: the short
    hash) to reuse from (one HEAD) or push to; layout: a directory for an OCI image
    layout, or a tar file of one when the path ends in `.tar`; load: load into the local Engine (and reuse a local image with the
    content-hash label); artifacts: sha256 -> verified file, for artifacts the caller
    already fetched (the others are fetched). workers: processes compiling .pyc and
    threads installing wheels and compressing (default: the CPU count); the bytes do
    not depend on it. Raises MlenvError with one line on bad input."""
    from ..installing import needs_interpreter
    from . import layering, transport
    from .basefacts import read_facts
    from .materialize import (
        check_venv_python,
        conda_skeleton,
        metadata_entries,
        python_target,
        refuse_unbuildable,
        venv_skeleton,
    )
    from .rebasable import contract, glibc_floor

    t0 = time.perf_counter()
    say = _say(progress)
    reference = _reference(push_to, lock) if push_to else None
    result = BuildResult(reference, lock.content_hash, platform)
    if not force and not layout:  # a layout asked for is written, even when the image exists elsewhere
        if reference:
            digest = transport.head(reference)
            if digest:
                result.reused, result.manifest_digest = "registry", digest
                result.seconds = round(time.perf_counter() - t0, 3)
                return result
        if load:
            local = _local_image(lock.content_hash)
            if local:
                result.reused, result.image_id = "local", local
                result.seconds = round(time.perf_counter() - t0, 3)
                return result
    refuse_unbuildable(lock, platform)
    store = store or default_store()
    root = cache_root(cache_dir)
    workers = max(1, workers or os.cpu_count() or 1)

    needs_env = bool(lock.for_platform(platform, "conda")) or needs_interpreter(lock, platform)
    conda_pkgs = lock.for_platform(platform, "conda")
    pypi_pkgs = lock.for_platform(platform, "pypi")
    apt_pkgs = lock.for_platform(platform, "apt")
    venv = needs_interpreter(lock, platform) and not any(p.name == "python" for p in conda_pkgs)

    def base_and_facts():
        # in the background: nothing below needs the base until the layers are assembled
        # (a venv is materialized for the lock's Python X.Y, checked against the base after)
        base = transport.pull(base_reference(lock), platform, store, expect=lock.image.get("digest"))
        facts = (
            read_facts(store, base.manifest, base.config, lock.image.get("python"), cache_dir=root) if venv else None
        )
        return base, facts

    from concurrent.futures import Future, ThreadPoolExecutor

    say(f"base image {base_reference(lock)}")
    # the base (pull, facts), the apt layer (waits for the base) and the conda link: none waits for another slot
    background = ThreadPoolExecutor(max_workers=3, thread_name_prefix="mlenv-base")
    base_future = background.submit(base_and_facts)
    first = None if (not venv or lock.platform_python(platform)) else base_future.result()
    target = python_target(lock, platform, first[1] if first else None)
    pyc = f"cpython-{target.compiler.xy} checked-hash marshal-2" if target and target.compiler else "none"
    result.pyc = pyc

    artifacts = _artifacts(conda_pkgs + pypi_pkgs, apt_pkgs, artifacts, root if cache_dir else None, index_urls,
                           ca_bundle, say)  # fmt: skip
    units = _units(lock, platform, artifacts)
    threshold = min_layer_bytes or int(os.environ.get("MLENV_LAYER_MIN_BYTES") or layering.OWN_LAYER_MIN_BYTES)
    versions = _versions()
    common = {
        "format": LAYER_FORMAT,
        "platform": platform,
        "prefix": PREFIX,
        "mtime": FIXED_MTIME,
        "python": target.version if target else None,
        "pyc": target.compiler.version if target and target.compiler else None,
        **versions,
    }
    conda_set = sorted(p.sha256 for p in conda_pkgs)
    by_id = {u: p for p in conda_pkgs + pypi_pkgs for u in [_unit_id(p)]}
    cache = LayerCache(root, store)
    infos: dict[str, LayerInfo] = {}
    entries: dict[str, list[Entry]] = {}
    unowned: list[Entry] | None = None
    staging = Path(tempfile.mkdtemp(prefix="mlenv-daemonless-"))
    gzip_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlenv-gzip") if workers > 1 else None
    # layers are written one at a time, each as soon as its packages are ready, while others still compile
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlenv-layer")
    # with a registry to push to, every layer blob goes up as soon as it exists (the manifest last)
    early = (
        transport.early_push(store, reference, _mount_sources(base_reference(lock), reference)) if reference else None
    )
    compiler = target.compiler if target is not None else None
    from .pyc import CompilePool, PycCache

    compile_pool = CompilePool(compiler, workers) if compiler is not None else None
    pyc_cache = PycCache(root, compiler) if compiler is not None else None

    def write(layer_id: str, layer_entries: list[Entry], key: str | None) -> LayerInfo:
        info = _write(layer_entries, store, layer_id, gzip_pool, early)
        if key is not None:
            cache.put(key, info)
        return info

    def hit(layer_id: str, key: str) -> LayerInfo | None:
        got = cache.get(key)
        if got is not None:
            got.id = layer_id
            if early is not None and got.digest:
                early.submit(Descriptor(OCI_LAYER_GZIP, got.digest, got.size))
        return got

    apt_future: Future[LayerInfo] | None = None
    if apt_pkgs:

        def apt_layer() -> LayerInfo:
            # its bytes depend on the .debs and on the base (its dpkg status, its symlinked directories)
            base_id = lock.image.get("digest") or [d["digest"] for d in base_future.result()[0].manifest["layers"]]
            apt_key = _key({**{k: common[k] for k in ("platform", "mtime", "compressor")}, "format": APT_LAYER_FORMAT,
                            "debs": sorted(p.sha256 for p in apt_pkgs), "base": base_id,
                            "python-debian": _version("python-debian")})  # fmt: skip
            got = hit("apt", apt_key)
            if got is not None:
                return got
            from .debs import apt_layer_entries

            base, _ = base_future.result()
            say(f"unpacking {len(apt_pkgs)} Debian packages")
            debs = [artifacts[p.sha256] for p in sorted(apt_pkgs, key=lambda p: (p.name, p.sha256))]
            return write("apt", apt_layer_entries(debs, store, base.manifest, staging / "apt"), apt_key)

        apt_future = background.submit(apt_layer)

    def prepare(plan: list) -> None:
        """Every layer of plan into infos: from the layer cache, else materialized and written."""
        nonlocal unowned
        keys: dict[str, str] = {}
        for layer in plan:
            shas = sorted(by_id[u].sha256 for u in layer.units)
            extra = {"conda": conda_set} if layer.manager == "conda" else {}
            keys[layer.id] = _key({**common, **extra, "layer": layer.id, "units": layer.units, "sha256": shas})
        if conda_pkgs:
            keys["unowned"] = _key({**common, "conda": conda_set, "layer": "unowned"})
        for lid, key in keys.items():
            got = hit(lid, key) if lid not in infos else None
            if got is not None:
                infos[lid] = got
        missing = [layer for layer in plan if layer.id not in infos]
        say(f"{len(plan)} environment layers, {len(plan) - len(missing)} from the layer cache")
        by_unit = {u: layer for layer in missing for u in layer.units}
        waiting = {layer.id: set(layer.units) for layer in missing}
        writes: dict[str, Future[LayerInfo]] = {}
        guard = threading.Lock()

        def write_layer(layer) -> LayerInfo:
            info = write(layer.id, [e for u in layer.units for e in entries[u]], keys[layer.id])
            with guard:
                for u in layer.units:  # written: its bytes are not needed in memory any more
                    entries.pop(u, None)
            return info

        def on_unit(uid: str, unit_entries: list[Entry]) -> None:
            with guard:
                entries[uid] = unit_entries
                layer = by_unit.get(uid)
                if layer is None:
                    return
                waiting[layer.id].discard(uid)
                if not waiting[layer.id] and layer.id not in writes:
                    writes[layer.id] = writer.submit(write_layer, layer)

        for uid in list(entries):  # a smaller plan after the first (the base has many layers)
            on_unit(uid, entries[uid])
        need_conda = any(layer.manager == "conda" for layer in missing) or (
            "unowned" in keys and "unowned" not in infos
        )
        conda_future = None
        if need_conda and unowned is None:
            say(f"linking {len(conda_pkgs)} conda packages ({platform})")
            conda_future = background.submit(materialize_conda, conda_pkgs, platform, artifacts, staging / "conda",
                                             rattler_cache=root / "rattler-pkgs", target=target,
                                             pool=compile_pool)  # fmt: skip
        want_pypi = [by_id[u] for layer in missing if layer.manager == "pypi" for u in layer.units if u not in entries]
        try:
            if want_pypi:
                assert target is not None
                say(f"installing {len(want_pypi)} wheels" + (" and compiling .pyc" if compiler else ""))
                made = materialize_wheels(want_pypi, artifacts, staging / "pypi", target, workers=workers,
                                          pool=compile_pool, cache=pyc_cache, on_unit=on_unit)  # fmt: skip
                for k, n in (("compiled", made.pyc_compiled), ("reused", made.pyc_reused)):
                    result.pycs[k] = result.pycs.get(k, 0) + n
                if compiler:
                    say(f".pyc: {made.pyc_compiled} compiled, {made.pyc_reused} from the pyc cache")
            if conda_future is not None:
                linked = conda_future.result()
                for uid, unit_entries in linked.units.items():
                    on_unit(uid, unit_entries)
                unowned = linked.unowned
        finally:
            for fut in list(writes.values()):  # every write started ends (or fails) before anything else
                fut.exception()
        left = [layer.id for layer in missing if layer.id not in writes]
        if left:
            raise MlenvError(f"internal error: layers {', '.join(left)} were never materialized")
        for lid, fut in writes.items():
            infos[lid] = fut.result()
            say(f"wrote layer {lid}")
        if "unowned" in keys and "unowned" not in infos:
            infos["unowned"] = write("unowned", unowned, keys["unowned"]) if unowned else LayerInfo(
                "unowned", "", "", 0, 0)  # fmt: skip
            if not unowned:
                cache.put(keys["unowned"], infos["unowned"])

    try:
        # the usual budget first; a base with very many layers (known once pulled) asks for a smaller one
        extra_layers = 4 if apt_pkgs else 3
        plan = layering.plan(list(units.values()), max_layers=layering.MAX_ENV_LAYERS, min_bytes=threshold)
        prepare(plan)
        base, facts = base_future.result()
        allowed = layering.budget(len(base.manifest["layers"]), extra=extra_layers)
        if allowed < 2:
            raise MlenvError(
                f"the base image has {len(base.manifest['layers'])} layers: no room for the environment's layers",
                hint="use a base image with fewer layers (squash it)",
            )
        if len(plan) > allowed:
            plan = layering.plan(list(units.values()), max_layers=allowed, min_bytes=threshold)
            prepare(plan)
        if venv and target is not None:
            check_venv_python(target, facts, lock, platform)
        skeleton: list[Entry] = []
        if venv and target is not None:
            skeleton = venv_skeleton(facts, target.version)
        elif conda_pkgs:
            skeleton = conda_skeleton()
        from ..runtime.secrets import scrub

        meta = metadata_entries(lock.dumps(), scrub(spec.text))
        ordered: list[LayerInfo] = []
        if apt_future is not None:
            ordered.append(apt_future.result())
        if skeleton:
            ordered.append(write("skeleton", skeleton, None))
        ordered += [infos[layer.id] for layer in plan]
        if infos.get("unowned") and infos["unowned"].digest:
            ordered.append(infos["unowned"])
        ordered.append(write("metadata", meta, None))
    except BaseException:
        if early is not None:
            early.cancel()
        raise
    finally:
        if compile_pool is not None:
            compile_pool.close()
        writer.shutdown(wait=True, cancel_futures=True)
        background.shutdown(wait=True, cancel_futures=True)
        if gzip_pool is not None:
            gzip_pool.shutdown(wait=True)
        shutil.rmtree(staging, ignore_errors=True)
    floor, _ = glibc_floor(lock, platform)
    labels = labels_for(
        spec,
        lock,
        platform,
        rebase=contract(lock, platform, target),
        floor=floor,
        pyc=pyc,
        base_layers=len(base.manifest["layers"]),
    )
    result.rebase = labels["org.mlenv.rebase"]
    return _finish(
        result,
        store,
        base,
        ordered,
        lock,
        platform,
        labels,
        env_updates(lock, base.config, needs_env),
        push_to=reference,
        layout=layout,
        load=load,
        t0=t0,
        say=say,
        early=early,
        load_as=load_as,
    )


def _artifacts(pkgs, debs, given: dict[str, Path] | None, cache_root_dir: Path | None, index_urls, ca_bundle,
               say) -> dict[str, Path]:  # fmt: skip
    """sha256 -> verified file for every conda/PyPI artifact and .deb: those the caller
    already fetched (and verified), the others fetched now."""
    from ..installing import fetch as fetch_artifacts

    out = dict(given or {})
    todo = [p for p in pkgs if p.sha256 not in out]
    if todo:
        say(f"fetching {len(todo)} artifacts")
        out.update(fetch_artifacts(todo, cache=cache_root_dir / "artifacts" / "sha256" if cache_root_dir else None,
                                   index_urls=index_urls, ca_bundle=ca_bundle, progress=say))  # fmt: skip
    todo_debs = [p for p in debs if p.sha256 not in out]
    if todo_debs:
        from ..apt.fetch import fetch_debs

        out.update(fetch_debs(todo_debs, ca_bundle=ca_bundle, progress=say))
    return out


def _finish(
    result: BuildResult,
    store: BlobStore,
    base,
    ordered: list[LayerInfo],
    lock,
    platform: str,
    labels: dict,
    env: list[tuple[str, str]],
    *,
    push_to: str | None,
    layout,
    load: bool,
    t0: float,
    say,
    early=None,
    load_as: str | None = None,
) -> BuildResult:
    from ..oci.image import NewLayer, assemble
    from ..oci.store import OCI_LAYER_GZIP
    from . import transport

    new = [
        NewLayer(
            Descriptor(OCI_LAYER_GZIP, li.digest, li.size, annotations={ANNOTATION_LAYER: li.id}),
            li.diff_id,
            f"mlenv daemonless: {li.id}",
        )
        for li in ordered
    ]
    annotations = {
        "org.opencontainers.image.base.name": labels["org.opencontainers.image.base.name"],
        "org.opencontainers.image.base.digest": base.digest,
    }
    assembled = assemble(
        store,
        base.config,
        base.manifest,
        new,
        platform=platform,
        env=env,
        labels=labels,
        annotations=annotations,
        history_note=f"mlenv daemonless: ENV {' '.join(k for k, _ in env)}; LABEL org.mlenv.*",
    )
    result.manifest_digest = assembled.manifest.digest
    result.config_digest = assembled.config.digest
    result.layers = ordered
    result.base_layers = len(base.manifest["layers"])
    if push_to:
        say(f"pushing {push_to}")
        mount = _mount_sources(base.reference, push_to)
        pushed = transport.push(store, assembled.manifest.digest, push_to, mount_from=mount, early=early)
        result.upload = transport.upload_summary(push_to, pushed)
    if layout:
        result.layout = str(
            transport.write_layout(store, assembled.manifest.digest, Path(layout), push_to or load_as or "")
        )
    if load:
        say("loading into the local Engine")
        ref = load_as or push_to or f"mlenv/{labels[LABEL_NAME]}:{lock.short_hash}"
        result.image_id = transport.load(store, assembled.manifest.digest, ref)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _mount_sources(base_ref: str, target: str) -> list[str]:
    """The base's repository, when it is on the registry pushed to: its blobs are mounted, not uploaded."""
    from .. import image_ref

    try:
        b, t = image_ref.parse(base_ref), image_ref.parse(target)
    except ValueError:
        return []
    return [b.repository] if b.registry == t.registry and b.repository != t.repository else []


def _reference(push_to: str, lock) -> str:
    from .. import image_ref

    try:
        ref = image_ref.parse(push_to)
    except ValueError as exc:
        raise MlenvError(f"bad image reference {push_to!r}: {exc}", hint="use host[:port]/repository[:tag]") from None
    last = push_to.rsplit("/", 1)[-1]
    if ref.digest:
        raise MlenvError(f"{push_to}: push to a tag, not a digest")
    if ":" not in last:
        return f"{push_to}:{lock.short_hash}"
    return push_to


def _local_image(content_hash: str) -> str | None:
    from .docker import DockerEngine

    try:
        found = DockerEngine().find(content_hash)
    except Exception:  # no reachable Engine, or any answer it cannot give: nothing to reuse
        return None
    return found["Id"] if found else None


def _unit_id(pkg) -> str:
    from ..solve.names import normalize

    return f"conda/{pkg.name}" if pkg.manager == "conda" else f"pypi/{normalize(pkg.name)}"


def _units(lock, platform: str, artifacts: dict[str, Path]) -> dict:
    from ..solve.names import normalize
    from .context import _direct_names
    from .layering import Unit

    direct = _direct_names(lock)
    out = {}
    for pkg in lock.for_platform(platform):
        if pkg.manager not in ("conda", "pypi"):
            continue  # .debs are the apt layer, not units
        uid = _unit_id(pkg)
        size = artifacts[pkg.sha256].stat().st_size
        out[uid] = Unit(uid, pkg.manager, pkg.name, size, pkg.manager == "pypi" and normalize(pkg.name) in direct)
    return out


def image_reference(repository: str, name: str, short_hash: str) -> str:
    return f"{repository.rstrip('/')}/{name}:{short_hash}"


class DaemonlessBuilder(Builder):
    """The `daemonless` builder behind mlenv.image.engine: the image written by mlenv itself
    (no Docker Engine, no privileges), then pushed to the registry of the reference
    (--push), written as an OCI layout (--layout) and/or loaded into a local Engine."""

    name = "daemonless"
    writes_dockerfile = False

    @classmethod
    def unavailable(cls) -> str | None:
        return None  # needs nothing of the machine but a base image it can read

    def refuses(self, job) -> str | None:
        from .materialize import refuse_link_scripts, refuse_unbuildable

        try:
            refuse_unbuildable(job.lock, job.platform)
            refuse_link_scripts(job.lock, job.platform, job.artifacts)
            debs = [job.artifacts[p.sha256] for p in job.lock.for_platform(job.platform, "apt")]
            if debs:
                from .debs import script_refusal

                reason = script_refusal(debs)
                if reason:
                    return reason
        except MlenvError as exc:
            return exc.message
        except KeyError as exc:
            return f"the .deb {exc} was not fetched"
        if not (job.push_to or job.layout or job.engine):
            return "nowhere to put the image: no --push to a registry, no --layout and no local Docker Engine"
        return None

    def render(self, job, directory: Path) -> None:
        raise MlenvError("the daemonless builder writes no Dockerfile", hint="use --builder buildkit or classic")

    def build(self, job):
        from .engine import BuildLog

        log = BuildLog()

        def say(message: str) -> None:
            log.lines.append(message)
            if job.on_step:
                job.on_step(message)

        load = job.load or (job.engine and not job.push_to and not job.layout)
        res = build(job.spec, job.lock, job.platform, push_to=job.push_to, layout=job.layout, load=load, force=True,
                    index_urls=job.index_urls, ca_bundle=job.ca_bundle, artifacts=job.artifacts,
                    load_as=job.ref, progress=say)  # fmt: skip
        log.image_id = res.image_id or res.config_digest
        layers = [{"id": x.id, "digest": x.digest, "size": x.size, "cached": x.cached} for x in res.layers]
        return Built(log=log, image_id=res.image_id, digest=res.manifest_digest,
                     pushed=res.manifest_digest if job.push_to else None,
                     extra={"layers": layers, "upload": res.upload, "pyc": res.pyc, "pycs": res.pycs})  # fmt: skip
