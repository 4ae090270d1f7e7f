"""Finding an image that already exists for a content hash: in the local Docker
Engine (by label; mlenv.image.docker) or in a registry (one manifest HEAD).
Identical environments are never built twice."""

from __future__ import annotations


def names_registry(ref: str) -> bool:
    """Does the reference name a registry host (`127.0.0.1:5000/team/x:tag`), rather
    than a local name like the default `mlenv/NAME:HASH`?"""
    first = ref.split("/", 1)[0]
    return "/" in ref and ("." in first or ":" in first or first == "localhost")


def registry_digest_fast(ref: str) -> str | None:
    """The digest of ref's tag in its registry with a plain urllib HEAD; a registry that
    asks for credentials or a token (401) goes through registry_digest (requests).
    None when absent, unreachable, or not a registry reference."""
    import urllib.error
    import urllib.request

    from .. import image_ref

    if not names_registry(ref):
        return None
    parsed = image_ref.parse(ref)
    url = f"{parsed.api_base}/v2/{parsed.repository}/manifests/{parsed.tag}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": image_ref.MANIFEST_ACCEPT})
    handlers = [urllib.request.ProxyHandler({})] if image_ref.is_local_registry(parsed.registry) else []
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=5.0) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return registry_digest(ref)
        return None
    except (OSError, ValueError):
        return None


def registry_digest(ref: str) -> str | None:
    """Digest of ref's tag in its registry (manifest HEAD, with auth), None when absent."""
    from .. import image_ref

    if not names_registry(ref):
        return None
    try:
        return image_ref.resolve_digest(image_ref.parse(ref), timeout=5.0)
    except image_ref.ResolveError:
        return None
