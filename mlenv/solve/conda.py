"""Conda solving with py-rattler (resolvo): no conda executable needed.

Solves one platform at a time against the spec's channels (names, URLs,
file:// channels), with exactly the [system] virtual packages. Previously
locked records are passed as preferences, so a re-lock only moves what it must.

A channel with `${VAR}` credentials (`https://${USER}:${TOKEN}@host/channel`) is given
to rattler without them; its expanded userinfo goes into an Authorization header that a
rattler client middleware adds to the requests under the channel's host and path. So
neither rattler's repodata cache (which records each URL it fetched) nor the records'
URLs and channels (which go into the lock) ever hold the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockError, SolveError
from ..lockfile import Package
from ..runtime.secrets import referenced_values, remember_url, scrub, split_userinfo, strip_credentials
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
    expanded = [expand_env(c) for c in spec.channels]
    auth = channel_auth(expanded)
    try:  # rattler sees no userinfo: its repodata cache records each URL it fetched
        channels = [rattler.Channel(strip_credentials(c)) for c in expanded]
    except Exception as exc:  # rattler's InvalidChannelError; the spec check should prevent it
        raise SolveError(
            f"invalid conda channel: {scrub(first_line(exc), secrets)}", hint=f"check [conda] channels ({shown})"
        ) from None
    subdirs = [rattler.Subdir(platform), rattler.Subdir("noarch")]
    preferences = []
    if not upgrade:
        skip = {n.lower() for n in upgrade_packages}
        preferences = [to_record(p) for p in locked if p.manager == "conda" and p.name not in skip]
    gateway = rattler.Gateway(cache_dir=_cache_dir(), client=_client(auth) if auth else None)

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


@dataclass(frozen=True)
class ChannelAuth:
    """The credentials of one channel: sent to requests for `host` under `prefix`."""

    host: str
    prefix: str  # the channel's path, ending in "/"
    authorization: str  # an HTTP Basic header value (memory only)


def _where(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path ending in /) of an http(s) channel URL without userinfo."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/") + "/"


def channel_auth(channels: list[str]) -> list[ChannelAuth]:
    """The credentials of the (expanded) channels that carry userinfo; their passwords are
    remembered by the scrubber. rattler's header hook (AddHeadersMiddleware) is told the
    host and path of a request but not its scheme or port, so two channels on one host whose
    paths overlap but whose ports differ, one of them with credentials, are refused: the
    credentials could go to the other one."""
    from ..runtime.fetch import basic_authorization

    out: list[ChannelAuth] = []
    plain = [(c, _where(strip_credentials(c))) for c in channels]
    for channel, where in plain:
        _, userinfo, _ = split_userinfo(channel)
        if userinfo is None or where is None:
            continue
        remember_url(channel)
        scheme, host, port, prefix = where
        for other, there in plain:
            if there and there[1] == host and (there[0], there[2]) != (scheme, port):
                if there[3].startswith(prefix) or prefix.startswith(there[3]):
                    raise SolveError(
                        f"conda channels {strip_credentials(channel)} and {strip_credentials(other)} share a host and "
                        "a path but not a scheme and port; mlenv gives rattler a channel's credentials by host and path",
                        hint="serve them under distinct paths, or from one scheme and port",
                    )
        out.append(ChannelAuth(host, prefix, basic_authorization(userinfo)))
    return out


def _client(auth: list[ChannelAuth]):
    """rattler's default client (retries, its own keyring/netrc auth, oci/gcs/s3) that also adds
    each credentialed channel's Authorization header to the requests under its path."""
    from rattler.networking import (
        AddHeadersMiddleware,
        AuthenticationMiddleware,
        Client,
        GCSMiddleware,
        OciMiddleware,
        RetryMiddleware,
        S3Middleware,
    )

    def headers(host: str, path: str) -> dict[str, str] | None:
        matches = [a for a in auth if a.host == host.lower() and path.startswith(a.prefix)]
        if not matches:
            return None
        return {"Authorization": max(matches, key=lambda a: len(a.prefix)).authorization}

    return Client([RetryMiddleware(), AuthenticationMiddleware(), AddHeadersMiddleware(headers), OciMiddleware(),
                   GCSMiddleware(), S3Middleware()])  # fmt: skip


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
