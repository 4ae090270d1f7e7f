"""Registry credentials and the distribution auth handshake, in one home.

Credentials for a registry host, first match wins:

1. `MLENV_REGISTRY_USERNAME` / `MLENV_REGISTRY_PASSWORD` (both set; any registry);
2. the Docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`),
   in Docker's own order: `credHelpers[host]`, else `credsStore`, each run as
   `docker-credential-<helper> get` with the host on stdin; else (or when the
   helper has nothing for the host) the `auths` entry whose key names the host
   (`host`, `https://host`, `https://host/v1/`, ...: the key's scheme and path are
   ignored, as Docker does).

A helper that answers `Username: "<token>"` hands out an identity token (an
OAuth2 refresh token, e.g. Azure Container Registry); it is exchanged at the
token service with `grant_type=refresh_token`.

On a 401 the registry's `WWW-Authenticate` challenge says what to do:
`Basic` sends the credentials; `Bearer realm=...,service=...,scope=...` asks
the token service for a token for the scopes the request needs (anonymously
when there are no credentials). Tokens are cached per (registry, scopes) until
their `expires_in` (60 s when not given) runs out.

Secrets stay in memory: no message, log line or exception names one; errors name
the registry and the source of the credentials ("from the Docker config
credential helper mlenvtest"), never the value.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlenvError

DOCKER_HUB = "docker.io"
_HUB_KEYS = ("index.docker.io", "registry-1.docker.io", "docker.io")
HELPER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
IDENTITY_TOKEN_USER = "<token>"


class AuthError(MlenvError):
    """A registry refused the credentials, or the auth handshake failed."""


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str = field(repr=False)
    source: str  # where they came from, for messages: never the value
    identity_token: bool = False  # secret is an OAuth2 refresh token

    def basic(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


# --- WWW-Authenticate -------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,|\Z)')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer", ...
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header (RFC 7235: a scheme, then
    comma-separated auth-params, values quoted or tokens). None when the header is
    empty or unreadable: the caller then reports the 401 as it is."""
    if not isinstance(header, str):
        return None
    m = re.match(rf"\s*({_TOKEN})(?:\s+|\Z)", header)
    if not m:
        return None
    scheme, rest = m.group(1).lower(), header[m.end() :]
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        pm = _PARAM_RE.match(rest, pos)
        if not pm:
            break  # a second challenge or junk: keep what was read
        key = pm.group(1).lower()
        value = re.sub(r"\\(.)", r"\1", pm.group(2)) if pm.group(2) is not None else pm.group(3)
        params.setdefault(key, value)
        pos = pm.end()
    return Challenge(scheme, params)


# --- the Docker config ------------------------------------------------------------------


@dataclass(frozen=True)
class DockerConfig:
    path: str
    auths: dict[str, dict[str, Any]] = field(default_factory=dict)
    cred_helpers: dict[str, str] = field(default_factory=dict)
    creds_store: str | None = None


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def parse_docker_config(text: str, path: str = "config.json") -> DockerConfig:
    """The parts of a Docker config.json mlenv reads. Malformed JSON or a wrong
    type is one MlenvError naming the file (never its content: it holds secrets)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AuthError(
            f"{path}: not valid JSON (line {getattr(exc, 'lineno', '?')})",
            hint="fix or remove the Docker config (`docker login` rewrites it)",
        ) from None
    if not isinstance(data, dict):
        raise AuthError(f"{path}: the Docker config must be a JSON object")
    auths = data.get("auths") or {}
    helpers = data.get("credHelpers") or {}
    store = data.get("credsStore") or None
    if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
        raise AuthError(f"{path}: `auths` must map registry names to objects")
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise AuthError(f"{path}: `credHelpers` must map registry names to helper names")
    if store is not None and not isinstance(store, str):
        raise AuthError(f"{path}: `credsStore` must be a helper name")
    return DockerConfig(path, {str(k): v for k, v in auths.items()}, {str(k): v for k, v in helpers.items()}, store)


def load_docker_config() -> DockerConfig | None:
    path = docker_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"cannot read the Docker config {path} ({type(exc).__name__})") from None
    return parse_docker_config(text, str(path))


def _key_host(key: str) -> str:
    """Docker's convertToHostname: drop the scheme and any path."""
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key)
    return host.split("/", 1)[0].lower()


def _same_registry(key: str, registry: str) -> bool:
    host = _key_host(key)
    registry = registry.lower()
    if registry == DOCKER_HUB:
        return host in _HUB_KEYS
    return host == registry


def _from_auths(config: DockerConfig, registry: str) -> Credentials | None:
    for key in sorted(config.auths, key=lambda k: (k != registry, k)):  # exact key first, then stable order
        if not _same_registry(key, registry):
            continue
        entry = config.auths[key]
        token = entry.get("identitytoken")
        raw = entry.get("auth")
        user, password = entry.get("username"), entry.get("password")
        if isinstance(raw, str) and raw:
            try:
                user, _, password = base64.b64decode(raw, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AuthError(
                    f"{config.path}: the `auths` entry for {registry} is not base64 of user:password",
                    hint=f"run `docker login {registry}` again",
                ) from None
        if isinstance(token, str) and token:
            return Credentials(user or IDENTITY_TOKEN_USER, token, f"the Docker config {config.path}", True)
        if isinstance(user, str) and user and isinstance(password, str):
            return Credentials(user, password, f"the Docker config {config.path}")
    return None


def run_credential_helper(helper: str, registry: str, *, timeout: float = 20.0) -> Credentials | None:
    """`docker-credential-<helper> get` for registry. None when the helper is not
    installed or has nothing for the host (Docker then falls back to anonymous)."""
    import subprocess

    if not HELPER_RE.match(helper):
        raise AuthError(
            f"invalid credential helper name {helper[:40]!r} in the Docker config",
            hint="helper names are letters, digits, '.', '_' and '-'",
        )
    name = f"docker-credential-{helper}"
    servers = [registry] if registry != DOCKER_HUB else ["https://index.docker.io/v1/", registry]
    for server in servers:
        try:
            proc = subprocess.run(
                [name, "get"], check=False, input=server, capture_output=True, text=True, timeout=timeout
            )
        except FileNotFoundError:
            return None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AuthError(f"credential helper {name} failed for {registry} ({type(exc).__name__})") from None
        if proc.returncode != 0:
            continue  # "credentials not found in native keychain"
        try:
            body = json.loads(proc.stdout)
        except ValueError:
            raise AuthError(f"credential helper {name} answered something that is not JSON for {registry}") from None
        if not isinstance(body, dict):
            continue
        user, secret = body.get("Username"), body.get("Secret")
        if isinstance(user, str) and isinstance(secret, str) and secret:
            source = f"the Docker credential helper {helper}"
            return Credentials(user, secret, source, identity_token=user == IDENTITY_TOKEN_USER)
    return None


def lookup_credentials(registry: str) -> Credentials | None:
    """Credentials for registry (a host[:port], e.g. `ghcr.io`, `127.0.0.1:5000`,
    `docker.io`), in the order of the module docstring; None for anonymous."""
    user, password = os.environ.get("MLENV_REGISTRY_USERNAME"), os.environ.get("MLENV_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(user, password, "MLENV_REGISTRY_USERNAME/MLENV_REGISTRY_PASSWORD")
    config = load_docker_config()
    if config is None:
        return None
    helper = next((h for k, h in sorted(config.cred_helpers.items()) if _same_registry(k, registry)), None)
    helper = helper or config.creds_store
    if helper:
        found = run_credential_helper(helper, registry)
        if found is not None:
            return found
    return _from_auths(config, registry)


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for registry, or None: the tuple form older call sites
    use (docker SDK auth_config, requests auth). Identity tokens are not returned
    here: they only work at a token service."""
    creds = lookup_credentials(registry)
    if creds is None or creds.identity_token:
        return None
    return creds.username, creds.secret


# --- tokens ----------------------------------------------------------------------------


def parse_token_response(body: bytes) -> tuple[str, float]:
    """(token, lifetime in seconds) from a token service answer (distribution's
    token spec: `token` or `access_token`, optional `expires_in`)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise AuthError("the token service answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise AuthError("the token service answered something that is not a JSON object")
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
        raise AuthError("the token service answered without a usable token")
    expires = data.get("expires_in")
    lifetime = float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else 60.0
    return token, max(0.0, min(lifetime, 86400.0))


class Authorizer:
    """Answers 401 challenges for one registry and caches the Authorization values.

    `header(scopes)` is what to send before any challenge (a cached token or
    basic auth once the registry asked for it); `answer(session, challenge_header,
    scopes)` performs the handshake after a 401 and returns the new value, or None
    when there is nothing to try (no credentials for Basic, no realm)."""

    def __init__(self, registry: str, *, timeout: float = 30.0):
        self.registry = registry
        self.timeout = timeout
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._gates: dict[tuple[str, ...], threading.Lock] = {}  # one token fetch per scope set at a time
        self._basic: str | None = None
        self._creds: Credentials | None = None
        self._looked_up = False

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._looked_up:
                self._creds = lookup_credentials(self.registry)
                self._looked_up = True
            return self._creds

    def header(self, scopes: list[str] | tuple[str, ...]) -> str | None:
        """The Authorization value to send: a live token for these scopes (or for a
        superset of them: a pull,push token serves a pull), else basic auth once
        the registry asked for it, else None."""
        want = _scope_set(scopes)
        now = time.monotonic()
        with self._lock:
            got = self._tokens.get(tuple(sorted(set(scopes))))
            if got and got[1] > now:
                return got[0]
            for key, (value, expiry) in self._tokens.items():
                if expiry > now and want <= _scope_set(key):
                    return value
            return self._basic

    def answer(self, session, header: str, scopes: list[str] | tuple[str, ...], sent: str | None = None) -> str | None:
        """After a 401: the value to retry with. `sent` is what the refused request
        carried; when another thread has meanwhile fetched a newer token for these
        scopes, that one is returned (one token request per scope set, not one per
        thread)."""
        challenge = parse_challenge(header)
        if challenge is None:
            return None
        creds = self.credentials()
        if challenge.scheme == "basic":
            if creds is None or creds.identity_token:
                return None
            with self._lock:
                self._basic = creds.basic()
            return self._basic
        if challenge.scheme != "bearer" or not challenge.realm:
            return None
        key = tuple(sorted(set(scopes)))
        with self._lock:
            gate = self._gates.setdefault(key, threading.Lock())
        with gate:
            current = self.header(scopes)
            if current and current != sent and current.startswith("Bearer "):
                return current
            ask = list(key) or ([challenge.params["scope"]] if "scope" in challenge.params else [])
            token, lifetime = self._fetch_token(session, challenge, ask, creds)
            value = f"Bearer {token}"
            with self._lock:
                # renewed 5 s early; a token without a lifetime is kept for 60 s
                self._tokens[key] = (value, time.monotonic() + max(0.0, lifetime - 5))
        return value

    def _fetch_token(self, session, challenge: Challenge, scopes: list[str], creds: Credentials | None):
        import requests

        from .transport import check_url, session_for

        realm = challenge.realm or ""
        check_url(realm, self.registry, what="token service", with_secret=creds is not None)
        params: dict[str, Any] = {}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        if scopes:
            params["scope"] = scopes
        try:
            s = session_for(realm, session)
            if creds is not None and creds.identity_token:
                form = dict(params, grant_type="refresh_token", refresh_token=creds.secret, client_id="mlenv")
                resp = s.post(realm, data=form, timeout=self.timeout)
            else:
                auth = (creds.username, creds.secret) if creds is not None else None
                resp = s.get(realm, params=params, auth=auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise AuthError(
                f"registry {self.registry}: its token service is unreachable ({type(exc).__name__})",
                hint="check the network path to the registry's auth realm",
            ) from None
        if resp.status_code in (401, 403):
            raise refused(self.registry, resp.status_code, creds)
        if resp.status_code != 200:
            raise AuthError(f"registry {self.registry}: its token service answered HTTP {resp.status_code}")
        return parse_token_response(resp.content)


def _scope_set(scopes) -> set[tuple[str, str, str]]:
    """{(type, name, action)} of scope strings like `repository:team/env:pull,push`."""
    out = set()
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        out |= {(kind, name, a) for a in actions.split(",") if a}
    return out


def refused(registry: str, status: int, creds: Credentials | None, what: str = "") -> AuthError:
    """The one-line refusal: names the registry and where the credentials came from."""
    src = f"with the credentials from {creds.source}" if creds is not None else "no credentials configured"
    return AuthError(
        f"registry {registry} refused access{(' to ' + what) if what else ''} (HTTP {status}, {src})",
        hint=f"run `docker login {registry}` or set MLENV_REGISTRY_USERNAME and MLENV_REGISTRY_PASSWORD",
    )
