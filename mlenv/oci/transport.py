"""HTTP sessions for registries: which scheme, which proxy, which CA.

- A registry on 127.0.0.0/8, `localhost` or `[::1]` is spoken to in plain http and
  never through a proxy (a session with `trust_env=False`: HTTP(S)_PROXY must not
  route loopback traffic elsewhere).
- Every other registry is https only, verified against the CA bundle from
  `MLENV_CA_BUNDLE`, else the `ca-bundle` user setting, else `REQUESTS_CA_BUNDLE`,
  else `SSL_CERT_FILE`, else the system default (certifi).
- A URL handed out by a registry (upload Location, token realm, blob redirect) is
  input: http(s) only, and plain http only to a loopback host.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import MlenvError


def host_of(registry_or_url: str) -> str:
    """The host part (no port, no brackets) of `host[:port]` or a URL."""
    netloc = urlsplit(registry_or_url).netloc if "://" in registry_or_url else registry_or_url
    netloc = netloc.rsplit("@", 1)[-1]
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def is_loopback(registry_or_url: str) -> bool:
    host = host_of(registry_or_url).lower()
    return host == "localhost" or host == "::1" or (host.startswith("127.") and host.replace(".", "").isdigit())


def api_base(registry: str) -> str:
    host = "registry-1.docker.io" if registry == "docker.io" else registry
    return f"{'http' if is_loopback(registry) else 'https'}://{host}"


def ca_bundle() -> str | bool:
    """What requests verifies TLS with: mlenv's CA bundle (MLENV_CA_BUNDLE, else the
    ca-bundle setting: mlenv.settings.ca_bundle), else the bundle requests itself
    would use (REQUESTS_CA_BUNDLE, SSL_CERT_FILE), else the default trust store."""
    from .. import settings

    return settings.ca_bundle() or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True


def new_session(loopback: bool):
    import requests

    s = requests.Session()
    if loopback:
        s.trust_env = False
    else:
        s.verify = ca_bundle()
    s.headers["User-Agent"] = "mlenv-oci"
    s.mlenv_loopback = loopback  # type: ignore[attr-defined]
    return s


def session_for(url: str, session=None):
    """session when it fits url's loopback-ness, else a new one."""
    loopback = is_loopback(url)
    if session is not None and getattr(session, "mlenv_loopback", None) == loopback:
        return session
    return new_session(loopback)


def check_url(url: str, registry: str, *, what: str, with_secret: bool = False) -> str:
    """A URL from a registry's answer, accepted only as http(s), plain http only on
    loopback (so no token or credential ever crosses the network in clear text)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MlenvError(f"registry {registry} sent an unusable {what} URL (scheme {parts.scheme or 'none'!r})")
    if parts.scheme == "http" and not is_loopback(url):
        raise MlenvError(
            f"registry {registry} sent a plain-http {what} URL for host {host_of(url)}"
            f"{' (credentials would travel in clear text)' if with_secret else ''}; refusing it"
        )
    return url
