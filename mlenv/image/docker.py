"""mlenv's one client of the Docker Engine (DOCKER_HOST).

Everything mlenv asks of a daemon goes through `DockerEngine`: finding an image by
its content-hash label (the reuse check of `mlenv build`), tagging, listing,
removing, pushing and pulling, the classic builder's build stream, and reading
files or running a command in a container without network (`verify --image`,
`restore --from-image`). The reuse calls speak the Engine API on a unix socket with
the standard library (mlenv.image.hit.unix_http: no docker SDK, requests or rich on
the cache-hit path); the rest goes through the docker SDK, imported when first
needed; tcp:// and ssh:// hosts use the SDK throughout.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlenvError
from ..runtime.text import clip, first_line

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"


class BuildFailed(MlenvError):
    exit_code = 1


class EngineUnreachable(Exception):
    pass


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def unreachable(reason: str) -> MlenvError:
    return MlenvError(
        f"cannot reach the Docker daemon at DOCKER_HOST={docker_host()} ({clip(reason)})",
        hint="start Docker (e.g. `bash .ci/services.sh up`), or point DOCKER_HOST at a running daemon",
    )


def norm_hash(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"


@dataclass
class BuildLog:
    lines: list[str] = field(default_factory=list)
    step: str | None = None
    step_lines: list[str] = field(default_factory=list)
    error: str | None = None
    image_id: str | None = None


class DockerEngine:
    """A Docker Engine at DOCKER_HOST (or `host`)."""

    def __init__(self, host: str | None = None):
        self.host = host or docker_host()
        self.socket_path = self.host[len("unix://") :] if self.host.startswith("unix://") else None
        self._client: Any = None

    # --- availability -----------------------------------------------------------
    @classmethod
    def available(cls) -> DockerEngine | None:
        """An engine that answers, or None (for commands where Docker is optional)."""
        engine = cls()
        if engine.socket_path is not None and not os.path.exists(engine.socket_path):
            return None
        try:
            engine.client  # noqa: B018 (connects and pings)
        except MlenvError:
            return None
        return engine

    @property
    def client(self) -> Any:
        """The docker SDK client (connected and pinged), or one clear error naming DOCKER_HOST."""
        if self._client is None:
            import docker

            try:
                client = docker.DockerClient(base_url=self.host, timeout=3600)
                client.ping()
            except Exception as exc:  # DockerException, requests ConnectionError, ...
                reason = re.sub(r"^Error while fetching server API version: ", "", first_line(exc))
                raise unreachable(reason) from None
            self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the fast calls (unix socket, stdlib) -----------------------------------------
    def _socket_request(self, method: str, path: str, params: dict | None = None) -> Any:
        from urllib.parse import urlencode

        from .hit import unix_http

        assert self.socket_path is not None
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

    def find(self, content_hash: str, ref: str | None = None) -> dict | None:
        """The newest image carrying this content hash label, under any name. The usual
        cache hit already carries the tag `ref`: one inspect (~1 ms) instead of a
        label-filtered listing (tens of ms once a daemon holds a few hundred images)."""
        if self.socket_path is None:
            images = self.client.api.images(filters={"label": f"{LABEL_HASH}={content_hash}"})
            return max(images, key=lambda i: i.get("Created", 0)) if images else None
        try:
            if ref:
                try:
                    info = self._socket_request("GET", f"/images/{ref}/json")
                except EngineUnreachable as exc:
                    if not str(exc).startswith("HTTP 404"):
                        raise
                else:
                    labels = (info or {}).get("Config", {}).get("Labels") or {}
                    if labels.get(LABEL_HASH) == content_hash:
                        return {
                            "Id": info["Id"],
                            "RepoTags": info.get("RepoTags") or [],
                            "Created": info.get("Created"),
                        }
            flt = json.dumps({"label": [f"{LABEL_HASH}={content_hash}"]})
            images = self._socket_request("GET", "/images/json", {"filters": flt})
        except EngineUnreachable as exc:
            raise unreachable(str(exc)) from None
        return max(images, key=lambda i: i.get("Created", 0)) if images else None

    def tag(self, image: dict, ref: str) -> bool:
        """Tag image as ref if it is not already; True when a tag was added."""
        if ref in (image.get("RepoTags") or []):
            return False
        repo, _, tag = ref.rpartition(":")
        if self.socket_path is None:
            self.client.api.tag(image["Id"], repo, tag)
            return True
        try:
            self._socket_request("POST", f"/images/{image['Id']}/tag", {"repo": repo, "tag": tag})
        except EngineUnreachable as exc:
            raise unreachable(str(exc)) from None
        return True

    # --- images -----------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        import docker

        try:
            return self.client.api.inspect_image(ref)["Id"]
        except docker.errors.ImageNotFound:
            return None

    def image(self, ref: str) -> dict | None:
        """`docker inspect` of an image, None when the daemon does not have it."""
        import docker

        try:
            return self.client.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None

    def mlenv_images(self) -> list[dict]:
        """Every local image with an org.mlenv.content-hash label, newest first per name."""
        rows = []
        for img in self.client.api.images(filters={"label": LABEL_HASH}):
            labels = img.get("Labels") or {}
            content_hash = norm_hash(labels.get(LABEL_HASH)) or ""
            rows.append({
                "id": img["Id"],
                "name": labels.get(LABEL_NAME, ""),
                "content_hash": content_hash,
                "short_hash": content_hash.split(":", 1)[-1][:12],
                "tags": sorted(t for t in (img.get("RepoTags") or []) if t != "<none>:<none>"),
                "digests": sorted(img.get("RepoDigests") or []),
                "size": img.get("Size", 0),
                "created": img.get("Created", 0),
            })  # fmt: skip
        return sorted(rows, key=lambda r: (r["name"], -r["created"]))

    def built_image(self, content_hash: str) -> tuple[str | None, str | None]:
        """(image reference, registry digest) of a local image built for content_hash."""
        best = None
        for img in self.mlenv_images():
            if img["content_hash"] != content_hash:
                continue
            if img["digests"]:
                repo, _, digest = img["digests"][0].partition("@")
                tag = next((t for t in img["tags"] if t.rsplit(":", 1)[0] == repo), None)
                return tag or repo, digest
            if best is None and img["tags"]:
                best = (img["tags"][0], None)
        return best or (None, None)

    def remove(self, ref: str) -> None:
        self.client.images.remove(ref)

    def pull(self, ref: str) -> None:
        try:
            self.client.images.pull(ref)
        except Exception as exc:  # docker.errors.APIError, ImageNotFound, ...
            raise MlenvError(f"could not pull {ref}: {clip(first_line(exc))}") from None

    def push(self, ref: str, on_line: Callable[[str], None] | None = None) -> str | None:
        """Push ref; the pushed digest. Credentials: mlenv.oci.auth.registry_credentials."""
        from .. import image_ref
        from ..oci.auth import registry_credentials

        parsed = image_ref.parse(ref)
        repo, _, tag = ref.rpartition(":")
        creds = registry_credentials(parsed.registry)
        auth = {"username": creds[0], "password": creds[1]} if creds else None
        digest = None
        for chunk in self.client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                raise MlenvError(f"push of {ref} failed: {clip(chunk['error'].strip())}",
                                 hint=f"is the registry {parsed.registry} up, and are you logged in "
                                      f"(`docker login {parsed.registry}`)?")  # fmt: skip
            status = chunk.get("status", "")
            m = re.search(r"digest: (sha256:[0-9a-f]{64})", status)
            if m:
                digest = m.group(1)
            if on_line and status:
                on_line(f"{status} {chunk.get('id', '')}".strip())
        return digest

    def load(self, tar_stream: Any) -> list[str]:
        """`docker load` of an image tarball (file object); the loaded image names or ids."""
        out = []
        for chunk in self.client.api.load_image(tar_stream):
            if "error" in chunk:
                raise MlenvError(f"the Docker Engine refused the image tarball: {clip(str(chunk['error']))}")
            stream = chunk.get("stream", "")
            m = re.search(r"Loaded image(?: ID)?: (\S+)", stream)
            if m:
                out.append(m.group(1))
        return out

    # --- containers (never started with network) --------------------------------------------
    def read_path(self, image: str, path: str) -> tarfile.TarFile | None:
        """The tar of `path` in image (a created, never started container); None when absent."""
        import docker

        container = self.client.api.create_container(image, command=["/nonexistent"], network_disabled=True)
        try:
            try:
                stream, _ = self.client.api.get_archive(container["Id"], path)
            except docker.errors.NotFound:
                return None
            data = io.BytesIO(b"".join(stream))
        finally:
            self.client.api.remove_container(container["Id"], force=True)
        return tarfile.open(fileobj=data)

    def read_file(self, image: str, path: str) -> bytes | None:
        tar = self.read_path(image, path)
        if tar is None:
            return None
        with tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None:
                return None
            fh = tar.extractfile(member)
            return fh.read() if fh else None

    def run(self, image: str, argv: list[str]) -> bytes:
        """Run argv in a throw-away container of image with no network; its stdout."""
        import docker

        try:
            return self.client.containers.run(image, argv, network_mode="none", remove=True, stdout=True,
                                              stderr=False, entrypoint=[])  # fmt: skip
        except docker.errors.ContainerError as exc:
            raise MlenvError(f"a command in {image} failed: {clip(first_line(exc))}") from None

    # --- the classic builder ------------------------------------------------------------
    def build_classic(self, context: Any, tag: str, *, nocache: bool = False,
                      on_step: Callable[[str], None] | None = None,
                      on_line: Callable[[str], None] | None = None,
                      scrub: Callable[[str], str] = lambda s: s) -> BuildLog:  # fmt: skip
        """Stream a classic build of a context tar (file object) with network_mode=host."""
        stream = self.client.api.build(fileobj=context, custom_context=True, tag=tag, network_mode="host", rm=True,
                                       forcerm=True, decode=True, nocache=nocache, pull=False)  # fmt: skip
        return read_classic_stream(stream, scrub, on_step, on_line)


def read_classic_stream(stream: Iterator[dict], scrub, on_step, on_line) -> BuildLog:
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
    not_found = (
        r"not found|pull access denied|manifest unknown|repository does not exist|no such host|connection refused"
    )
    if from_step and re.search(not_found, text, re.I):
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
