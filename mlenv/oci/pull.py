"""Pulling an image (the base of a build) into the BlobStore, from a registry or a local Engine.

`pull_image(reference, platform, store)` speaks the distribution API:

1. GET the manifest of the reference's digest when it has one (`name@sha256:...`,
   or `name:tag@sha256:...`: the tag is then ignored, so a moved tag changes
   nothing), else of its tag;
2. an index / manifest list is resolved to the entry for `platform` (see
   mlenv.oci.manifest: `linux-64` -> linux/amd64, `linux-aarch64` -> linux/arm64);
3. the config and every layer are fetched into the store (in parallel), each
   verified against its digest and size; blobs the store already has are
   re-hashed (once per file: `ensure_blob`), kept when right and fetched again when not;
4. the config's os/architecture must be the platform's and its diff_ids as many as
   the layers.

The index (if any), the manifest and the config are stored as blobs too, so the
image can be pushed, laid out or loaded from the store alone.

`pull_base(reference, platform, store, expect=...)` is the builder's entry: it
chooses the source. A reference that names a registry host is pulled from that
registry; when the registry does not have it (or cannot be reached) and the local
Engine has an image under that name whose identity matches `expect`, the Engine
copy is read instead (mlenv.oci.engine.read_from_engine). A Docker Hub shorthand
(`mlenv-test/debian-python:bookworm`, no host) is read from the local Engine when
it is there (as `docker build` without `--pull` does), else pulled from Docker Hub.

The digest a lock pins (`PulledImage.digest`): for a registry image, the digest
the reference resolved to (the index digest for a multi-platform image, else
the manifest digest); for an Engine-only image, the image ID, which is the
sha256 of its config. The two relate: `docker push` uploads the config bytes
unchanged, so the registry copy of an Engine image has config digest == image
ID, while its layers are recompressed (new layer digests, same diff_ids) and
its manifest digest exists only in the registry.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..errors import MlenvError
from .client import ManifestNotFound, RegistryClient, RegistryTransferError, names_registry
from .locations import BlobLocations
from .manifest import (
    ManifestError,
    check_layers_match,
    check_platform,
    kind,
    parse_config,
    parse_image_manifest,
    parse_index,
    platform_of,
    select_platform,
)
from .pulled import PulledImage
from .store import BlobError, BlobStore, Descriptor, default_store


def _parse_ref(reference: str):
    from ..image_ref import parse

    try:
        return parse(reference)
    except ValueError:
        raise MlenvError(
            f"invalid image reference {reference[:120]!r}", hint="use [host[:port]/]name[:tag][@sha256:<64 hex>]"
        ) from None


def ensure_blob(store: BlobStore, desc: Descriptor) -> bool:
    """True when the store holds desc's blob with the right bytes (a corrupt copy
    is removed, so the caller fetches it again). A blob is hashed once: the store's
    files are written once (atomic rename) and never changed, so its (size, mtime, ctime,
    inode) after a successful check are recorded in `blobs/verified/<hex>`, and the
    same file is not hashed again (a base of 80 MB costs 0.15 CPU-s per build otherwise)."""
    path = store.path(desc.digest)
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != desc.size:
        path.unlink(missing_ok=True)
        return False
    stamp = store.root / "blobs" / "verified" / desc.digest.split(":", 1)[1]
    seen = f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"
    try:
        if stamp.read_text() == seen:
            return True
    except OSError:
        pass
    try:
        store.open(desc.digest, verify=True).close()
    except BlobError:
        return False
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(seen)  # a lost or torn stamp only costs a hash
    except OSError:
        pass
    return True


def pull_image(
    reference: str,
    platform: str = "linux-64",
    store: BlobStore | None = None,
    *,
    client: RegistryClient | None = None,
    locations: BlobLocations | None = None,
    workers: int = 4,
) -> PulledImage:
    """Pull reference's image for platform from its registry into store (default:
    the user cache store). Raises MlenvError (one line) on every failure."""
    store = store or default_store()
    locations = locations if locations is not None else BlobLocations()
    ref = _parse_ref(reference)
    want = platform_of(platform)
    client = client or RegistryClient(ref.registry)
    repo = ref.repository
    target = ref.digest or ref.tag or "latest"
    where = f"{ref.registry}/{repo}{'@' if target.startswith('sha256:') else ':'}{target}"
    top = client.get_manifest(repo, target)
    store.put_bytes(top.data, top.media_type)
    index_digest = None
    manifest = top
    if kind(top.data, top.media_type, where) == "index":
        index_digest = top.digest
        entry = select_platform(parse_index(top.data, where), want, where)
        manifest = client.get_manifest(repo, entry.digest)
        if kind(manifest.data, manifest.media_type, where) != "manifest":
            raise ManifestError(f"{where}: nested indexes are not supported")
        store.put_bytes(manifest.data, manifest.media_type)
    image = parse_image_manifest(manifest.data, where)

    def fetch(desc: Descriptor) -> None:
        if not ensure_blob(store, desc):
            client.fetch_blob(repo, desc, store)

    fetch(image.config)
    config_bytes = store.read(image.config.digest)
    config = parse_config(config_bytes, f"{where} (config)")
    check_platform(config, want, where)
    check_layers_match(image, config, where)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(image.layers) or 1))) as pool:
        list(pool.map(fetch, image.layers))
    blobs = [image.config.digest, *(d.digest for d in image.layers)]
    locations.add(ref.registry, blobs, repo)
    return PulledImage(
        reference=reference, source="registry", name=ref.name, digest=top.digest, manifest_digest=manifest.digest,
        manifest_media_type=manifest.media_type, manifest=manifest.data, config_digest=image.config.digest,
        config_media_type=image.config.media_type, config=config_bytes, layers=image.layers,
        diff_ids=config.diff_ids, platform=config.platform, index_digest=index_digest,
    )  # fmt: skip


def pull_base(
    reference: str, platform: str = "linux-64", store: BlobStore | None = None, *, expect: str | None = None
) -> PulledImage:
    """The base image of a build, from wherever it is (module docstring). `expect`
    is the digest the lock pins: a registry digest (index or manifest) or, for an
    Engine-only base, the image ID; the image used must have it."""
    from .. import dockerd
    from . import engine

    store = store or default_store()
    ref = _parse_ref(reference)
    registry_ref = str(ref) if ref.digest or not expect or not expect.startswith("sha256:") else f"{ref}@{expect}"
    if not names_registry(reference):
        if dockerd.has(reference):
            return engine.read_from_engine(reference, store, platform=platform, expect=expect)
        return pull_image(registry_ref, platform, store)
    try:
        return _matching(pull_image(registry_ref, platform, store), expect)
    except (ManifestNotFound, RegistryTransferError) as exc:
        if dockerd.has(reference):
            return engine.read_from_engine(reference, store, platform=platform, expect=expect or ref.digest)
        raise exc from None


def _matching(image: PulledImage, expect: str | None) -> PulledImage:
    if expect and expect not in (image.digest, image.manifest_digest, image.config_digest):
        raise MlenvError(
            f"base image {image.reference} is {image.digest[:19]}…, the lock pins {expect[:19]}…",
            hint="`mlenv lock --upgrade` to pin the new base, or restore the pinned image",
        )
    return image
