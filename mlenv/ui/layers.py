"""The layer sizes of a pushed image, read from its registry by digest.

Three GETs of the OCI distribution API, each verified against its digest: the manifest
named by the recorded digest (an index or manifest list is followed to the entry of the
page's platform), then the image config, whose `history` pairs each layer with the step
that made it. Sizes are the registry's (compressed) layer sizes: what a `docker pull`
downloads. Credentials and the token dance are mlenv.image_ref's (docker login).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from ..errors import MlenvError
from ..image_ref import MANIFEST_ACCEPT, ImageRef, is_local_registry, parse

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_DOCUMENT = 4 * 1024 * 1024  # a manifest or config larger than this is refused
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
# mlenv platform -> (os, architecture[, variant]) in an image index
OCI_PLATFORMS = {
    "linux-64": ("linux", "amd64"),
    "linux-aarch64": ("linux", "arm64"),
    "linux-ppc64le": ("linux", "ppc64le"),
}


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
    import requests

    if not DIGEST_RE.match(digest or ""):
        raise LayerError(f"{digest!r} is not a sha256 digest")
    try:
        ref = parse(image)
    except ValueError:
        raise LayerError(f"{image!r} is not an image reference") from None
    session = requests.Session()
    if is_local_registry(ref.registry):
        session.trust_env = False  # never route loopback through a proxy
    try:
        raw = _get(session, ref, f"manifests/{digest}", MANIFEST_ACCEPT, digest, timeout)
        manifest = _json(raw, "manifest")
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            digest = _pick(manifest, platform)
            manifest = _json(_get(session, ref, f"manifests/{digest}", MANIFEST_ACCEPT, digest, timeout), "manifest")
        layers = manifest.get("layers")
        config = manifest.get("config") or {}
        if not isinstance(layers, list) or not DIGEST_RE.match(str(config.get("digest", ""))):
            raise LayerError(f"{ref.name}@{digest[:19]}…: not an image manifest")
        steps = _steps(
            _json(_get(session, ref, f"blobs/{config['digest']}", "*/*", config["digest"], timeout), "config")
        )
    except requests.RequestException as exc:
        raise LayerError(f"registry {ref.registry} unreachable ({type(exc).__name__})") from None
    finally:
        session.close()
    out = ImageLayers(f"{ref.name}@{digest}")
    for i, layer in enumerate(layers):
        size = layer.get("size") if isinstance(layer, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise LayerError(f"{ref.name}@{digest[:19]}…: layer {i} has no valid size")
        out.layers.append(Layer(str(layer.get("digest", "")), size, steps[i] if i < len(steps) else ""))
    return out


def _get(session, ref: ImageRef, path: str, accept: str, digest: str, timeout: float) -> bytes:
    from ..image_ref import _bearer_token

    url = f"{ref.api_base}/v2/{ref.repository}/{path}"
    headers = {"Accept": accept}
    resp = session.get(url, headers=headers, timeout=timeout, stream=True)
    if resp.status_code == 401:
        token = _bearer_token(session, resp.headers.get("WWW-Authenticate", ""), ref, timeout)
        if token:
            headers["Authorization"] = token
            resp = session.get(url, headers=headers, timeout=timeout, stream=True)
    if resp.status_code != 200:
        raise LayerError(f"registry {ref.registry} answered HTTP {resp.status_code} for {ref.name}@{digest[:19]}…")
    data = resp.raw.read(MAX_DOCUMENT + 1, decode_content=True)
    if len(data) > MAX_DOCUMENT:
        raise LayerError(f"{ref.name}: {path.split('/')[0]} larger than {MAX_DOCUMENT} bytes; not read")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise LayerError(f"registry {ref.registry}: {ref.name}@{digest[:19]}… does not match its digest; not used")
    return data


def _json(raw: bytes, what: str) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        raise LayerError(f"the image {what} is not JSON") from None
    if not isinstance(data, dict):
        raise LayerError(f"the image {what} is not a JSON object")
    return data


def _pick(index: dict, platform: str) -> str:
    want = OCI_PLATFORMS.get(platform)
    for entry in index.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        plat = entry.get("platform") or {}
        if (
            want
            and (plat.get("os"), plat.get("architecture")) == want
            and DIGEST_RE.match(str(entry.get("digest", "")))
        ):
            return str(entry["digest"])
    raise LayerError(f"the image index has no manifest for {platform}")


def _steps(config: dict) -> list[str]:
    """created_by of the history entries that made a layer, in layer order."""
    history = config.get("history")
    if not isinstance(history, list):
        return []
    return [str(h.get("created_by") or "") for h in history if isinstance(h, dict) and not h.get("empty_layer")]
