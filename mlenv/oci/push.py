"""Pushing an image from the BlobStore to a registry, with no daemon.

`push_blob(client, repo, desc, store, ...)` sends one blob (HEAD, else a mount,
else an upload; retried on a transient failure) and records the outcome in a
`PushStats`; the daemonless builder calls it for each layer as soon as the layer is
written, while later layers are still being built (`BlobPusher`: a small pool of
push_blob calls whose failures surface at `finish()`).

`push_image(store, manifest_digest, "host/repo:tag", tags=[...])`:

1. read the manifest (or index, then each child manifest) from the store;
2. every blob it references (configs, layers), in parallel, each at most once:
   - `HEAD /v2/<repo>/blobs/<digest>`: present -> skipped;
   - else a cross-repository mount from a repository of the same registry the
     blob was seen in (mlenv.oci.locations, plus the caller's `mount_from`): 201 ->
     mounted; a 202 (the registry could not mount) opens an upload session, used
     at once;
   - else an upload: monolithic up to `chunk_threshold` bytes, chunked above it.
   A blob missing from the store can still be skipped or mounted (e.g. base
   layers of a rebased image); if it must be uploaded, that is an error;
   Blobs already confirmed in the `stats` passed in (by push_blob in this run) are
   not asked about again;
3. only when every blob is confirmed: child manifests by digest, then the manifest
   under the first tag, then the other tags (the same bytes). A failure before
   this step leaves no tag and no manifest; the registry garbage-collects the
   orphaned blobs.

Concurrency: processes pushing overlapping images to one registry need no lock.
Blob writes are content-addressed (distribution renames an upload into place;
two uploads of one digest leave one blob), a manifest PUT is accepted only when
all its blobs are linked in the repository, and tags are single writes. What
a sequential run saves is uploads: a blob the registry already has in the repo
is skipped, one it has in another known repo is mounted (no bytes).

The result counts what happened (`PushStats`): the benchmark and the tests read it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import MlenvError
from .client import CHUNK_SIZE, CHUNK_THRESHOLD, RegistryClient, RegistryTransferError, TransientError, check_reference
from .locations import BlobLocations
from .manifest import ImageManifest, kind, media_type_of, parse_image_manifest, parse_index
from .store import BlobError, BlobStore, Descriptor


@dataclass
class PushStats:
    uploaded: list[str] = field(default_factory=list)  # digests sent as bytes
    mounted: list[str] = field(default_factory=list)  # digests mounted from another repository
    skipped: list[str] = field(default_factory=list)  # digests the repository already had
    bytes_sent: int = 0  # blob bytes uploaded (manifests not counted)
    manifests: int = 0  # manifest PUTs (children, top manifest, each tag)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, outcome: str, digest: str, sent: int = 0) -> None:
        """One blob's outcome ('uploaded' | 'mounted' | 'skipped'); thread-safe."""
        with self._lock:
            getattr(self, outcome).append(digest)
            self.bytes_sent += sent

    def confirmed(self) -> set[str]:
        """Digests the repository is known to hold after this run's pushes."""
        with self._lock:
            return {*self.uploaded, *self.mounted, *self.skipped}

    @property
    def blobs_uploaded(self) -> int:
        return len(self.uploaded)

    @property
    def blobs_mounted(self) -> int:
        return len(self.mounted)

    @property
    def blobs_skipped(self) -> int:
        return len(self.skipped)


@dataclass(frozen=True)
class PushResult:
    name: str  # registry/repository
    digest: str  # the pushed manifest (or index) digest
    tags: tuple[str, ...]
    stats: PushStats

    @property
    def pinned(self) -> str:
        return f"{self.name}@{self.digest}"


def _split_target(reference: str):
    from ..image_ref import parse

    try:
        ref = parse(reference)
    except ValueError:
        raise MlenvError(
            f"invalid image reference {reference[:120]!r}", hint="push to host[:port]/repository[:tag]"
        ) from None
    explicit_tag = ref.tag if (":" in reference.rsplit("/", 1)[-1].split("@", 1)[0]) else None
    return ref, explicit_tag


def _manifest_tree(
    store: BlobStore, digest: str, where: str
) -> tuple[list[tuple[Descriptor, bytes]], list[Descriptor]]:
    """(child manifests [(descriptor, bytes)] in push order, blobs) of the manifest or index at digest."""
    try:
        data = store.read(digest)
    except BlobError as exc:
        raise MlenvError(f"cannot push {where}: {exc}") from None
    if kind(data, None, where) == "index":
        children: list[tuple[Descriptor, bytes]] = []
        blobs: list[Descriptor] = []
        for d in parse_index(data, where).manifests:
            sub_children, sub_blobs = _manifest_tree(store, d.digest, where)
            children += sub_children + [(d, store.read(d.digest))]
            blobs += sub_blobs
        return children, blobs
    image: ImageManifest = parse_image_manifest(data, where)
    return [], [image.config, *image.layers]


def push_image(
    store: BlobStore,
    manifest_digest: str,
    reference: str,
    *,
    tags: Iterable[str] = (),
    client: RegistryClient | None = None,
    locations: BlobLocations | None = None,
    mount_from: Iterable[str] = (),
    chunk_threshold: int = CHUNK_THRESHOLD,
    chunk_size: int = CHUNK_SIZE,
    workers: int = 4,
    stats: PushStats | None = None,
) -> PushResult:
    """Push the image whose manifest (or index) is manifest_digest in store to
    reference (`host/repo[:tag]`), then tag it with `tags` too. Returns what
    was done; raises MlenvError (one line) when anything fails, before any tag
    is written when a blob fails. `stats`: what push_blob already did for this
    repository in this run (those blobs are not asked about again); counted on."""
    ref, first_tag = _split_target(reference)
    all_tags = list(dict.fromkeys([t for t in [first_tag, *tags] if t]))
    for t in all_tags:
        check_reference(t)
    if ref.digest and ref.digest != manifest_digest:
        raise MlenvError(f"cannot push {manifest_digest[:19]}… as {reference}: the reference names another digest")
    repo = ref.repository
    client = client or RegistryClient(ref.registry)
    locations = locations if locations is not None else BlobLocations()
    where = f"{manifest_digest[:19]}… (to {ref.name})"
    top = store.read(manifest_digest)
    media_top = media_type_of(top)
    children, blobs = _manifest_tree(store, manifest_digest, where)
    stats = stats if stats is not None else PushStats()
    done = stats.confirmed()
    unique = [d for d in {d.digest: d for d in blobs}.values() if d.digest not in done]

    def one(desc: Descriptor) -> None:
        push_blob(client, repo, desc, store, locations=locations, mount_from=mount_from, stats=stats,
                  chunk_threshold=chunk_threshold, chunk_size=chunk_size)  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique) or 1))) as pool:
        # list() re-raises the first failure; the manifest step below is then never reached
        list(pool.map(one, unique))
    locations.add(ref.registry, [d.digest for d in blobs], repo)
    for desc, data in children:
        client.put_manifest(repo, desc.digest, data, desc.media_type or media_type_of(data))
        stats.manifests += 1
    for target in all_tags or [manifest_digest]:
        client.put_manifest(repo, target, top, media_top)
        stats.manifests += 1
    for field_ in ("uploaded", "mounted", "skipped"):
        getattr(stats, field_).sort()
    return PushResult(ref.name, manifest_digest, tuple(all_tags), stats)


def push_blob(
    client: RegistryClient,
    repo: str,
    desc: Descriptor,
    store: BlobStore,
    *,
    locations: BlobLocations | None = None,
    mount_from: Iterable[str] = (),
    stats: PushStats | None = None,
    chunk_threshold: int = CHUNK_THRESHOLD,
    chunk_size: int = CHUNK_SIZE,
) -> str:
    """Make repo hold one blob: HEAD (present: 'skipped'), else a cross-repository
    mount from a repository it was seen in (`locations`) or one of `mount_from`
    ('mounted'), else an upload from the store ('uploaded'). Retried from the HEAD on
    a 5xx or a dropped connection (an upload is restarted, never resumed). The outcome
    is recorded in stats (and the blob's location); returns it."""
    sources = [r for r in dict.fromkeys(mount_from) if r != repo]
    last: MlenvError | None = None
    for _attempt in range(3):
        try:
            outcome, sent = _push_once(client, repo, desc, store, locations, sources, chunk_threshold, chunk_size)
            break
        except TransientError as exc:
            last = exc
    else:
        assert last is not None
        raise RegistryTransferError(f"{last.message}; nothing was tagged", hint=last.hint)
    if stats is not None:
        stats.record(outcome, desc.digest, sent)
    if locations is not None:
        locations.add(client.registry, [desc.digest], repo)
    return outcome


def _push_once(
    client: RegistryClient,
    repo: str,
    desc: Descriptor,
    store: BlobStore,
    locations: BlobLocations | None,
    extra_sources: list[str],
    chunk_threshold: int,
    chunk_size: int,
) -> tuple[str, int]:
    if client.has_blob(repo, desc.digest, for_push=True):
        return "skipped", 0
    location = None
    seen = [r for r in locations.repos(client.registry, desc.digest) if r != repo] if locations is not None else []
    for source in list(dict.fromkeys(seen + extra_sources))[:3]:
        mounted, location = client.mount_blob(repo, desc.digest, source)
        if mounted:
            return "mounted", 0
        # not mounted: the registry opened an upload session (used below if no source mounts)
    if not store.has(desc.digest):
        raise MlenvError(
            f"blob {desc.digest[:19]}… is neither in the store {store.root} nor in a known "
            f"repository of {client.registry}",
            hint="pull the base image again (mlenv.oci.pull) before pushing",
        )
    sent = client.upload_blob(
        repo, desc, store, location=location, chunk_threshold=chunk_threshold, chunk_size=chunk_size
    )
    return "uploaded", sent


class BlobPusher:
    """push_blob in the background: each blob submitted goes up (HEAD, mount,
    upload) while the caller goes on; `finish()` waits and re-raises the first
    failure (before any manifest or tag is written, since the caller pushes those
    after), and returns the PushStats to hand to push_image."""

    def __init__(self, store: BlobStore, reference: str, *, mount_from: Iterable[str] = (),
                 client: RegistryClient | None = None, locations: BlobLocations | None = None,
                 workers: int = 2) -> None:  # fmt: skip
        ref, _ = _split_target(reference)
        self.store, self.repo, self.registry = store, ref.repository, ref.registry
        self.client = client or RegistryClient(ref.registry)
        self.locations = locations if locations is not None else BlobLocations()
        self.mount_from = list(mount_from)
        self.stats = PushStats()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlenv-push")
        self.futures: dict[str, Future[str]] = {}

    def submit(self, desc: Descriptor) -> None:
        if desc.digest and desc.digest not in self.futures:
            self.futures[desc.digest] = self.pool.submit(
                push_blob, self.client, self.repo, desc, self.store, locations=self.locations,
                mount_from=self.mount_from, stats=self.stats,
            )  # fmt: skip

    def finish(self) -> PushStats:
        try:
            for fut in self.futures.values():
                fut.result()
            return self.stats
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
