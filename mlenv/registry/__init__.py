"""Registries of environment versions: the interface (base.py) and its backends.

`open_registry(url)` picks the backend by the URL's scheme: a path or file:// (the
embedded local registry), oci:// (any OCI registry), azureml:// (an Azure ML
workspace). A scheme not built in is looked up in the `mlenv.registries` entry-point
group, so a backend can be installed as a plugin; base.py imports no backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .base import Registry, RegistryError

BACKENDS = {
    "file": "mlenv.registry.local:LocalRegistry",
    "oci": "mlenv.registry.oci:OciRegistry",
    "azureml": "mlenv.registry.azureml:AzureMLRegistry",
}
ENTRY_POINT_GROUP = "mlenv.registries"


def _load(target: str) -> Callable[[str | None], Registry]:
    """A backend's constructor: it takes the registry URL (the local backend: a path or None)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_registry(url: str | None = None) -> Registry:
    """The registry at url; None: MLENV_REGISTRY, else `registry` in the user settings
    (mlenv.settings), else the embedded local registry under the user data dir."""
    from .. import settings

    url = url or settings.effective("registry") or None
    if url is None or url.startswith("file://") or "://" not in url:
        return _load(BACKENDS["file"])(url.removeprefix("file://") if url else None)
    scheme = url.split("://", 1)[0].lower()
    if scheme in BACKENDS:
        return _load(BACKENDS[scheme])(url)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.load()(url)
    raise RegistryError(f"unknown registry URL {url!r}",
                        hint="use a path, oci://host/namespace or azureml://subscriptions/...")  # fmt: skip


__all__ = ["open_registry", "BACKENDS"]
