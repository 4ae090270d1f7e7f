"""ui: the read-only web catalog of a registry, served or exported (mlenv.ui; docs/ui.md)."""

from __future__ import annotations

import os
from collections.abc import Callable


def ui(
    registry: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8040,
    export_dir: str | os.PathLike[str] | None = None,
    curated_dir: str | os.PathLike[str] | None = None,
    image_layers: str = "auto",
    refresh: float = 10.0,
    on_ready: Callable[[str, str], None] | None = None,
):
    """Serve the catalog at http://HOST:PORT/ until interrupted (on_ready(url, registry
    label) is called once it listens), or, with export_dir, write it as a static site and
    return the export report. Binds to 127.0.0.1 unless told otherwise; GET and HEAD only."""
    from pathlib import Path

    from ..ui.catalog import Catalog

    if export_dir:
        from ..ui.export import export

        with Catalog.open(registry, curated_dir=curated_dir, image_layers=image_layers, ttl=float("inf")) as catalog:
            return export(catalog, Path(export_dir))
    from ..ui.server import bind, serve

    catalog = Catalog.open(registry, curated_dir=curated_dir, image_layers=image_layers, ttl=refresh)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    if on_ready:
        on_ready(f"http://{shown}:{sock.getsockname()[1]}/", catalog.label)
    try:
        serve(catalog, sock, host=host)
    finally:
        catalog.close()
        sock.close()
    return None
