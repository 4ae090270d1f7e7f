"""What a page shows of a lock: package tables per platform and the size breakdown.
Pure functions of a Lock (no registry access)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..runtime.secrets import literal_userinfo
from ..runtime.secrets import scrub as _scrub

if TYPE_CHECKING:
    from ..lockfile import Lock, Package
    from ..registry.base import Version

# `user:password@host.domain` without a scheme (an image reference or a free text that
# names a host that way): the userinfo before a dotted host name. A tag-and-digest image
# reference (`python:3.11@sha256:...`) has no dotted name after its '@' and stays.
_BARE_USERINFO = re.compile(
    r"(?<![\w/:.@%+~-])([\w.%+~-]+:[^\s/@'\"`<>()\[\]]+)@(?=[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)", re.ASCII
)


def scrub(text: object) -> str:
    """Credentials out of a text from the registry: the userinfo of every URL and every
    remembered secret (mlenv.runtime.secrets.scrub), and a `user:password@` before a host
    name without a scheme, the way an image reference or a note would carry it. `${VAR}`
    references are kept (they are not secrets). Registry records are written by others,
    so this applies to every text a page shows, not only to URLs."""
    out = _scrub("" if text is None else str(text))
    return _BARE_USERINFO.sub(lambda m: "" if literal_userinfo(m.group(1)) else m.group(0), out)


def scrub_version(v: Version) -> Version:
    """A version record with its free texts (description, image reference) scrubbed: what
    every page, search result and data file of the catalog is made from."""
    from dataclasses import replace

    clean = (scrub(v.description), scrub(v.image) if v.image else v.image)
    return v if clean == (v.description, v.image) else replace(v, description=clean[0], image=clean[1])


def safe_href(url: object) -> str | None:
    """url when it is an http(s) URL without credentials (a link target), else None."""
    s = scrub(url)
    return s if re.match(r"^https?://[^\s<>\"']+$", s) else None


@dataclass
class PackageRow:
    name: str
    key: str  # normalized, for the package page link
    version: str
    manager: str
    build: str
    size: int | None
    source: str
    url: str | None


@dataclass
class PlatformView:
    platform: str
    python: str | None
    rows: list[PackageRow]

    @property
    def conda(self) -> int:
        return sum(r.manager == "conda" for r in self.rows)

    @property
    def pypi(self) -> int:
        return sum(r.manager == "pypi" for r in self.rows)

    @property
    def total_size(self) -> int:
        return sum(r.size or 0 for r in self.rows)


def _size(p: Package) -> int | None:
    size = p.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def platforms(lock: Lock) -> list[PlatformView]:
    from ..solve.names import normalize

    out = []
    for plat in sorted(lock.platforms):
        rows = [
            PackageRow(
                p.name,
                normalize(p.name),
                p.version,
                p.manager,
                str(p.get("build") or ""),
                _size(p),
                scrub(p.get("channel") if p.manager == "conda" else p.get("index") or "").rstrip("/"),
                safe_href(p.url),
            )
            for p in sorted(lock.for_platform(plat), key=lambda p: (p.manager, normalize(p.name)))
        ]
        out.append(PlatformView(plat, lock.platform_python(plat), rows))
    return out


@dataclass
class SizeGroup:
    label: str  # what mlenv build calls the step: "conda env", a PyPI group id
    size: int
    packages: list[str]
    unknown: int  # packages of the group without a recorded size


def size_groups(lock: Lock, platform: str) -> list[SizeGroup]:
    """The lock's artifact (download) sizes grouped as `mlenv build` installs them, in
    layer order: the conda environment (one step), then each PyPI group (an artifact of at
    least 4 MB alone, the smaller ones together; mlenv.image.context.pypi_groups)."""
    from ..image.context import _direct_names, pypi_groups

    out = []
    conda = lock.for_platform(platform, "conda")
    if conda:
        out.append(
            SizeGroup(
                "conda env",
                sum(_size(p) or 0 for p in conda),
                sorted(p.name for p in conda),
                sum(_size(p) is None for p in conda),
            )
        )
    pypi = lock.for_platform(platform, "pypi")
    if pypi:
        for g in pypi_groups(pypi, {}, direct=_direct_names(lock)):
            names = [p.name for p in g.packages]
            label = names[0] if len(names) == 1 else f"{len(names)} smaller PyPI packages"
            out.append(
                SizeGroup(
                    label, sum(_size(p) or 0 for p in g.packages), names, sum(_size(p) is None for p in g.packages)
                )
            )
    return out
