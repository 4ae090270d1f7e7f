"""The Docker Engine side of `mlenv build` / `mlenv images` / `mlenv verify --image`.

Builds, pushes and `verify --image` go through the docker SDK (DOCKER_HOST
respected). The reuse check of `mlenv build` (the cache-hit path) does not
import it: `Engine` speaks the Engine API over the unix socket with the
standard library (http.client on an AF_UNIX socket), and the registry HEAD is
urllib; the SDK (and requests) are used only for tcp:// / ssh:// DOCKER_HOSTs
and registries that want a token. Imported only by those commands."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlenvError
from .dockerfile import LABEL_HASH, LABEL_NAME, META_DIR, PREFIX


class BuildFailed(MlenvError):
    exit_code = 1


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect():
    """A docker client whose daemon answers, or one clear error naming DOCKER_HOST."""
    import docker

    try:
        client = docker.from_env(timeout=3600)
        client.ping()
    except Exception as exc:  # DockerException, requests ConnectionError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = re.sub(r"^Error while fetching server API version: ", "", reason)
        raise unreachable(reason) from None
    return client


# --- reuse without the SDK: the Engine API on the unix socket, stdlib only -------------


class EngineUnreachable(Exception):
    pass


class Engine:
    """The few Engine API calls of the reuse check, over DOCKER_HOST's unix socket."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    @classmethod
    def from_env(cls) -> "Engine | None":
        """None when DOCKER_HOST is not a unix socket (tcp://, ssh://: use the SDK)."""
        host = docker_host()
        if not host.startswith("unix://"):
            return None
        return cls(host[len("unix://"):])

    def request(self, method: str, path: str, params: dict | None = None):
        """One Engine API call (mlenv.build_hit.unix_http: HTTP/1.0 on the unix socket)."""
        from urllib.parse import urlencode

        from ..build_hit import unix_http

        url = path + ("?" + urlencode(params) if params else "")
        try:
            status, head, body = unix_http(self.socket_path, method, url)
        except OSError as exc:
            raise EngineUnreachable(f"{type(exc).__name__}: {exc.strerror or exc}") from None
        if not status:
            raise EngineUnreachable(f"not an HTTP answer from {self.socket_path}: {head[:80]!r}")
        if status >= 400:
            raise EngineUnreachable(f"HTTP {status} for {method} {path}: {body[:200].decode(errors='replace')}")
        headers = head.decode("latin-1").lower()
        return json.loads(body) if body and "content-type: application/json" in headers else None

    def find_local(self, content_hash: str, ref: str | None = None) -> dict | None:
        """The image with this content hash. The usual cache hit already carries the
        tag `ref`: one inspect (~1 ms) instead of a label-filtered listing, which the
        daemon answers in tens of ms once it holds a few hundred images."""
        if ref:
            try:
                info = self.request("GET", f"/images/{ref}/json")
            except EngineUnreachable as exc:
                if not str(exc).startswith("HTTP 404"):
                    raise
            else:
                labels = (info or {}).get("Config", {}).get("Labels") or {}
                if labels.get(LABEL_HASH) == content_hash:
                    return {"Id": info["Id"], "RepoTags": info.get("RepoTags") or [], "Created": info.get("Created")}
        images = self.request("GET", "/images/json", {"filters": json.dumps({"label": [f"{LABEL_HASH}={content_hash}"]})})
        return max(images, key=lambda i: i.get("Created", 0)) if images else None

    def ensure_tag(self, image: dict, ref: str) -> bool:
        if ref in (image.get("RepoTags") or []):
            return False
        repo, _, tag = ref.rpartition(":")
        self.request("POST", f"/images/{image['Id']}/tag", {"repo": repo, "tag": tag})
        return True


def unreachable(reason: str) -> MlenvError:
    return MlenvError(
        f"cannot reach the Docker daemon at DOCKER_HOST={docker_host()} ({reason[:200]})",
        hint="start Docker (e.g. `bash .ci/services.sh up`), or point DOCKER_HOST at a running daemon",
    )


def registry_digest_fast(ref: str) -> str | None:
    """registry_digest() in one manifest HEAD with urllib (mlenv.oci.client.remote_has,
    its home): requests only for a registry that asks for a token."""
    from ..oci.client import remote_has

    return remote_has(ref)


def _names_registry(ref: str) -> bool:
    from ..oci.client import names_registry

    return names_registry(ref)


# --- reuse with the SDK ------------------------------------------------------------------


def find_local(client, content_hash: str) -> dict | None:
    """The newest local image carrying this content hash label, under any name."""
    images = client.api.images(filters={"label": f"{LABEL_HASH}={content_hash}"})
    if not images:
        return None
    return max(images, key=lambda i: i.get("Created", 0))


def ensure_tag(client, image: dict, ref: str) -> bool:
    """Tag image as ref if it is not already; True when a tag was added."""
    if ref in (image.get("RepoTags") or []):
        return False
    repo, _, tag = ref.rpartition(":")
    client.api.tag(image["Id"], repo, tag)
    return True


def registry_digest(ref: str) -> str | None:
    """Digest of ref's tag in its registry (manifest HEAD), None when absent.
    Only for references that name a registry host; unreachable -> None."""
    from ..oci.client import remote_has

    return remote_has(ref)


# --- build ---------------------------------------------------------------------------


@dataclass
class BuildLog:
    lines: list[str] = field(default_factory=list)
    step: str | None = None
    step_lines: list[str] = field(default_factory=list)
    error: str | None = None
    image_id: str | None = None


def build(client, files: dict, tag: str, *, nocache: bool = False, on_step=None, on_line=None,
          scrub=lambda s: s) -> BuildLog:
    """Stream a classic build of the context `files` (mlenv.build.context.context_files,
    sent as a tar) with network_mode=host. Returns the log; .error set on failure."""
    from .context import tar_context

    with tar_context(files) as context:
        return _stream(client.api.build(fileobj=context, custom_context=True, tag=tag, network_mode="host", rm=True,
                                        forcerm=True, decode=True, nocache=nocache, pull=False), scrub, on_step, on_line)


def _stream(stream, scrub, on_step, on_line) -> BuildLog:
    log = BuildLog()
    for chunk in stream:
        if "stream" in chunk:
            for raw in chunk["stream"].splitlines():
                line = scrub(raw.rstrip())
                if not line:
                    continue
                log.lines.append(line)
                m = re.match(r"^Step (\d+/\d+) : (.*)$", line)
                if m:
                    log.step = f"{m.group(1)}: {m.group(2)}"
                    log.step_lines = []
                    if on_step:
                        on_step(log.step)
                    continue
                log.step_lines.append(line)
                m = re.match(r"^Successfully built ([0-9a-f]+)$", line)
                if m:
                    log.image_id = m.group(1)
                if on_line:
                    on_line(line)
        elif "error" in chunk:
            log.error = scrub(chunk["error"].strip())
            log.lines.append(f"ERROR: {log.error}")
        elif "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
            log.image_id = chunk["aux"]["ID"]
    return log


def explain_failure(log: BuildLog, base: str, log_path: Path) -> BuildFailed:
    step = log.step or "?"
    error = log.error or "the build stopped without an error message"
    text = "\n".join(log.step_lines + [error])
    tail = [ln for ln in log.step_lines if ln.strip() and not ln.startswith(" ---> ")][-15:]
    hint = None
    from_step = step.split(": ", 1)[-1].startswith("FROM") or re.search(r"\] FROM |load metadata for ", step)
    if from_step and re.search(r"not found|pull access denied|manifest unknown|repository does not exist|no such host|connection refused", text, re.I):
        head = f"base image {base} not found (not in the local daemon, and its registry does not have it)"
        hint = "check [image] base in mlenv.toml, `docker pull` / push it, then `mlenv lock --upgrade`"
    else:
        head = f"build failed at step {step}\n  {error}"
        if re.search(r"certificate|UnknownIssuer|CERTIFICATE_VERIFY_FAILED", text, re.I):
            hint = "downloads failed TLS verification (a TLS-intercepting proxy?): pass --ca-bundle FILE or set MLENV_CA_BUNDLE"
    msg = head
    if tail:
        msg += "\n  last log lines:\n" + "\n".join("    " + ln for ln in tail)
    msg += f"\n  full log: {log_path}"
    return BuildFailed(msg, hint=hint)


def push(client, ref: str, on_line=None) -> str | None:
    """Push ref; the pushed digest. Credentials: mlenv.oci.auth.registry_credentials."""
    from .. import image_ref

    parsed = image_ref.parse(ref)
    repo, _, tag = ref.rpartition(":")
    creds = image_ref.registry_credentials(parsed.registry)
    auth = {"username": creds[0], "password": creds[1]} if creds else None
    digest = None
    for chunk in client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in chunk:
            raise MlenvError(f"push of {ref} failed: {chunk['error'].strip()}",
                             hint=f"is the registry {parsed.registry} up, and are you logged in (`docker login {parsed.registry}`)?")
        status = chunk.get("status", "")
        m = re.search(r"digest: (sha256:[0-9a-f]{64})", status)
        if m:
            digest = m.group(1)
        if on_line and status:
            on_line(f"{status} {chunk.get('id', '')}".strip())
    return digest


# --- images ---------------------------------------------------------------------------


def list_images(client) -> list[dict]:
    rows = []
    for img in client.api.images(filters={"label": LABEL_HASH}):
        labels = img.get("Labels") or {}
        content_hash = labels.get(LABEL_HASH, "")
        rows.append({
            "id": img["Id"],
            "name": labels.get(LABEL_NAME, ""),
            "content_hash": content_hash,
            "short_hash": content_hash.split(":", 1)[-1][:12],
            "tags": sorted(t for t in (img.get("RepoTags") or []) if t != "<none>:<none>"),
            "size": img.get("Size", 0),
            "created": img.get("Created", 0),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["name"], -r["created"]))


# --- verify --image --------------------------------------------------------------------


def _read_from_image(client, image: str, path: str) -> bytes:
    import io
    import tarfile

    container = client.api.create_container(image, command=["/nonexistent"], network_disabled=True)
    try:
        stream, _ = client.api.get_archive(container["Id"], path)
        data = io.BytesIO(b"".join(stream))
    finally:
        client.api.remove_container(container["Id"], force=True)
    with tarfile.open(fileobj=data) as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        return tar.extractfile(member).read()


def _conda_meta_from_image(client, image: str) -> dict:
    import io
    import tarfile

    container = client.api.create_container(image, command=["/nonexistent"], network_disabled=True)
    try:
        try:
            stream, _ = client.api.get_archive(container["Id"], f"{PREFIX}/conda-meta")
        except Exception:
            return {}
        data = io.BytesIO(b"".join(stream))
    finally:
        client.api.remove_container(container["Id"], force=True)
    out = {}
    with tarfile.open(fileobj=data) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".json"):
                rec = json.loads(tar.extractfile(m).read())
                out[rec.get("name")] = {"version": rec.get("version"), "missing_files": []}
    return out


def verify_image(ref: str, lock_path: Path | None):
    """(lock, differences, label): compare an image with a lock (the local one,
    else the image's own /opt/mlenv/mlenv.lock), in a container with no network."""
    import docker

    from ..install import compare, inventory_script, needs_interpreter
    from ..lockfile import loads_lock, read_lock

    client = connect()
    try:
        client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        raise MlenvError(f"image {ref} not found in the local daemon", hint=f"docker pull {ref}, or `mlenv build`") from None
    if lock_path is not None:
        lock = read_lock(lock_path)
    else:
        try:
            lock = loads_lock(_read_from_image(client, ref, f"{META_DIR}/mlenv.lock").decode(), f"{ref}:{META_DIR}/mlenv.lock")
        except (docker.errors.NotFound, StopIteration):
            raise MlenvError(f"{ref} holds no {META_DIR}/mlenv.lock (not built by mlenv?)", hint="pass --lock") from None
    platform = "linux-64" if "linux-64" in lock.platforms else sorted(lock.platforms)[0]
    if needs_interpreter(lock, platform):
        script = inventory_script(PREFIX)
        try:
            out = client.containers.run(ref, [f"{PREFIX}/bin/python", "-c", script], network_mode="none",
                                        remove=True, stdout=True, stderr=True, entrypoint=[])
        except docker.errors.ContainerError as exc:
            raise MlenvError(f"could not read the installed packages of {ref}: {exc}") from None
        inv = json.loads(out.decode().strip().splitlines()[-1])
    else:
        inv = {"conda": _conda_meta_from_image(client, ref), "pypi": {}}
    return lock, compare(lock, platform, inv), ref
