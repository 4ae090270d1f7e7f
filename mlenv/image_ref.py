"""Image references: parse and normalize (resolving a tag to a digest: mlenv.oci.client).

A lock pins the base image by digest, so a moved tag (`:latest`, `:3.11-slim`)
cannot silently change a locked environment. Resolution is one
`HEAD /v2/<repo>/manifests/<tag>` (mlenv.oci.client.resolve_digest: auth, transport
and credentials live in mlenv.oci); when the registry cannot be reached the
reference is recorded unresolved and the caller warns. This module parses; the
OCI client uses it, and it asks only mlenv.oci.transport (which imports neither)
how a registry is reached.
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
