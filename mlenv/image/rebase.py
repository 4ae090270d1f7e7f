"""Rebase: a lock that differs from an already built image only in its base image
(a patched base: same tag, new digest; `mlenv lock --upgrade` pinned it) gets its
image without rebuilding: the new base's layers, the old image's environment
layers as they are, and a new metadata layer (the new mlenv.lock).

Allowed only where it is sound, and the contract is recorded in the image's labels
when it is built (mlenv.image.daemonless):

- `org.mlenv.rebase`: `conda-self-contained` when the environment depends on the
  base for nothing but its C library: a conda env with its own Python (PyPI wheels
  in that Python's site-packages), or conda packages alone; otherwise `no: <reason>`
  (a venv on the base image's Python: its bin/python points at the base's
  interpreter, whose version and ABI a new base may change; Debian packages: their
  layer holds the base's dpkg status with theirs merged in, which a new base
  replaces).
- `org.mlenv.glibc-floor`: the highest glibc any locked package asks for: conda
  `__glibc >=X.Y` dependencies, manylinux wheel tags (manylinux_X_Y, manylinux2014 =
  2.17, manylinux2010 = 2.12, manylinux1 = 2.5; a wheel with several tags needs the
  lowest of them). The new base must carry a glibc at least that new, read from its
  libc.so.6 (mlenv.image.basefacts), never by running it.
- `org.mlenv.base.layers`: how many of the image's layers are the base's (checked:
  they must be exactly the old base manifest's layers).

Everything else about the new lock must equal the image's own /opt/mlenv/mlenv.lock
for the platform: packages, Python, variables (the config is rebuilt from the new
base's config with the same environment and labels).
"""

from __future__ import annotations

from .rebasable import (
    LABEL_BASE_LAYERS,
    LABEL_REBASE,
    REBASE_OK,
    RebaseRefused,
    check_base,
    glibc_floor,
    same_environment,
)


def rebase_image(
    spec,
    lock,
    platform: str,
    from_image: str,
    *,
    store=None,
    push_to: str | None = None,
    layout=None,
    load: bool = False,
    load_as: str | None = None,
    progress=None,
):
    """The image of `lock` from `from_image` (an image of an earlier lock that differs
    only in its base), without building: new base layers + the old environment
    layers + a new metadata layer. Returns a daemonless.BuildResult; raises
    RebaseRefused (one line) where a rebase is not sound."""
    import time

    from ..installing import needs_interpreter
    from ..lockfile import loads_lock
    from ..oci.image import base_layers
    from ..oci.layer import read_tar_members
    from ..oci.store import OCI_LAYER_GZIP, default_store
    from ..runtime.secrets import scrub
    from . import transport
    from .basefacts import read_facts
    from .daemonless import (
        ANNOTATION_LAYER,
        LABEL_PYC,
        BuildResult,
        LayerInfo,
        _finish,
        _reference,
        _say,
        _write,
        base_reference,
        env_updates,
        labels_for,
    )
    from .materialize import META_DIR, metadata_entries, refuse_unbuildable

    t0 = time.perf_counter()
    say = _say(progress)
    store = store or default_store()
    refuse_unbuildable(lock, platform)
    say(f"reading {from_image}")
    old = transport.pull(from_image, platform, store)
    labels = dict((old.config.get("config") or {}).get("Labels") or {})
    contract_label = labels.get(LABEL_REBASE)
    if contract_label != REBASE_OK:
        why = (contract_label or "no rebase contract (not built by the daemonless builder)").removeprefix("no: ")
        raise RebaseRefused(f"{from_image} cannot be rebased: {why}", hint="rebuild it with `mlenv build`")
    try:
        n_base = int(labels.get(LABEL_BASE_LAYERS, ""))
    except ValueError:
        raise RebaseRefused(f"{from_image} has no valid {LABEL_BASE_LAYERS} label") from None
    layers = base_layers(old.manifest)
    if not 0 < n_base < len(layers) - 1:
        raise RebaseRefused(f"{from_image}: {LABEL_BASE_LAYERS}={n_base} does not fit its {len(layers)} layers")
    meta = layers[-1]
    old_lock_text = None
    with store.open(meta.digest) as fh:
        for member, tar in read_tar_members(fh, gzip=meta.media_type == OCI_LAYER_GZIP):
            if member.name.lstrip("./") == f"{META_DIR.lstrip('/')}/mlenv.lock" and member.isfile():
                old_lock_text = tar.extractfile(member).read().decode("utf-8")
    if old_lock_text is None:
        raise RebaseRefused(f"{from_image}: its last layer holds no {META_DIR}/mlenv.lock")
    old_lock = loads_lock(old_lock_text, f"{from_image}:{META_DIR}/mlenv.lock")
    differ = same_environment(old_lock, lock, platform)
    if differ:
        raise RebaseRefused(
            f"mlenv.lock and {from_image} differ in more than the base image ({', '.join(differ)})",
            hint="build it: `mlenv build`",
        )
    say(f"new base {base_reference(lock)}")
    new_base = transport.pull(base_reference(lock), platform, store, expect=lock.image.get("digest"))
    facts = read_facts(store, new_base.manifest, new_base.config, None)
    floor, why = glibc_floor(lock, platform)
    check_base(facts, floor, why)
    diff_ids = list(old.config["rootfs"]["diff_ids"])
    kept = [
        LayerInfo(d.annotations.get(ANNOTATION_LAYER, f"layer-{i}"), d.digest, diff_ids[i], d.size, 0, True)
        for i, d in enumerate(layers)
        if n_base <= i < len(layers) - 1
    ]
    kept.append(_write(metadata_entries(lock.dumps(), scrub(spec.text)), store, "metadata", None))
    new_labels = labels_for(
        spec,
        lock,
        platform,
        rebase=REBASE_OK,
        floor=floor,
        pyc=labels.get(LABEL_PYC, "none"),
        base_layers=len(new_base.manifest["layers"]),
    )
    needs_env = bool(lock.for_platform(platform, "conda")) or needs_interpreter(lock, platform)
    reference = _reference(push_to, lock) if push_to else None
    result = BuildResult(reference, lock.content_hash, platform, rebase=REBASE_OK, pyc=new_labels[LABEL_PYC])
    return _finish(
        result,
        store,
        new_base,
        kept,
        lock,
        platform,
        new_labels,
        env_updates(lock, new_base.config, needs_env),
        push_to=reference,
        layout=layout,
        load=load,
        t0=t0,
        say=say,
        load_as=load_as,
    )
