"""Conda solving with py-rattler (resolvo): no conda executable needed.

Solves one platform at a time against the spec's channels (names, URLs,
file:// channels), with exactly the [system] virtual packages. Previously
locked records are passed as preferences, so a re-lock only moves what it must.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import LockError, SolveError
from ..lockfile import Package
from ..runtime.secrets import referenced_values, scrub, strip_credentials
from ..runtime.text import first_line
from ..spec import Spec, expand_env
from .platforms import virtual_packages


def _cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mlenv")) / "rattler"


def _virtuals(platform: str, system: dict[str, str]):
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    return [
        GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
        for n, v, b in virtual_packages(platform, system)
    ]


def solve(
    spec: Spec,
    platform: str,
    *,
    locked: Sequence[Package] = (),
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    offline: bool = False,
) -> list[Package]:
    import rattler
    from rattler.exceptions import FetchRepoDataError, GatewayError, SolverError

    specs = spec.conda_specs()
    if not specs:
        return []
    # ${VAR} references (in the user:password@ part only: mlenv.spec) are expanded here, in
    # memory; whatever rattler says afterwards is scrubbed of them and of any userinfo.
    secrets = referenced_values(spec.channels)
    shown = ", ".join(strip_credentials(c) for c in spec.channels)
    try:
        channels = [rattler.Channel(expand_env(c)) for c in spec.channels]
    except Exception as exc:  # rattler's InvalidChannelError; the spec check should prevent it
        raise SolveError(
            f"invalid conda channel: {scrub(first_line(exc), secrets)}", hint=f"check [conda] channels ({shown})"
        ) from None
    subdirs = [rattler.Platform(platform), rattler.Platform("noarch")]
    preferences = []
    if not upgrade:
        skip = {n.lower() for n in upgrade_packages}
        preferences = [to_record(p) for p in locked if p.manager == "conda" and p.name not in skip]
    gateway = rattler.Gateway(cache_dir=_cache_dir())

    async def run():
        return await rattler.solve(
            sources=channels,
            specs=specs,
            gateway=gateway,
            platforms=subdirs,
            locked_packages=preferences,
            virtual_packages=_virtuals(platform, spec.system),
            timestamp_policy="allow-missing",
        )

    if offline:
        _check_offline(spec.channels)
    try:
        from ..runtime.aio import run as run_async

        records = run_async(run)
    except SolverError as exc:
        raise SolveError(
            f"the conda dependencies cannot be solved for {platform}:\n{_indent(scrub(str(exc), secrets))}"
        ) from None
    except (FetchRepoDataError, GatewayError) as exc:
        raise SolveError(
            f"could not read a conda channel for {platform}: {scrub(first_line(exc), secrets)}",
            hint="check the channel name/URL and your network; conda channels: " + shown,
        ) from None
    except Exception as exc:  # rattler wraps I/O errors in its own types
        raise SolveError(f"conda solve failed for {platform}: {scrub(first_line(exc), secrets)}") from None
    return sorted((from_record(r, platform) for r in records), key=lambda p: p.name)


def _check_offline(channels: list[str]) -> None:
    for c in channels:
        if not c.startswith("file://"):
            raise SolveError(
                f"--offline cannot solve against the remote conda channel {strip_credentials(c)!r}",
                hint="drop --offline, or use a file:// channel",
            )


def from_record(record, platform: str) -> Package:
    extra = {
        "build": str(record.build),
        "build-number": int(record.build_number),
        "subdir": str(record.subdir),
        "channel": strip_credentials(str(record.channel or "")),
        "md5": record.md5.hex() if record.md5 else "",
        "size": int(record.size or 0),
        "timestamp": int(record.timestamp.timestamp() * 1000) if record.timestamp else 0,
        "noarch": _noarch(record.noarch),
        "depends": list(record.depends),
        "constrains": list(record.constrains),
        "license": record.license or "",
    }
    return Package(
        manager="conda",
        platform=platform,
        name=str(record.name.normalized),
        version=str(record.version),
        url=strip_credentials(str(record.url)),
        sha256=record.sha256.hex() if record.sha256 else "",
        extra=extra,
    )


def _noarch(value) -> str:
    if value is None or getattr(value, "none", False):
        return ""
    return "python" if getattr(value, "python", False) else "generic"


def to_record(pkg: Package):
    """A rattler RepoDataRecord rebuilt from the lock's fields (no repodata read). The lock's
    schema types every field; what rattler still refuses (a version it cannot parse, a
    channel that is not a URL) is one LockError, not rattler's exception."""
    from ..runtime.conda import record

    try:
        return record(pkg.name, pkg.version, pkg.url, pkg.sha256, pkg.extra, pkg.platform)
    except Exception as exc:  # rattler's InvalidVersionError, InvalidUrlError, ...
        raise LockError(
            f"mlenv.lock: the {pkg.platform} conda record {pkg.name} {pkg.version} cannot be read: {first_line(exc)[:200]}",
            hint="`mlenv lock --upgrade` solves again without the locked records",
        ) from None


def _indent(text: str) -> str:
    return "\n".join("  " + ln for ln in text.strip().splitlines())
