"""Debian packages of an image, locked like every other package (docs/lockfile.md#apt-packages).

`[image] apt-packages` are resolved at `mlenv lock` time against the base image
pinned in the lock, and every .deb to add is recorded per platform as a
`[[package]]` with `manager = "apt"`. Modules:

- base.py      what the base image says about apt: sources, keyrings, dpkg status,
               architecture (read from its layers; mlenv.oci.rootfs), cached by digest
- sources.py   sources.list one-line entries and deb822 .sources files
- archive.py   InRelease fetched and verified with gpgv against the base's keyring,
               Release and Packages indexes (python-debian), host cache by sha256
- resolve.py   the closure: Depends / Pre-Depends, alternatives, virtual packages,
               versions, Multi-Arch; what the base already has left out
- lock.py      lock_apt(): the [[package]] entries of a spec's platforms, kept while
               they still satisfy the spec (no index read), moved on --upgrade(-package)
- fetch.py     the .debs on the host (artifact cache; superseded -> one clear line;
               snapshot.debian.org fallback) and the BuildKit/classic install step
- verify.py    an image's dpkg status against the lock (`mlenv verify --image`)

This module itself stays import-free: the no-op `mlenv lock` calls pins_current().
"""

from __future__ import annotations

MANAGER = "apt"
# conda-style platform -> Debian architecture (dpkg --print-architecture)
DEB_ARCH = {"linux-64": "amd64", "linux-aarch64": "arm64"}
# lock [inputs] keys of the apt part (what the pins were resolved for; not hashed)
INPUT_PACKAGES = "apt-packages"
INPUT_BASE = "apt-base"
INPUT_PLATFORMS = "apt-platforms"
INPUT_SOURCES = "apt-sources"  # the archives the .debs come from (mlenv.sources checks every .deb URL)


def apt_platforms(platforms) -> list[str]:
    """The lock platforms that get Debian packages: the Linux ones (images are Linux)."""
    return sorted(p for p in platforms if str(p).startswith("linux-"))


def pins_current(lock) -> bool:
    """Do the lock's apt pins answer its own [image] apt-packages and base? A lock whose
    apt-packages are not pinned (written before mlenv pinned them) says False; so does
    one whose pins were made for another base or request set. Dict lookups only."""
    wanted = sorted(set(lock.image.get("apt-packages") or []))
    inputs = lock.inputs
    if not wanted:
        return not any(p.manager == MANAGER for p in lock.packages)
    return (
        inputs.get(INPUT_PACKAGES) == wanted
        and inputs.get(INPUT_BASE) == (lock.image.get("reference") or lock.image.get("base"))
        and set(apt_platforms(lock.platforms)) <= set(inputs.get(INPUT_PLATFORMS) or [])
    )


def legacy_unpinned(lock) -> bool:
    """A lock with apt-packages but no apt inputs at all: written before mlenv pinned
    Debian packages. Builders install such a lock's apt-packages unpinned (with a warning)."""
    return bool(lock.image.get("apt-packages")) and INPUT_BASE not in lock.inputs
