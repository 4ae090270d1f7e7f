"""What a locked artifact's fields may look like, and where mlenv never connects.

A lock may come from someone else (a registry, a pull request), and its hash proves
only that it is intact. The fields that reach a file name, a requirement line or a
command are checked here, before anything is read or written (docs/security.md, "File
names and artifact sources"). Used by the installer (mlenv.runtime.fetch), inside image
build steps too, and by the host's sources rule (mlenv.sources). Duck-typed: anything
with manager, name, version, url, sha256 and get() (a plan Artifact, a lock Package).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .errors import InstallError

if TYPE_CHECKING:
    from typing import Protocol

    class Artifact(Protocol):  # mlenv.runtime.plan.Artifact, mlenv.lockfile.Package
        @property
        def manager(self) -> str: ...
        @property
        def name(self) -> str: ...
        @property
        def version(self) -> str: ...
        @property
        def url(self) -> str: ...
        @property
        def sha256(self) -> str: ...
        def get(self, key: str, default=None): ...


# What an artifact's file name may look like: installers need the real name (a
# wheel's tags, a conda package's extension), but it comes from a URL in a lock
# that may have come from someone else, so it must be one plain path component.
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!~-]{0,254}\Z", re.ASCII)
# The other fields of a lock that reach a path, a requirement line or a Dockerfile:
# the sha256 names the cache entry; a PyPI name goes into uv's requirement lines (PEP 508
# names); a conda name, version, build and subdir make py-rattler's cache and conda-meta
# file names (CEP 26 characters).
_SHA256 = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)
_PYPI_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?\Z", re.ASCII)
_CONDA_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z", re.ASCII)
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!-]{0,199}\Z", re.ASCII)
_BUILD = re.compile(r"[A-Za-z0-9_.+]{0,200}\Z", re.ASCII)
_SUBDIR = re.compile(r"[a-z0-9_-]{1,40}\Z", re.ASCII)
# a Debian package (mlenv.apt): Debian policy 5.6.1 names and 5.6.12 versions (epoch and ~ allowed)
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]{0,199}\Z", re.ASCII)
_APT_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]{0,199}\Z", re.ASCII)
_NAME_RE = {"pypi": _PYPI_NAME, "conda": _CONDA_NAME, "apt": _APT_NAME}


def _escaped(text: str) -> str:
    """Untrusted text for a message: control and non-ASCII characters escaped, clipped."""
    return text[:80].encode("unicode_escape").decode("ascii") + ("…" if len(text) > 80 else "")


def _shown(text: str) -> str:
    return repr(_escaped(text))


def artifact_filename(artifact: Artifact) -> str:
    """The artifact's file name: its `filename` field (a wheel mlenv built from git or a
    local directory, whose URL names the source), else the last segment of its URL,
    percent-decoded; either must be one plain file name (no separator, no `..`, ASCII)."""
    given = artifact.get("filename")
    if given is not None:
        name = given if isinstance(given, str) else repr(given)
        what = "its file name is"
    else:
        name = unquote(artifact.url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1])
        what = "its URL ends in"
    if not _FILENAME.match(name) or ".." in name:
        raise InstallError(
            f"{kind(artifact)} {_escaped(artifact.name)}: {what} {_shown(name)}, which is not a plain file name",
            hint="the lock was crafted or corrupted; re-lock from a trusted spec",
        )
    return name


def check_artifact(artifact: Artifact) -> str:
    """Every field of a locked artifact that reaches a file name, a requirement line or a
    command, checked (a lock is input like any other): returns its file name."""

    def bad(what: str) -> InstallError:
        return InstallError(f"{kind(artifact)} {_escaped(artifact.name)}: {what}",
                            hint="the lock was crafted or corrupted; re-lock from a trusted spec")  # fmt: skip

    pattern = _NAME_RE.get(artifact.manager)
    if pattern is None or not pattern.match(artifact.name):
        raise bad("not a valid package name")
    if not (_APT_VERSION if artifact.manager == "apt" else _VERSION).match(artifact.version):
        raise bad(f"version {_shown(artifact.version)} is not a valid version")
    if not _SHA256.match(artifact.sha256):
        raise bad(f"sha256 {_shown(artifact.sha256)} is not 64 lowercase hex digits")
    if artifact.manager == "conda":
        build, subdir = artifact.get("build", ""), artifact.get("subdir", "noarch")
        if not isinstance(build, str) or not _BUILD.match(build):
            raise bad(f"build {_shown(str(build))} is not a valid build string")
        if not isinstance(subdir, str) or not _SUBDIR.match(subdir):
            raise bad(f"subdir {_shown(str(subdir))} is not a valid platform")
    return artifact_filename(artifact)


def kind(artifact: Artifact) -> str:
    return {"conda": "conda package", "apt": "Debian package"}.get(artifact.manager, "PyPI package")


def blocked_address(host: str) -> str | None:
    """Why mlenv never sends a request to `host`, or None: an IP literal that is
    link-local (169.254.0.0/16, fe80::/10: cloud metadata services live there),
    unspecified, multicast or broadcast. No package index lives at such an address."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        if not re.fullmatch(r"[0-9a-fA-FxX.]+", host):
            return None
        import socket

        try:  # the legacy forms the resolver also accepts: 0xa9.0xfe.0xa9.0xfe, 2852039166, 169.254.43518
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if ip.is_unspecified or ip.is_multicast or str(ip) == "255.255.255.255":
        return "not a host address"
    return None
