"""What `build` (and `rebase`) returns: its own small module, so the API's result types
(mlenv.api.results) import it without the build orchestration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ImageResult:
    """What `build` did: reused an image, built one, or rendered its Dockerfile."""

    image: str  # REPO/NAME:SHORT_HASH
    name: str
    content_hash: str
    short_hash: str
    action: str = ""  # "reused" | "built" | "rendered" | "rebased"
    where: str | None = None  # reused: "local" | "registry"
    id: str | None = None  # the local image id
    digest: str | None = None  # the registry's manifest digest, when known
    retagged: bool | None = None
    builder: str | None = None
    log: str | None = None
    pushed: str | None = None  # the pushed digest
    directory: str | None = None  # rendered: where the context was written
    layers: list[dict] | None = None  # daemonless: the image's layers (id, digest, size, cached)
    upload: dict | None = None  # daemonless: what the push uploaded, mounted, skipped
    pycs: dict | None = None  # daemonless: .pyc files compiled and reused from the pyc cache
    seconds: float = 0.0
    message: str = ""

    @property
    def reused(self) -> bool:
        return self.action == "reused"

    @property
    def ref(self) -> str:
        return self.image

    def to_json(self) -> dict:
        keys = ("image", "name", "content_hash", "short_hash", "action", "where", "id", "digest", "retagged",
                "builder", "log", "pushed", "directory", "layers", "upload", "pycs", "seconds")  # fmt: skip
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
