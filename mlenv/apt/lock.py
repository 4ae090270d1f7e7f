"""`mlenv lock` for `[image] apt-packages`: the [[package]] entries with manager = "apt".

lock_apt() is called by mlenv.locking with the image fields it just resolved (the
base reference and digest) and the previous lock. Per Linux platform:

- kept as they are (no base read, no index read) when the previous lock's apt pins
  were made for the same base reference and the same requested set, that platform is
  not being re-solved, and neither `--upgrade` nor an `--upgrade-package` naming one
  of them is given;
- otherwise resolved (mlenv.apt.resolve) against the base's sources, with the
  previous pins as preferences: a pinned version that still qualifies and is still in
  the index is kept; `--upgrade-package NAME` drops NAME's preference (so NAME moves,
  and whatever it needs moves only if it must); `--upgrade` drops them all.

What the pins were resolved for is recorded in [inputs] (`apt-packages`, `apt-base`,
`apt-platforms`; not hashed), so a lock whose closure is empty (the base has it all)
is still known to be current.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import MlenvError
from . import DEB_ARCH, INPUT_BASE, INPUT_PACKAGES, INPUT_PLATFORMS, INPUT_SOURCES, MANAGER, apt_platforms
from .base import BaseUnavailable

if TYPE_CHECKING:
    from .archive import Release
    from .sources import Source

SNAPSHOT_ARCHIVES = {"debian", "debian-security", "debian-ports", "debian-debug", "debian-backports"}
DEBIAN_HOSTS = ("deb.debian.org", "ftp.debian.org", "security.debian.org", "httpredir.debian.org")
SNAPSHOT_DELAY = 12 * 3600  # see snapshot_url()


def requests_of(apt_packages) -> list[tuple[str, str | None]]:
    out = []
    for item in sorted(set(apt_packages)):
        name, eq, ver = str(item).partition("=")
        out.append((name, ver if eq else None))
    return out


def lock_apt(
    spec,
    image: dict,
    existing,
    *,
    keep_platforms: set[str] | frozenset[str] = frozenset(),
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    offline: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[list, dict, list[str]]:
    """(apt Packages for every Linux platform of the spec, [inputs] entries, warnings).

    A base pinned by tag only (its registry could not be reached: resolve_image already
    warned) that cannot be read either leaves apt-packages unpinned, with a warning, as
    such a lock was before mlenv pinned Debian packages; a digest-pinned base that
    cannot be read is an error."""
    from ..lockfile import Package

    say = progress or (lambda msg: None)
    wanted = sorted(set(spec.apt_packages))
    if not wanted:
        return [], {}, []
    ref = image.get("reference") or image.get("base") or spec.base_image
    digest = image.get("digest")
    linux = apt_platforms(spec.platforms)
    inputs = {INPUT_PACKAGES: wanted, INPUT_BASE: ref, INPUT_PLATFORMS: linux}
    old_inputs = existing.inputs if existing is not None else {}
    same_inputs = old_inputs.get(INPUT_BASE) == ref and old_inputs.get(INPUT_PACKAGES) == wanted
    moving = set(upgrade_packages)
    packages: list = []
    for platform in linux:
        old = existing.for_platform(platform, MANAGER) if existing is not None else []
        names = {p.name for p in old} | {n for n, _ in requests_of(wanted)}
        kept = platform in (old_inputs.get(INPUT_PLATFORMS) or []) and same_inputs
        if kept and (platform in keep_platforms or not (upgrade or moving & names)):
            packages += old
            continue
        if offline:
            raise MlenvError(
                f"{platform}: [image] apt-packages must be resolved against the Debian archive, "
                "which --offline forbids",
                hint="run `mlenv lock` without --offline",
            )
        arch = DEB_ARCH.get(platform)
        if arch is None:
            raise MlenvError(
                f"[image] apt-packages: platform {platform} has no Debian architecture mlenv knows "
                f"({', '.join(f'{k} -> {v}' for k, v in DEB_ARCH.items())})"
            )
        say(f"{platform}: resolving apt packages against {ref}")
        prefer = {} if upgrade else {p.name: p.version for p in old}
        try:
            resolved = resolve_platform(ref, digest, arch, wanted, prefer=prefer, upgrade=moving, progress=say)
        except BaseUnavailable as exc:
            if digest:
                raise
            note = (
                f"{exc.message}; [image] apt-packages are left unpinned (builds install them from the mirror "
                "as they are that day): make the base readable, then `mlenv lock --upgrade`"
            )
            return [], {}, [note]
        for pkg in resolved:
            extra = {"architecture": pkg["architecture"], "size": pkg["size"]}
            if pkg.get("snapshot-url"):
                extra["snapshot-url"] = pkg["snapshot-url"]
            packages.append(Package(MANAGER, platform, pkg["name"], pkg["version"], pkg["url"], pkg["sha256"], extra))
    inputs[INPUT_SOURCES] = archive_roots(packages)
    return packages, inputs, []


def archive_roots(packages) -> list[str]:
    """The archive each .deb URL comes from: the URL up to its pool/ directory (Debian's
    layout; a flat repository: the .deb's directory), sorted, without duplicates."""
    roots = set()
    for p in packages:
        url = p.url
        i = url.find("/pool/")
        roots.add(url[:i] if i != -1 else url.rsplit("/", 1)[0])
    return sorted(roots)


def resolve_platform(
    reference: str,
    digest: str | None,
    arch: str,
    wanted: list[str],
    *,
    prefer: dict[str, str] | None = None,
    upgrade: set[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """The .debs to add to the base for arch: dicts with name, version, architecture,
    url, sha256, size, snapshot-url (sorted by name)."""
    from .archive import FILENAME_RE, SHA256_RE, ArchiveError, keyring_bytes, packages_records, read_release
    from .base import TRUSTED, TRUSTED_DIR, read_base, require_apt
    from .resolve import Resolver, Universe, installed_from_status
    from .sources import SourcesError, read_sources

    say = progress or (lambda msg: None)
    facts = read_base(reference, digest, arch)
    require_apt(facts)
    srcs = read_sources(facts.sources, arch)
    usable = [s for s in srcs.sources if not s.architectures or arch in s.architectures]
    if not usable:
        raise SourcesError(
            f"base image {reference} has no apt source for {arch}"
            + (f" ({'; '.join(srcs.notes[:2])})" if srcs.notes else "")
        )
    trusted = [
        keyring_bytes(v) for k, v in sorted(facts.keyrings.items()) if k == TRUSTED or k.startswith(TRUSTED_DIR + "/")
    ]

    def keyrings_for(src) -> tuple[list[bytes], tuple[str, ...]]:
        from .archive import dearmor

        if src.signed_by_key:
            return [dearmor(src.signed_by_key)], ()
        paths = [s for s in src.signed_by if s.startswith("/")]
        fprs = tuple(s for s in src.signed_by if not s.startswith("/"))
        if paths:
            rings = []
            for path in paths:
                if path not in facts.keyrings:
                    raise SourcesError(f"{src.origin}: Signed-By keyring {path} is not in base image {reference}")
                rings.append(keyring_bytes(facts.keyrings[path]))
            return rings, fprs
        if not trusted:
            raise SourcesError(
                f"base image {reference} has no keyring for {src.origin} ({TRUSTED}, {TRUSTED_DIR}/)",
                hint="the base's apt could not verify it either; use a base with its archive keyring",
            )
        return trusted, fprs

    from concurrent.futures import ThreadPoolExecutor

    releases: dict[str, Release] = {}

    def release_of(src: Source) -> Release:
        key = src.dist_url + "\0" + "\0".join(src.signed_by) + src.signed_by_key
        if key not in releases:
            rings, fprs = keyrings_for(src)
            releases[key] = read_release(src, rings, fprs)
        return releases[key]

    jobs = [(n, src, comp) for n, src in enumerate(usable) for comp in (src.components or ("",))]
    say(f"{arch}: reading {len(jobs)} package index(es) of {len(usable)} source(s)")
    rels = [release_of(src) for src in usable]  # sequential: each is one small signed file
    with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
        results = list(pool.map(lambda job: packages_records(rels[job[0]], job[2], arch), jobs))
    records = [(n, r) for (n, _, _), recs in zip(jobs, results, strict=False) for r in recs]
    where = ", ".join(f"{s.suite} {' '.join(s.components)} ({s.uri})".replace("  ", " ") for s in usable[:4])
    universe = Universe.build(
        arch, records, installed_from_status(facts.status, f"{reference}:/var/lib/dpkg/status"), where
    )
    chosen = Resolver(universe, prefer=prefer, upgrade=upgrade).resolve(requests_of(wanted))
    out = []
    for p in chosen:
        src, rel = usable[p.origin], rels[p.origin]
        if not FILENAME_RE.match(p.filename) or ".." in p.filename.split("/"):
            raise ArchiveError(
                f"index entry of {p.label} in {src.dist_url} has an unusable Filename {p.filename[:100]!r}"
            )
        if not SHA256_RE.match(p.sha256) or p.size <= 0:
            raise ArchiveError(f"index entry of {p.label} in {src.dist_url} has no valid SHA256/Size")
        url = f"{src.uri}/{p.filename}"
        entry = {
            "name": p.name,
            "version": p.version,
            "architecture": p.arch,
            "url": url,
            "sha256": p.sha256,
            "size": p.size,
        }
        snap = snapshot_url(src.uri, p.filename, rel.timestamp)
        if snap:
            entry["snapshot-url"] = snap
        out.append(entry)
    return out


def snapshot_url(uri: str, filename: str, release_time: int) -> str | None:
    """The snapshot.debian.org form of a Debian archive file:
    https://snapshot.debian.org/archive/<archive>/<YYYYMMDDTHHMMSSZ>/<Filename>.

    snapshot.debian.org imports each archive about every 6 hours and answers a
    timestamp with the last import at or before it. The timestamp used is the signed
    Release's Date plus 12 hours: an import taken after the index mlenv read was
    published, when the file was in the pool (dak keeps a superseded file in the pool
    for a day and a half). Only for Debian's own archives (deb.debian.org and its
    aliases); None for any other mirror."""
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if not (host in DEBIAN_HOSTS or (host.startswith("ftp.") and host.endswith(".debian.org"))):
        return None
    archive = parts.path.strip("/").split("/")[-1] if parts.path.strip("/") else ""
    if archive not in SNAPSHOT_ARCHIVES:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(release_time + SNAPSHOT_DELAY))
    return f"https://snapshot.debian.org/archive/{archive}/{stamp}/{filename}"
