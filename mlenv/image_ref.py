"""Image references: parse, normalize, and resolve a tag to a digest.

A lock pins the base image by digest, so a moved tag (`:latest`, `:3.11-slim`)
cannot silently change a locked environment. Resolution is one
`HEAD /v2/<repo>/manifests/<tag>` (with an anonymous or credentialed bearer
token where the registry asks for one); when the registry cannot be reached the
reference is recorded unresolved and the caller warns.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DOCKER_HUB = "docker.io"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


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

    def with_digest(self, digest: str) -> "ImageRef":
        return ImageRef(self.registry, self.repository, self.tag, digest)

    @property
    def pinned(self) -> str:
        """name@digest: what a Dockerfile FROM should use."""
        return f"{self.name}@{self.digest}" if self.digest else str(self)

    @property
    def api_base(self) -> str:
        host = "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry
        scheme = "http" if is_local_registry(self.registry) else "https"
        return f"{scheme}://{host}"


def is_local_registry(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.")


_REF_RE = re.compile(r"^(?:(?P<name>[a-z0-9][a-z0-9._\-/:\[\]]*?))(?::(?P<tag>[\w][\w.\-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$")


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
    """The registry's digest for ref's tag (the index digest for multi-arch images)."""
    import requests

    if ref.digest:
        return ref.digest
    url = f"{ref.api_base}/v2/{ref.repository}/manifests/{ref.tag}"
    headers = {"Accept": MANIFEST_ACCEPT}
    session = requests.Session()
    try:
        resp = session.head(url, headers=headers, timeout=timeout)
        if resp.status_code == 401:
            token = _bearer_token(session, resp.headers.get("WWW-Authenticate", ""), ref, timeout)
            if token:
                headers["Authorization"] = token
                resp = session.head(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise ResolveError(f"registry {ref.registry} unreachable ({type(exc).__name__})") from None
    if resp.status_code == 404:
        raise ResolveError(f"{ref} not found in registry {ref.registry}")
    if resp.status_code in (401, 403):
        raise ResolveError(f"registry {ref.registry} refused access to {ref.repository} (HTTP {resp.status_code}); run `docker login {ref.registry}`")
    if resp.status_code != 200:
        raise ResolveError(f"registry {ref.registry} answered HTTP {resp.status_code} for {ref}")
    digest = resp.headers.get("Docker-Content-Digest")
    if not digest:
        raise ResolveError(f"registry {ref.registry} gave no digest for {ref}")
    return digest


def _bearer_token(session, challenge: str, ref: ImageRef, timeout: float) -> str | None:
    if challenge.lower().startswith("basic"):
        creds = registry_credentials(ref.registry)
        if creds:
            raw = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            return f"Basic {raw}"
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if not realm:
        return None
    params.setdefault("scope", f"repository:{ref.repository}:pull")
    creds = registry_credentials(ref.registry)
    resp = session.get(realm, params=params, auth=creds, timeout=timeout)
    if resp.status_code != 200:
        return None
    body = resp.json()
    token = body.get("token") or body.get("access_token")
    return f"Bearer {token}" if token else None


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """Credentials for a registry: MLENV_REGISTRY_USERNAME/_PASSWORD, else the
    `auths` of ~/.docker/config.json (docker login). Never logged."""
    user, password = os.environ.get("MLENV_REGISTRY_USERNAME"), os.environ.get("MLENV_REGISTRY_PASSWORD")
    if user and password:
        return user, password
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(config.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if entry and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                continue
            return user, password
    return credential_helper(registry)


def credential_helper(host: str) -> tuple[str, str] | None:
    """`credHelpers` / `credsStore` of the Docker config: `docker-credential-<helper> get`."""
    import subprocess

    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    helper = (data.get("credHelpers") or {}).get(host) or data.get("credsStore")
    if not helper:
        return None
    try:
        proc = subprocess.run([f"docker-credential-{helper}", "get"], input=host, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        body = json.loads(proc.stdout)
    except ValueError:
        return None
    if body.get("Username") and body.get("Secret"):
        return body["Username"], body["Secret"]
    return None
