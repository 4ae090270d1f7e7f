"""An OCI registry as the environment registry (CNCF distribution, Harbor, ACR, GHCR...).

URL: `oci://host[:port]/namespace`. Plain http for 127.0.0.0/8 and localhost,
https otherwise. Everything goes through the distribution HTTP API with
requests (see docs/registry.md, "Why not oras-py").

Layout, for environment NAME in repository `<namespace>/<NAME>`:

- each version is an OCI image manifest with `artifactType`
  `application/vnd.mlenv.environment.v1`, the empty config descriptor, and two
  layers: the spec (`application/vnd.mlenv.spec.v1+toml`) and the lock
  (`application/vnd.mlenv.lock.v1+toml`); manifest annotations carry
  `org.mlenv.name`, `org.mlenv.version`, `org.mlenv.content-hash`,
  `org.opencontainers.image.description` and `org.opencontainers.image.created`.
  It is tagged `v<N>` and `sha256-<64 hex of the content hash>`.
- mutable state (environment/version archived flags, edited descriptions,
  image records, labels and their history) is one JSON document, the single
  layer (`application/vnd.mlenv.state.v1+json`) of a manifest with artifactType
  `application/vnd.mlenv.state.v1`, tagged `mlenv-state`. Labels are also
  mirrored as tags `label-<label>` on the version manifest, so a plain
  `docker`/`oras` client resolves `NAME:label-prod`.

Distribution has no conditional PUT, so version allocation and state updates
are optimistic: write, wait a moment, re-read, retry on a lost race (see
docs/registry.md, "Concurrency").
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from ..runtime.text import clip, first_line
from ..validation import has_control, quote
from .base import NotFound, Registered, Registry, RegistryError, Version, check_label
from .records import check_name, damaged, is_label, is_number, is_optional_ref, is_text, make_version, parse_number

if TYPE_CHECKING:
    import requests

    from ..oci.auth import Authorizer

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT = "application/vnd.mlenv.environment.v1"
STATE_ARTIFACT = "application/vnd.mlenv.state.v1"
SPEC_MEDIA = "application/vnd.mlenv.spec.v1+toml"
LOCK_MEDIA = "application/vnd.mlenv.lock.v1+toml"
STATE_MEDIA = "application/vnd.mlenv.state.v1+json"
WHEEL_MEDIA = "application/vnd.mlenv.wheel.v1+zip"  # a wheel mlenv built for the lock (git, local packages)
EMPTY_MEDIA = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_DATA).hexdigest()
STATE_TAG = "mlenv-state"

A_NAME = "org.mlenv.name"
A_VERSION = "org.mlenv.version"
A_HASH = "org.mlenv.content-hash"
A_DESC = "org.opencontainers.image.description"
A_CREATED = "org.opencontainers.image.created"
A_TITLE = "org.opencontainers.image.title"

# OCI distribution repository path component
COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z", re.ASCII)
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z", re.ASCII)
SETTLE = float(os.environ.get("MLENV_OCI_SETTLE", "0.05"))  # seconds between write and re-read


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class AuthRefused(RegistryError):
    pass


class OciRegistry(Registry):
    def __init__(self, url: str, *, timeout: float = 15.0):
        rest = url.removeprefix("oci://").strip("/")
        host, _, namespace = rest.partition("/")
        if not host:
            raise RegistryError(f"invalid OCI registry URL {url!r}", hint="use oci://host[:port]/namespace")
        for part in namespace.split("/") if namespace else []:
            if not COMPONENT_RE.match(part):
                raise RegistryError(
                    f"invalid namespace {namespace!r} in {url!r}",
                    hint="lowercase letters and digits, separated by '.', '_', '__' or '-'",
                )
        from ..image_ref import is_local_registry

        self.url = f"oci://{host}/{namespace}" if namespace else f"oci://{host}"
        self.host = host
        self.namespace = namespace
        self.local = is_local_registry(host)
        self.base = f"{'http' if self.local else 'https'}://{host}"
        self.timeout = timeout
        self._session: requests.Session | None = None
        self._tokens: dict[str, str] = {}  # scope -> Authorization header value
        self._basic: str | None = None
        self._authorizer: Authorizer | None = None  # made at the first 401

    # --- HTTP plumbing --------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            s = requests.Session()
            if self.local:
                s.trust_env = False  # never route loopback through a proxy
            else:
                from ..oci.transport import ca_bundle

                s.verify = ca_bundle()  # the same CA as every other download (a corporate proxy's)
            s.headers["User-Agent"] = "mlenv-registry"
            self._session = s
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def repo(self, name: str) -> str:
        if not COMPONENT_RE.match(name):
            raise RegistryError(
                f"environment name {name!r} is not a valid OCI repository name",
                hint="use lowercase letters and digits separated by single '.', '_' or '-'",
            )
        return f"{self.namespace}/{name}" if self.namespace else name

    def _credentials(self) -> tuple[str, str] | None:
        from ..oci.auth import registry_credentials

        return registry_credentials(self.host)

    def _request(self, method: str, path: str, *, scope: str | None = None, ok=(200,), **kw):
        import requests

        url = path if path.startswith("http") else self.base + path
        headers = dict(kw.pop("headers", {}) or {})
        auth = self._tokens.get(scope or "") or self._basic
        if auth:
            headers["Authorization"] = auth
        # Reads and manifest PUTs are idempotent: retry them on a transient 5xx
        # (distribution's filesystem driver answers 500 when it reads a tag link
        # another request is rewriting at that moment).
        retries = 4 if method in ("GET", "HEAD") or (method == "PUT" and "/manifests/" in path) else 0
        try:
            for attempt in range(retries + 1):
                resp = self.session.request(method, url, headers=headers, timeout=self.timeout, **kw)
                if resp.status_code == 401:
                    value = self._authenticate(resp.headers.get("WWW-Authenticate", ""), scope)
                    if value:
                        headers["Authorization"] = value
                        resp = self.session.request(method, url, headers=headers, timeout=self.timeout, **kw)
                if resp.status_code < 500 or attempt == retries:
                    break
                time.sleep(0.05 * (2**attempt) * (1 + random.random()))
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"registry {self.host}: TLS error ({_short(exc)})",
                hint="check the registry's certificate, or name the CA that signed it with MLENV_CA_BUNDLE (or ca-bundle in the settings)",
            ) from None
        except requests.RequestException as exc:
            raise RegistryError(
                f"registry {self.host} unreachable ({type(exc).__name__}: {_short(exc)})",
                hint=f"check the URL {self.url} and that the registry is running",
            ) from None
        if resp.status_code in (401, 403):
            had = self._credentials() is not None
            raise AuthRefused(
                f"registry {self.host} refused access (HTTP {resp.status_code}"
                f"{', with the configured credentials' if had else ', no credentials configured'})",
                hint=f"run `docker login {self.host}` or set MLENV_REGISTRY_USERNAME and MLENV_REGISTRY_PASSWORD",
            )
        if resp.status_code not in ok:
            raise RegistryError(
                f"registry {self.host}: {method} {path.split('?')[0]} answered HTTP {resp.status_code}"
                f"{_error_text(resp)}"
            )
        return resp

    def _authenticate(self, challenge: str, scope: str | None) -> str | None:
        """Answer a 401 challenge (mlenv.oci.auth: Basic or a bearer token for scope)."""
        from ..oci.auth import AuthError, Authorizer

        if self._authorizer is None:
            self._authorizer = Authorizer(self.host, timeout=self.timeout)
        try:
            value = self._authorizer.answer(self.session, challenge, [scope] if scope else [])
        except AuthError as exc:
            raise AuthRefused(exc.message, hint=exc.hint) from None
        if value and value.startswith("Basic "):
            self._basic = value
        elif value:
            self._tokens[scope or ""] = value
        return value

    def _scope(self, repo: str, push: bool = False) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    # --- distribution API -----------------------------------------------------
    def _tags(self, repo: str) -> list[str] | None:
        """All tags of repo, or None when the repository does not exist."""
        out: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n=1000"
        while path:
            resp = self._request("GET", path, scope=self._scope(repo), ok=(200, 404))
            if resp.status_code == 404:
                return None if not out else out
            out += _strings(resp.content, "tags", f"registry {self.host}: the tag list of {repo}")
            path = _next_link(resp)
        return out

    def _get_manifest(self, repo: str, ref: str) -> tuple[dict, bytes, str] | None:
        resp = self._request(
            "GET", f"/v2/{repo}/manifests/{ref}", scope=self._scope(repo), ok=(200, 404), headers={"Accept": MANIFEST}
        )
        if resp.status_code == 404:
            return None
        raw = resp.content
        digest = _sha(raw)
        manifest = _object(raw)
        if manifest is None:
            raise RegistryError(f"registry {self.host}: {repo}:{quote(ref, 80)} is not a JSON manifest")
        return manifest, raw, digest

    def _head_manifest(self, repo: str, ref: str) -> str | None:
        resp = self._request(
            "HEAD", f"/v2/{repo}/manifests/{ref}", scope=self._scope(repo), ok=(200, 404), headers={"Accept": MANIFEST}
        )
        return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None

    def _put_manifest(self, repo: str, ref: str, raw: bytes) -> None:
        self._request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            scope=self._scope(repo, True),
            ok=(200, 201),
            data=raw,
            headers={"Content-Type": MANIFEST},
        )

    def _delete_manifest(self, repo: str, digest: str) -> bool:
        resp = self._request(
            "DELETE", f"/v2/{repo}/manifests/{digest}", scope=self._scope(repo, True), ok=(200, 202, 404, 405)
        )
        return resp.status_code in (200, 202)

    def _put_blob(self, repo: str, data: bytes) -> str:
        digest = _sha(data)
        scope = self._scope(repo, True)
        head = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope, ok=(200, 404))
        if head.status_code == 200:
            return digest
        start = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,))
        location = urljoin(self.base + "/", start.headers["Location"])
        sep = "&" if "?" in location else "?"
        self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            scope=scope,
            ok=(201,),
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    def _get_blob(self, repo: str, digest: str, what: str) -> bytes:
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", scope=self._scope(repo), ok=(200, 404))
        if resp.status_code == 404:
            raise RegistryError(f"registry {self.host}: the {what} blob {digest[:19]}… is missing from {repo}")
        data = resp.content
        if _sha(data) != digest:
            raise RegistryError(
                f"registry {self.host}: the {what} blob does not match its digest {digest[:19]}… "
                "(corrupt or tampered); refusing to use it"
            )
        return data

    # --- manifests ------------------------------------------------------------
    def _artifact(
        self, repo: str, artifact_type: str, layers: list[tuple[bytes, str, str | None]], annotations: dict[str, str]
    ) -> bytes:
        self._put_blob(repo, EMPTY_DATA)
        descs = []
        for data, media, title in layers:
            digest = self._put_blob(repo, data)
            d = {"mediaType": media, "digest": digest, "size": len(data)}
            if title:
                d["annotations"] = {A_TITLE: title}
            descs.append(d)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_MEDIA, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="},
            "layers": descs,
            "annotations": annotations,
        }
        return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

    def _to_version(self, name: str, manifest: dict) -> Version | None:
        """The Version a version manifest records, or None for a manifest that is not an mlenv
        version or whose annotations do not check out (mlenv.registry.records): such a tag
        is passed over as foreign, so one bad manifest cannot hide the others."""
        if not isinstance(manifest, dict) or manifest.get("artifactType") != ARTIFACT:
            return None
        ann = manifest.get("annotations")
        layers = manifest.get("layers")
        if not isinstance(ann, dict) or not isinstance(layers, list):
            return None
        by_media = {d.get("mediaType"): d.get("digest") for d in layers if isinstance(d, dict)}
        spec_digest, lock_digest = by_media.get(SPEC_MEDIA), by_media.get(LOCK_MEDIA)
        if not (isinstance(spec_digest, str) and isinstance(lock_digest, str)):
            return None
        try:
            return make_version(
                f"registry {self.host}: {quote(name, 40)}",
                name=ann.get(A_NAME, name),
                version=parse_number(ann.get(A_VERSION)),
                content_hash=ann.get(A_HASH),
                spec_sha256=spec_digest.removeprefix("sha256:"),
                lock_sha256=lock_digest.removeprefix("sha256:"),
                created=ann.get(A_CREATED, ""),
                description=ann.get(A_DESC, ""),
                archived=False,
            )
        except RegistryError:
            return None

    # --- state ----------------------------------------------------------------
    def _read_state(self, repo: str) -> dict:
        got = self._get_manifest(repo, STATE_TAG)
        if got is None:
            return _empty_state()
        manifest = got[0]
        layers = manifest.get("layers")
        layer = (
            next((d for d in layers if isinstance(d, dict) and d.get("mediaType") == STATE_MEDIA), None)
            if isinstance(layers, list)
            else None
        )
        if layer is None:
            return _empty_state()
        digest = layer.get("digest")
        where = f"registry {self.host}: the state document of {repo}"
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise damaged(where, f"layer digest {quote(digest)}")
        state = _object(self._get_blob(repo, digest, "state"))
        if state is None:
            raise damaged(where, "JSON (not an object)")
        base = _empty_state()
        base.update(state)
        _check_state(base, where)
        return base

    def _change_state(self, repo: str, change, check) -> dict:
        """Read-modify-write the state document; re-read after a settle delay and
        reapply when a concurrent writer overwrote the change (no CAS in distribution)."""
        for _attempt in range(8):
            state = self._read_state(repo)
            change(state)
            state["updated"] = _now()
            raw = json.dumps(state, sort_keys=True, indent=1).encode()
            manifest = self._artifact(
                repo, STATE_ARTIFACT, [(raw, STATE_MEDIA, "state.json")], {A_CREATED: state["updated"]}
            )
            self._put_manifest(repo, STATE_TAG, manifest)
            time.sleep(SETTLE * (1 + random.random()))
            after = self._read_state(repo)
            if check(after):
                return after
        raise RegistryError(
            f"registry {self.host}: could not update {repo} state: concurrent writers kept overwriting it", hint="retry"
        )

    # --- Registry -------------------------------------------------------------
    def _catalog_names(self) -> list[str]:
        """The environment names of this namespace in the registry's catalog (every page)."""
        prefix = f"{self.namespace}/" if self.namespace else ""
        repos: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            resp = self._request("GET", path, scope="registry:catalog:*", ok=(200, 404))
            if resp.status_code == 404:
                raise RegistryError(
                    f"registry {self.host} does not offer a catalog (/v2/_catalog)",
                    hint="address versions by name: `mlenv versions NAME`",
                )
            repos += _strings(resp.content, "repositories", f"registry {self.host}: the catalog")
            path = _next_link(resp)
        return [r[len(prefix) :] for r in repos if r.startswith(prefix) and "/" not in r[len(prefix) :]]

    def names(self, *, include_archived: bool = False) -> list[str]:
        candidates = self._catalog_names()

        def keep(name: str) -> bool:
            tags = self._tags(self.repo(name)) or []
            if not _numbers(tags):
                return False
            return include_archived or STATE_TAG not in tags or not self._read_state(self.repo(name)).get("archived")

        return sorted(n for n, k in zip(candidates, _pmap(keep, candidates), strict=False) if k)

    def listing_state(self) -> dict[str, str]:
        """name -> a token of what `versions(name)` would return, for every name (archived
        included), without reading a version manifest: sha256 of the name's tag list
        (a new version adds `v<N>` and `sha256-<hash>` tags, a label moves a `label-*` tag)
        and of the digest of its state manifest (archive flags, edited descriptions, image
        records, labels). One catalog request and at most two requests per name, where
        versions() needs one per version: a reader caches versions by this token
        (mlenv.ui.index). A tag re-pointed by a lost register race (docs/registry.md,
        "Concurrency") is not seen until the name's tags or state change next."""
        candidates = self._catalog_names()

        def token(name: str) -> str | None:
            tags = sorted(self._tags(self.repo(name)) or [])
            if not _numbers(tags):
                return None
            state = None
            if STATE_TAG in tags:  # a registry that answers HEAD without the digest: the manifest's own
                state = self._head_manifest(self.repo(name), STATE_TAG)
                if state is None and (got := self._get_manifest(self.repo(name), STATE_TAG)) is not None:
                    state = got[2]
            return _sha(json.dumps([tags, state]).encode())

        return {n: t for n, t in zip(candidates, _pmap(token, candidates), strict=True) if t is not None}

    def versions(self, name: str) -> list[Version]:
        repo = self.repo(name)
        tags = self._tags(repo) or []
        numbered = sorted(_numbers(tags))
        if not numbered:
            raise NotFound(
                f"no environment named {name!r} in the registry {self.url}",
                hint="`mlenv list` shows the registered names",
            )
        state = self._read_state(repo) if STATE_TAG in tags else _empty_state()
        got = _pmap(lambda n: self._get_manifest(repo, f"v{n}"), numbered)
        out = []
        for number, item in zip(numbered, got, strict=False):
            if item is None:
                continue
            v = self._to_version(name, item[0])
            if v is None or v.version != number:
                continue  # a tag that is not ours, or a lost race (see docs)
            out.append(self._apply_state(v, state))
        if not out:
            raise NotFound(f"no environment named {name!r} in the registry {self.url}")
        return out

    def _apply_state(self, v: Version, state: dict) -> Version:
        own = state["versions"].get(str(v.version), {})
        v.archived = bool(own.get("archived")) or bool(state.get("archived"))
        if own.get("description") is not None:
            v.description = own["description"]
        v.image = own.get("image") or None
        v.image_digest = own.get("image_digest") or None
        v.labels = sorted(label for label, n in state["labels"].items() if n == v.version)
        return v

    def find(self, name: str, content_hash: str) -> Version | None:
        repo = self.repo(name)
        got = self._get_manifest(repo, _hash_tag(content_hash))
        if got is None:
            return None
        v = self._to_version(name, got[0])
        if v is None or self._head_manifest(repo, f"v{v.version}") != got[2]:
            return None  # the version tag lost a race: this content needs a number again
        tags = self._tags(repo) or []
        return self._apply_state(v, self._read_state(repo) if STATE_TAG in tags else _empty_state())

    holds_artifacts = True

    def register(self, name, spec, lock, content_hash, *, description="", image=None, image_digest=None,
                 artifacts=None) -> Registered:  # fmt: skip
        repo = self.repo(name)  # the OCI rule first (its message names it), then mlenv's own
        check_name(name)
        existing = self.find(name, content_hash)
        if existing is not None:
            return Registered(existing, created=False)
        for attempt in range(12):
            tags = self._tags(repo) or []
            numbered = _numbers(tags)
            number = max(numbered, default=0) + 1
            created = _now()
            # built wheels are layers of the version's manifest: referenced, so a registry's
            # garbage collection keeps them; their digest is the lock's sha256
            wheels = [(data, WHEEL_MEDIA, filename) for _, (filename, data) in sorted((artifacts or {}).items())]
            raw = self._artifact(
                repo,
                ARTIFACT,
                [(spec, SPEC_MEDIA, "mlenv.toml"), (lock, LOCK_MEDIA, "mlenv.lock"), *wheels],
                {
                    A_NAME: name,
                    A_VERSION: str(number),
                    A_HASH: content_hash,
                    A_DESC: description,
                    A_CREATED: created,
                },
            )
            digest = _sha(raw)
            if self._head_manifest(repo, f"v{number}") is not None:
                continue  # taken since we listed
            self._put_manifest(repo, f"v{number}", raw)
            time.sleep(SETTLE * (1 + random.random()))
            if self._head_manifest(repo, f"v{number}") != digest:
                time.sleep(SETTLE * random.random() * attempt)
                continue  # another client won v<number>; take the next one
            # Identical content registered concurrently by another client: the
            # lowest number wins, the others withdraw their tag. Versions below
            # ours that existed when we started were covered by find() above;
            # only the few in flight just below our number need a look.
            below = list(range(max(1, number - 8), number))
            for n, got in zip(below, _pmap(lambda n: self._get_manifest(repo, f"v{n}"), below), strict=False):
                if got is None:
                    continue
                v = self._to_version(name, got[0])
                if v is not None and v.version == n and v.content_hash == content_hash:
                    self._delete_manifest(repo, digest)
                    return Registered(
                        self.find(name, content_hash) or self._apply_state(v, _empty_state()), created=False
                    )
            self._put_manifest(repo, _hash_tag(content_hash), raw)
            if self._head_manifest(repo, f"v{number}") != digest:
                continue
            if image or image_digest:
                self.update(name, number, image=image, image_digest=image_digest)
            v = self._to_version(name, json.loads(raw))
            if v is None:  # check_name() above makes every manifest mlenv writes readable
                raise RegistryError(f"registry {self.host}: {name}@{number} was written but does not read back")
            if image or image_digest:
                v.image, v.image_digest = image, image_digest
            return Registered(v, created=True)
        raise RegistryError(
            f"registry {self.host}: could not allocate a version number for {name}: too many concurrent registrations",
            hint="retry",
        )

    def read(self, version: Version) -> tuple[bytes, bytes]:
        repo = self.repo(version.name)
        spec = self._get_blob(repo, "sha256:" + version.spec_sha256, f"mlenv.toml of {version.ref}")
        lock = self._get_blob(repo, "sha256:" + version.lock_sha256, f"mlenv.lock of {version.ref}")
        return spec, lock

    def read_artifact(self, version: Version, sha256: str) -> bytes | None:
        if not DIGEST_RE.match("sha256:" + sha256):
            return None
        try:
            return self._get_blob(self.repo(version.name), "sha256:" + sha256, f"built wheel of {version.ref}")
        except RegistryError:
            return None

    def _require(self, name: str, version: int | None) -> list[Version]:
        versions = self.versions(name)
        if version is not None and not any(v.version == version for v in versions):
            raise NotFound(f"{name}@{version}: no such version")
        return versions

    def set_label(self, name: str, version: int, label: str) -> None:
        check_label(label)
        self._require(name, version)
        repo = self.repo(name)
        stamp = _now()

        def change(state):
            if state["labels"].get(label) != version:
                state["labels"][label] = version
                state["history"].setdefault(label, []).append([stamp, version])

        self._change_state(repo, change, lambda s: s["labels"].get(label) == version)
        got = self._get_manifest(repo, f"v{version}")
        if got is not None:
            self._put_manifest(repo, f"label-{label}", got[1])

    def label_history(self, name: str, label: str) -> list[tuple[str, int]]:
        self._require(name, None)
        state = self._read_state(self.repo(name))
        return [(t, v) for t, v in state["history"].get(label, [])]

    def set_archived(self, name: str, version: int | None, archived: bool) -> None:
        self._require(name, version)

        def change(state):
            if version is None:
                state["archived"] = archived
            else:
                state["versions"].setdefault(str(version), {})["archived"] = archived

        def check(state):
            if version is None:
                return bool(state.get("archived")) == archived
            return bool(state["versions"].get(str(version), {}).get("archived")) == archived

        self._change_state(self.repo(name), change, check)

    def update(self, name: str, version: int, *, description=None, image=None, image_digest=None) -> Version:
        self._require(name, version)
        fields = {
            k: v
            for k, v in (("description", description), ("image", image), ("image_digest", image_digest))
            if v is not None
        }

        def change(state):
            state["versions"].setdefault(str(version), {}).update(fields)

        def check(state):
            own = state["versions"].get(str(version), {})
            return all(own.get(k) == v for k, v in fields.items())

        if fields:
            self._change_state(self.repo(name), change, check)
        return self.resolve(name, str(version))


def _empty_state() -> dict:
    return {"archived": False, "versions": {}, "labels": {}, "history": {}}


def _hash_tag(content_hash: str) -> str:
    return "sha256-" + content_hash.removeprefix("sha256:")


def _next_link(resp) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    m = re.search(r"<([^>]+)>", link)
    return m.group(1) if m else None


def _short(exc: BaseException) -> str:
    return clip(first_line(exc), 160)


def _error_text(resp) -> str:
    body = _object(resp.content)
    errors = body.get("errors") if body is not None else None
    if isinstance(errors, list) and errors:
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        return ": " + "".join(c if c.isprintable() else "?" for c in text[:300])
    return ""


def _object(raw: bytes) -> dict | None:
    """A JSON object from a registry's answer, or None (not JSON, not an object, or nested
    deeper than Python's JSON parser can follow)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _strings(raw: bytes, key: str, what: str) -> list[str]:
    """The list of strings under `key` of a JSON answer (tags, repositories); RegistryError otherwise."""
    body = _object(raw)
    if body is None:
        raise RegistryError(f"{what} is not a JSON object")
    items = body.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, str) and not has_control(i) for i in items):
        raise RegistryError(f"{what}: `{key}` is not a list of names")
    return items


def _numbers(tags: list[str]) -> list[int]:
    """Version numbers from tags v1, v2, ... (ASCII digits, no sign or leading zero)."""
    out = []
    for t in tags:
        n = parse_number(t[1:]) if t.startswith("v") else None
        if n is not None:
            out.append(n)
    return out


def _check_state(state: dict, where: str) -> None:
    """The mutable state document: archived flags, descriptions, image records, labels and
    their history. Unknown keys are kept as they are (a newer mlenv may add some) but never read."""
    if not isinstance(state.get("archived"), bool):
        raise damaged(where, f"archived {quote(state.get('archived'))}")
    versions, labels, history = state.get("versions"), state.get("labels"), state.get("history")
    if not isinstance(versions, dict):
        raise damaged(where, f"versions {quote(versions)}")
    for key, own in versions.items():
        if parse_number(key) is None or not isinstance(own, dict):
            raise damaged(where, f"versions entry {quote(key)}")
        for field, value in own.items():
            ok = {
                "archived": lambda v: isinstance(v, bool),
                "description": is_text,
                "image": is_optional_ref,
                "image_digest": is_optional_ref,
            }.get(field, lambda v: True)(value)
            if not ok:
                raise damaged(where, f"versions.{key}.{field} {quote(value)}")
    if not isinstance(labels, dict) or not all(is_label(k) and is_number(v) for k, v in labels.items()):
        raise damaged(where, f"labels {quote(labels)}")
    if not isinstance(history, dict):
        raise damaged(where, f"history {quote(history)}")
    for label, moves in history.items():
        if (
            not is_label(label)
            or not isinstance(moves, list)
            or not all(
                isinstance(m, list) and len(m) == 2 and is_text(m[0], newlines=False) and is_number(m[1]) for m in moves
            )
        ):
            raise damaged(where, f"history of {quote(label)}")


def _pmap(fn, items):
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(fn, items))
