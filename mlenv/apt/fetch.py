"""The locked .debs at build time: on the host, then into the image.

fetch_debs() puts every .deb of the lock into mlenv's content-addressed artifact
cache (mlenv.runtime.fetch.fetch_artifacts: sha256 checked while streaming, atomic
rename), from its locked URL. A .deb that has left the mirror (a superseded
version: HTTP 404/410) is fetched from its snapshot-url instead when that answers;
otherwise the build stops with one line naming the package and the way out
(`mlenv lock --upgrade-package NAME`).

install_step() is the RUN line of the BuildKit and classic builders (no Python or
curl needed in the base): apt's own `apt-helper download-file` fetches each .deb from
mlenv's artifact server on 127.0.0.1 and checks its sha256 (named in the RUN text,
so the layer cache key is the content), then `apt-get install` installs exactly
those files: sources, lists and caches pointed at an empty scratch directory, so
apt reads no index and downloads nothing (`--no-download`); dpkg runs the maintainer
scripts. The scratch directory (the .debs, apt's caches and logs) is removed in the
same RUN: no .deb and no /var/lib/apt/lists entry reaches a layer.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MlenvError
from . import MANAGER

SCRATCH = "/tmp/mlenv-apt"


class SupersededError(MlenvError):
    """A pinned .deb is no longer on its mirror."""


def fetch_debs(pkgs, *, ca_bundle: str | None = None, progress=None) -> dict[str, Path]:
    """sha256 -> the cached .deb, for every apt package of pkgs."""
    from ..installing import artifact
    from ..runtime.errors import InstallError
    from ..runtime.fetch import fetch_artifacts

    debs = [p for p in pkgs if p.manager == MANAGER]
    if not debs:
        return {}
    try:
        return fetch_artifacts([artifact(p) for p in debs], ca_bundle=ca_bundle, progress=progress)
    except InstallError:
        pass  # find which ones failed, one by one, and try their snapshot copies
    out: dict[str, Path] = {}
    for pkg in debs:
        try:
            out.update(fetch_artifacts([artifact(pkg)], ca_bundle=ca_bundle))
            continue
        except InstallError as exc:
            error = exc
        gone = any(f"HTTP Error {code}" in error.message for code in (404, 410))
        if not gone:
            raise error
        snap = pkg.get("snapshot-url")
        where = ""
        if snap:
            from dataclasses import replace

            try:  # the same sha256 check: a snapshot copy with other bytes is refused like any download
                out.update(fetch_artifacts([artifact(replace(pkg, url=snap))], ca_bundle=ca_bundle))
                continue
            except InstallError as exc:
                where = f"; its snapshot copy failed too ({exc.message})"
        raise SupersededError(
            f"Debian package {pkg.name} {pkg.version} is no longer at {pkg.url} (superseded on the mirror){where}",
            hint=f"run `mlenv lock --upgrade-package {pkg.name}` to pin the current version"
            + (", or build where snapshot.debian.org answers" if snap else ""),
        )
    return out


def install_step(debs, server: str) -> str:
    """The RUN line installing exactly these .debs (lock Packages) from the artifact server."""
    d = SCRATCH
    ordered = sorted(debs, key=lambda p: (p.name, p.version, p.sha256))
    fetches = " ".join(f"{server}/a/{p.sha256} {d}/{p.sha256}.deb SHA256:{p.sha256}" for p in ordered)
    files = " ".join(f"{d}/{p.sha256}.deb" for p in ordered)
    apt_opts = (
        f"-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts={d}/none -o Dir::State::Lists={d}/lists "
        "-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "
        f"-o Dir::Log={d}/log -o DPkg::Options::=--log=/dev/null "
        "-o DPkg::Options::=--force-confdef -o DPkg::Options::=--force-confold"
    )
    return (
        f"RUN mkdir -p {d}/none {d}/lists/partial {d}/log"
        f" && /usr/lib/apt/apt-helper -o APT::Sandbox::User=root -o Acquire::http::Proxy=DIRECT -o Acquire::Retries=3"
        f" download-file {fetches}"
        f" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
        f" --allow-downgrades {apt_opts} {files}"
        f"; rc=$?; rm -rf {d}; exit $rc"
    )


def legacy_step(names) -> str:
    """A lock written before mlenv pinned Debian packages: apt-get from the mirror, unpinned."""
    pkgs = " ".join(sorted(set(names)))
    return (
        "RUN apt-get -o Acquire::Retries=3 update -q"
        f" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {pkgs}"
        " && rm -rf /var/lib/apt/lists/*"
    )
