"""Image references: parse, normalize, and resolve a tag to a digest.

A lock pins the base image by digest, so a moved tag (`:latest`, `:3.11-slim`)
cannot silently change a locked environment. Resolution is one
`HEAD /v2/<repo>/manifests/<tag>` through mlenv.oci.client (auth, transport and
credentials live in mlenv.oci); when the registry cannot be reached the
reference is recorded unresolved and the caller warns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io, ghcr.io, 127.0.0.1:5000
    repository: str  # library/python
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, digest)

    @property
    def pinned(self) -> str:
        """name@digest: what a Dockerfile FROM should use."""
        return f"{self.name}@{self.digest}" if self.digest else str(self)

    @property
    def api_base(self) -> str:
        from .oci.transport import api_base

        return api_base(self.registry)


def is_local_registry(registry: str) -> bool:
    """127.0.0.0/8, localhost, [::1]: plain http, no proxy (mlenv.oci.transport.is_loopback)."""
    from .oci.transport import is_loopback

    return is_loopback(registry)


_REF_RE = re.compile(
    r"^(?:(?P<name>[a-z0-9][a-z0-9._\-/:\[\]]*?))(?::(?P<tag>[\w][\w.\-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def parse(reference: str) -> ImageRef:
    """Docker's normalization: `python:3.11` is docker.io/library/python:3.11."""
    m = _REF_RE.match(reference.strip())
    if not m or not m.group("name"):
        raise ValueError(f"invalid image reference {reference!r}")
    name, tag, digest = m.group("name"), m.group("tag"), m.group("digest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, repository, tag, digest)


class ResolveError(Exception):
    pass


def resolve_digest(ref: ImageRef, *, timeout: float = 6.0) -> str:
    """The registry's digest for ref's tag (the index digest for multi-arch images):
    one manifest HEAD through mlenv.oci.client (auth: mlenv.oci.auth)."""
    from .errors import MlenvError
    from .oci.client import RegistryClient

    if ref.digest:
        return ref.digest
    try:
        desc = RegistryClient(ref.registry, timeout=timeout).head_manifest(ref.repository, ref.tag or "latest")
    except MlenvError as exc:
        raise ResolveError(exc.message) from None
    if desc is None:
        raise ResolveError(f"{ref} not found in registry {ref.registry}")
    return desc.digest


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """(user, password) for a registry: MLENV_REGISTRY_USERNAME/_PASSWORD, the Docker
    config's credential helpers and `auths` (mlenv.oci.auth, their one home). Never logged."""
    from .oci.auth import registry_credentials as lookup

    return lookup(registry)
