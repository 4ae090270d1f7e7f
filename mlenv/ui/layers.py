"""The layer sizes of a pushed image, read from its registry by digest.

Three GETs of the OCI distribution API, each verified against its digest: the manifest
named by the recorded digest (an index or manifest list is followed to the entry of the
page's platform), then the image config, whose `history` pairs each layer with the step
that made it. Sizes are the registry's (compressed) layer sizes: what a `docker pull`
downloads. Transport, credentials and checks are mlenv.oci.client's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..errors import MlenvError
from ..image_ref import parse

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_DOCUMENT = 4 * 1024 * 1024  # a manifest or config larger than this is refused


class LayerError(MlenvError):
    pass


@dataclass
class Layer:
    digest: str
    size: int
    created_by: str  # the build step that made it ("" when the config has no history for it)


@dataclass
class ImageLayers:
    reference: str  # name@digest of the platform's manifest
    layers: list[Layer] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(layer.size for layer in self.layers)


def registry_host(image: str) -> str | None:
    try:
        return parse(image).registry
    except ValueError:
        return None


def pushed_layers(image: str, digest: str, platform: str, *, timeout: float = 5.0) -> ImageLayers:
    """The layers of image@digest for platform, through mlenv's registry client
    (mlenv.oci.client: every document checked against its digest, auth from docker login)."""
    import tempfile

    from ..oci.client import RegistryClient
    from ..oci.manifest import kind, parse_image_manifest, parse_index, platform_of, select_platform
    from ..oci.store import BlobStore

    if not DIGEST_RE.match(digest or ""):
        raise LayerError(f"{digest!r} is not a sha256 digest")
    try:
        ref = parse(image)
    except ValueError:
        raise LayerError(f"{image!r} is not an image reference") from None
    where = f"{ref.name}@{digest[:19]}…"
    client = RegistryClient(ref.registry, timeout=timeout)
    try:
        m = client.get_manifest(ref.repository, digest)
        if kind(m.data, m.media_type, where) == "index":
            try:
                target = platform_of(platform)
            except MlenvError:
                raise LayerError(f"no image platform for {platform}") from None
            digest = select_platform(parse_index(m.data, where), target, where).digest
            m = client.get_manifest(ref.repository, digest)
        manifest = parse_image_manifest(m.data, where)
        if manifest.config.size > MAX_DOCUMENT:
            raise LayerError(f"{ref.name}: image config larger than {MAX_DOCUMENT} bytes; not read")
        with tempfile.TemporaryDirectory(prefix="mlenv-ui-") as tmp:
            store = BlobStore(tmp)
            client.fetch_blob(ref.repository, manifest.config, store)
            steps = _steps(_json(store.read(manifest.config.digest), "config"))
    finally:
        client.close()
    out = ImageLayers(f"{ref.name}@{digest}")
    for i, layer in enumerate(manifest.layers):
        out.layers.append(Layer(layer.digest, layer.size, steps[i] if i < len(steps) else ""))
    return out


def _json(raw: bytes, what: str) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        raise LayerError(f"the image {what} is not JSON") from None
    if not isinstance(data, dict):
        raise LayerError(f"the image {what} is not a JSON object")
    return data


def _steps(config: dict) -> list[str]:
    """created_by of the history entries that made a layer, in layer order."""
    history = config.get("history")
    if not isinstance(history, list):
        return []
    return [str(h.get("created_by") or "") for h in history if isinstance(h, dict) and not h.get("empty_layer")]
