"""An image whose manifest, config and layers are all in the blob store: what a pull
from a registry (mlenv.oci.pull) or a read from the Engine (mlenv.oci.engine) gives."""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import Platform
from .store import Descriptor


@dataclass(frozen=True)
class PulledImage:
    """An image whose manifest, config and layers are all in the store."""

    reference: str  # as asked
    source: str  # "registry" or "engine"
    name: str  # registry/repository, or the Engine's name for it
    digest: str  # what a lock pins (see the module docstring)
    manifest_digest: str
    manifest_media_type: str
    manifest: bytes
    config_digest: str
    config_media_type: str
    config: bytes
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    platform: Platform
    index_digest: str | None = None

    @property
    def pinned(self) -> str:
        return f"{self.name}@{self.digest}"

    @property
    def manifest_descriptor(self) -> Descriptor:
        return Descriptor(
            self.manifest_media_type, self.manifest_digest, len(self.manifest), platform=self.platform.to_json()
        )

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor(self.config_media_type, self.config_digest, len(self.config))
