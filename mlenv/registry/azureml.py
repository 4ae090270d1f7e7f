"""The Azure ML workspace backend: mlenv versions as Azure ML Environment versions.

URL: azureml://subscriptions/SUB/resourceGroups/RG/workspaces/WS
Client: azure-ai-ml's MLClient (`pip install 'mlenv[azure]'`), credentials from
azure-identity's DefaultAzureCredential. Both are imported only when an
azureml:// registry is opened.

What mlenv keeps in the Azure asset (docs/azureml.md):

- Azure version = mlenv version ("1", "2", ...). Registering content the name
  already has returns that version (dedup by content hash), else max+1.
- `image`: the image mlenv pushed when there is one (pinned by digest);
  otherwise the lock's pinned base image, with `conda_file` = the exact pinned
  environment.yml of linux-64 so Azure can build it.
- `properties` (immutable after creation): mlenv.format, mlenv.content-hash,
  mlenv.spec-sha256, mlenv.lock-sha256 and the spec and lock themselves:
  zlib-compressed, base64, cut into values of at most CHUNK characters under
  mlenv.spec.0, mlenv.spec.1, ... (counts in mlenv.spec.chunks / mlenv.lock.chunks).
  Restoring reassembles them and checks both sha256 and the content hash, so
  the files come back byte-identical or not at all.
- `tags` (editable): mlenv.content-hash, mlenv.image, mlenv.image-digest,
  mlenv.label.<label> (the version a label points at carries it) and
  mlenv.label-history.<label> (when that version got the label).
- `description`: the version's description (editable in Azure too).

Archive state is Azure's own (environments.archive/restore, per version or per
environment); Azure's `create_or_update` always sends isArchived=false, so an
edit of an archived version archives it again afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import zlib
from datetime import UTC, datetime
from typing import Any

from ..runtime.text import first_line
from ..validation import quote
from .base import NotFound, Registered, Registry, RegistryError, Version, check_label
from .records import check_name, damaged, is_text, make_version, parse_number

URL_RE = re.compile(
    r"^azureml://subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/workspaces/(?P<ws>[^/@]+)/?$"
)
REF_RE = re.compile(
    r"^(?P<url>azureml://subscriptions/[^/]+/resourceGroups/[^/]+/workspaces/[^/]+)"
    r"(?:/environments)?/(?P<ref>[^/]+)$"
)
CHUNK = (
    256  # characters per property value (Azure resource tag values are capped at 256; the asset limit is undocumented)
)
FORMAT = "1"
ENDPOINT_ENV = "MLENV_AZUREML_ENDPOINT"  # resource-manager endpoint override (sovereign/private clouds, contract tests)
P = "mlenv."


def split_ref(text: str) -> tuple[str, str] | None:
    """'azureml://subscriptions/S/resourceGroups/R/workspaces/W/environments/NAME@3'
    -> ('azureml://subscriptions/S/resourceGroups/R/workspaces/W', 'NAME@3'); None for other text."""
    m = REF_RE.match(text)
    return (m.group("url"), m.group("ref")) if m else None


def encode_blob(data: bytes) -> list[str]:
    text = base64.b64encode(zlib.compress(data, 9)).decode("ascii")
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]


MAX_BLOB = 64 << 20  # a stored spec or lock, decompressed (mlenv.validation.MAX_LOCK_BYTES)
MAX_CHUNKS = 1 << 20


def decode_blob(chunks: list[str]) -> bytes:
    """The stored bytes, refused (ValueError) beyond MAX_BLOB decompressed: a few KB of
    properties must not expand into gigabytes."""
    inflate = zlib.decompressobj()
    data = inflate.decompress(base64.b64decode("".join(chunks), validate=True), MAX_BLOB + 1)
    if len(data) > MAX_BLOB or inflate.unconsumed_tail:
        raise ValueError(f"larger than {MAX_BLOB} bytes decompressed")
    if not inflate.eof:
        raise ValueError("truncated compressed data")
    return data


def default_credential():
    """DefaultAzureCredential (environment, managed identity, Azure CLI, ...)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AzureMLRegistry(Registry):
    def __init__(self, url: str, *, credential=None, endpoint: str | None = None, client=None):
        m = URL_RE.match(url)
        if not m:
            raise RegistryError(
                f"invalid Azure ML registry URL {url!r}",
                hint="use azureml://subscriptions/SUB/resourceGroups/RG/workspaces/WS",
            )
        self.url = url.rstrip("/")
        self.subscription, self.resource_group, self.workspace = m.group("sub"), m.group("rg"), m.group("ws")
        self._credential = credential
        self._endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
        self._client = client

    # --- SDK plumbing -------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            try:
                from azure.ai.ml import MLClient
            except ImportError:
                raise RegistryError(
                    "the Azure ML backend needs the azure-ai-ml and azure-identity packages",
                    hint="pip install 'mlenv[azure]'",
                ) from None
            credential = self._credential
            if credential is None:
                try:
                    credential = default_credential()
                except ImportError:
                    raise RegistryError(
                        "the Azure ML backend needs azure-identity for credentials", hint="pip install 'mlenv[azure]'"
                    ) from None
            kwargs: dict[str, Any] = {"enable_telemetry": False, "show_progress": False}  # MLClient's **kwargs
            if self._endpoint:
                endpoint = self._endpoint.rstrip("/") + "/"
                kwargs["cloud"] = "mlenv-" + hashlib.sha1(endpoint.encode()).hexdigest()[:10]
                kwargs["cloud_metadata"] = {
                    "azure_portal": endpoint, "resource_manager": endpoint, "active_directory": endpoint,
                    "aml_resource_id": endpoint, "storage_endpoint": "core.windows.net",
                    "registry_discovery_endpoint": endpoint,
                }  # fmt: skip
            self._client = MLClient(credential, self.subscription, self.resource_group, self.workspace, **kwargs)
        return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        """Run an SDK call, turning Azure errors into one-line mlenv errors."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: Exception) -> Exception:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

        if isinstance(exc, ResourceNotFoundError):
            return NotFound(
                f"{what}: not found in Azure ML workspace {self.workspace}",
                hint="`mlenv list --registry URL` shows what is there",
            )
        if isinstance(exc, ClientAuthenticationError):
            return RegistryError(
                f"{what}: Azure authentication failed ({first_line(exc)})",
                hint="sign in with `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET",
            )
        if isinstance(exc, HttpResponseError):
            code = getattr(exc, "status_code", None)
            return RegistryError(f"{what}: Azure ML answered {code}: {first_line(exc)}")
        if isinstance(exc, RegistryError):
            return exc
        return RegistryError(f"{what}: {type(exc).__name__}: {first_line(exc)}")

    def _list(self, name: str | None, view: str):
        from azure.ai.ml.constants import ListViewType

        kind = {"all": ListViewType.ALL, "active": ListViewType.ACTIVE_ONLY, "archived": ListViewType.ARCHIVED_ONLY}[
            view
        ]
        envs = self.client.environments
        return list(envs.list(name, list_view_type=kind) if name else envs.list(list_view_type=kind))

    def _get(self, name: str, version: int):
        return self._call(f"{name}@{version}", self.client.environments.get, name, version=str(version))

    # --- entity <-> Version ----------------------------------------------------------------------
    def _to_version(self, env, archived_versions: set[str], env_archived: bool) -> Version | None:
        props, tags = env.properties or {}, env.tags or {}
        number = parse_number(str(env.version))
        if not isinstance(props, dict) or props.get(P + "format") is None or number is None:
            return None  # an Azure ML environment version mlenv did not create
        if not isinstance(tags, dict):
            raise damaged(
                f"{quote(env.name, 40)}@{number} in Azure ML workspace {self.workspace}", "tags (not a mapping)"
            )
        created = ""
        ctx = getattr(env, "creation_context", None)
        if ctx is not None and getattr(ctx, "created_at", None):
            at = ctx.created_at
            created = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(at, datetime) else str(at)
        labels = sorted(k[len(P + "label.") :] for k in tags if isinstance(k, str) and k.startswith(P + "label."))
        return make_version(
            f"{quote(env.name, 40)}@{number} in Azure ML workspace {self.workspace}",
            name=env.name,
            version=number,
            content_hash=props.get(P + "content-hash"),
            spec_sha256=props.get(P + "spec-sha256"),
            lock_sha256=props.get(P + "lock-sha256"),
            created=created,
            description=env.description or "",
            labels=labels,
            archived=env_archived or str(number) in archived_versions,
            image=tags.get(P + "image") or None,
            image_digest=tags.get(P + "image-digest") or None,
        )

    def _versions_raw(self, name: str) -> list:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._list(name, "all")
        except ResourceNotFoundError:
            return []
        except Exception as exc:
            raise self._error(name, exc) from None

    # --- Registry --------------------------------------------------------------------------------
    def versions(self, name: str) -> list[Version]:
        raw = self._versions_raw(name)
        if not raw:
            raise NotFound(
                f"no environment named {name!r} in Azure ML workspace {self.workspace}",
                hint="`mlenv list --registry URL` shows the registered names",
            )
        archived = {str(e.version) for e in self._call(name, self._list, name, "archived")}
        env_archived = name in {e.name for e in self._call("environments", self._list, None, "archived")}
        out = [v for v in (self._to_version(e, archived, env_archived) for e in raw) if v is not None]
        if not out:
            raise NotFound(
                f"{name!r} in Azure ML workspace {self.workspace} has no version registered by mlenv",
                hint="import one: `az ml environment show` it, `mlenv init --from` the YAML, lock, register",
            )
        return sorted(out, key=lambda v: v.version)

    def names(self, *, include_archived: bool = False) -> list[str]:
        containers = self._call("environments", self._list, None, "all" if include_archived else "active")
        out = []
        for env in containers:
            if any((e.properties or {}).get(P + "format") for e in self._versions_raw(env.name)):
                out.append(env.name)
        return sorted(set(out))

    def find(self, name: str, content_hash: str) -> Version | None:
        for env in self._versions_raw(name):
            if (env.properties or {}).get(P + "content-hash") == content_hash and parse_number(str(env.version)):
                return self.resolve(name, str(env.version))
        return None

    def register(self, name, spec, lock, content_hash, *, description="", image=None, image_digest=None) -> Registered:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        check_name(name)
        env_obj = self._environment(name, spec, lock, content_hash, description, image, image_digest)
        for _attempt in range(5):
            raw = self._versions_raw(name)
            for e in raw:
                if (e.properties or {}).get(P + "content-hash") == content_hash and parse_number(str(e.version)):
                    return Registered(self.resolve(name, str(e.version)), created=False)
            numbers = [n for n in (parse_number(str(e.version)) for e in raw) if n is not None]
            env_obj.version = str(max(numbers, default=0) + 1)
            try:
                self.client.environments.create_or_update(env_obj)
            except (ResourceExistsError, HttpResponseError) as exc:
                if getattr(exc, "status_code", None) == 409 or isinstance(exc, ResourceExistsError):
                    continue  # someone else took that number: look again
                raise self._error(f"{name}@{env_obj.version}", exc) from None
            except Exception as exc:
                raise self._error(f"{name}@{env_obj.version}", exc) from None
            return Registered(self.resolve(name, env_obj.version), created=True)
        raise RegistryError(
            f"{name}: could not claim a version number after 5 attempts (concurrent registrations)", hint="retry"
        )

    def _environment(self, name, spec: bytes, lock: bytes, content_hash, description, image, image_digest):
        from azure.ai.ml.entities import Environment

        from ..lockfile import loads_lock

        parsed = loads_lock(lock, f"{name}:mlenv.lock")
        if parsed.content_hash != content_hash:
            raise RegistryError(
                f"{name}: the lock's content hash {parsed.content_hash[:19]}… is not {content_hash[:19]}…"
            )
        props = {
            P + "format": FORMAT,
            P + "content-hash": content_hash,
            P + "spec-sha256": _sha(spec),
            P + "lock-sha256": _sha(lock),
        }
        for key, data in (("spec", spec), ("lock", lock)):
            chunks = encode_blob(data)
            props[f"{P}{key}.chunks"] = str(len(chunks))
            props.update({f"{P}{key}.{i}": c for i, c in enumerate(chunks)})
        tags = {P + "content-hash": content_hash}
        if image:
            tags[P + "image"] = image
        if image_digest:
            tags[P + "image-digest"] = image_digest
        kwargs: dict = {"name": name, "description": description or None, "tags": tags, "properties": props}
        if image:
            kwargs["image"] = _pinned(image, image_digest)
        else:
            kwargs.update(self._conda_build(parsed, spec))
        return Environment(**kwargs)

    @staticmethod
    def _conda_build(lock, spec_bytes: bytes) -> dict:
        """No image of mlenv's own: the pinned base image plus the exact pinned conda file."""
        import tempfile
        from pathlib import Path

        from ..formats.exporters import environment_dict, image_reference
        from ..spec import parse_spec

        with tempfile.TemporaryDirectory() as tmp:
            spec = parse_spec(spec_bytes.decode("utf-8"), Path(tmp) / "mlenv.toml")
        platform = "linux-64" if "linux-64" in lock.platforms else sorted(lock.platforms)[0]
        conda = environment_dict(spec, lock, platform, [])
        conda.pop("variables", None)  # Azure environments have no variables (kept in the stored spec/lock)
        conda.pop("name", None)
        return {
            "image": image_reference(lock),
            "conda_file": conda,
            "os_type": "windows" if platform == "win-64" else "linux",
        }

    def read(self, version: Version) -> tuple[bytes, bytes]:
        env = self._get(version.name, version.version)
        props = env.properties or {}
        if not isinstance(props, dict):
            raise damaged(f"{version.ref} in Azure ML workspace {self.workspace}", "properties (not a mapping)")
        out = []
        for key, want in (("spec", version.spec_sha256), ("lock", version.lock_sha256)):
            try:
                n = parse_number(props.get(f"{P}{key}.chunks"))
                if n is None or n > MAX_CHUNKS:
                    raise ValueError(f"chunk count {quote(props.get(f'{P}{key}.chunks'), 20)}")
                chunks = [props[f"{P}{key}.{i}"] for i in range(n)]
                if not all(isinstance(c, str) for c in chunks):
                    raise ValueError("a chunk is not text")
                data = decode_blob(chunks)
            except (KeyError, ValueError, zlib.error, binascii.Error) as exc:
                raise RegistryError(
                    f"{version.ref}: the stored {key} in Azure ML is incomplete or corrupt ({first_line(exc)[:200]})",
                    hint="register the files again",
                ) from None
            if _sha(data) != want or props.get(f"{P}{key}-sha256") != want:
                raise RegistryError(f"{version.ref}: the stored {key} does not match its sha256; refusing to use it")
            out.append(data)
        return out[0], out[1]

    def _save_tags(self, name: str, version: int, edit) -> None:
        """GET, edit tags/description, PUT back; re-archive if it was archived."""
        env = self._get(name, version)
        was_archived = str(version) in {str(e.version) for e in self._call(name, self._list, name, "archived")}
        env.tags = dict(env.tags or {})
        edit(env)
        self._call(f"{name}@{version}", self.client.environments.create_or_update, env)
        if was_archived:
            self._call(f"{name}@{version}", self.client.environments.archive, name, version=str(version))

    def set_label(self, name: str, version: int, label: str) -> None:
        check_label(label)
        versions = self.versions(name)
        if version not in {v.version for v in versions}:
            raise NotFound(f"{name}@{version}: no such version")
        key = f"{P}label.{label}"
        for v in versions:
            if label in v.labels and v.version != version:
                self._save_tags(name, v.version, lambda env: env.tags.pop(key, None))
        target = next(v for v in versions if v.version == version)
        if label in target.labels:
            return
        now = _now()

        def add(env):
            env.tags[key] = now
            hist = f"{P}label-history.{label}"
            env.tags[hist] = ",".join(filter(None, [env.tags.get(hist, ""), now]))

        self._save_tags(name, version, add)

    def label_history(self, name: str, label: str) -> list[tuple[str, int]]:
        hist = f"{P}label-history.{label}"
        moves = []
        for env in self._versions_raw(name):
            number = parse_number(str(env.version))
            value = (env.tags or {}).get(hist, "")
            if number is None or not isinstance(value, str):
                continue
            for t in filter(None, value.split(",")):
                if not is_text(t, newlines=False):
                    raise damaged(
                        f"{quote(name, 40)}@{number} in Azure ML workspace {self.workspace}",
                        f"label history {quote(t)}",
                    )
                moves.append((t, number))
        if not moves:
            self.versions(name)  # NotFound for an unknown name
        return sorted(moves)

    def set_archived(self, name: str, version: int | None, archived: bool) -> None:
        envs = self.client.environments
        fn = envs.archive if archived else envs.restore
        if version is None:
            self.versions(name)
            self._call(name, fn, name)
        else:
            if version not in {v.version for v in self.versions(name)}:
                raise NotFound(f"{name}@{version}: no such version")
            self._call(f"{name}@{version}", fn, name, version=str(version))

    def update(self, name: str, version: int, *, description=None, image=None, image_digest=None) -> Version:
        def edit(env):
            if description is not None:
                env.description = description
            if image is not None:
                env.tags[P + "image"] = image
            if image_digest is not None:
                env.tags[P + "image-digest"] = image_digest

        self._save_tags(name, version, edit)
        return self.resolve(name, str(version))

    def close(self) -> None:
        client = self._client
        self._client = None
        if client is not None and hasattr(client, "close"):
            try:
                client.close()
            except Exception:
                pass


def _pinned(image: str, digest: str | None) -> str:
    """The image reference Azure should pull: name@digest when the digest is known."""
    if not digest:
        return image
    from ..image_ref import parse

    try:
        return parse(image).with_digest(digest).pinned
    except ValueError:
        return f"{image.split('@')[0]}@{digest}"


__all__ = ["AzureMLRegistry", "split_ref", "encode_blob", "decode_blob", "CHUNK", "ENDPOINT_ENV"]
