"""mlenv's client of a Docker Engine, for the image layer (mlenv.image, mlenv.api).

`DockerEngine` is what mlenv asks of a daemon about images: finding one by its
content-hash label (the reuse check of `mlenv build`), tagging, listing, removing,
pushing, pulling and loading, and reading files or running a command in a container
without network (`verify --image`, `restore --from-image`). The connection itself
(DOCKER_HOST, the docker SDK client and its timeouts, the unix-socket requests, the
one-line error when no daemon answers) is mlenv.dockerd's: on a unix socket the reuse
calls and inspects need no docker SDK, requests or rich; the rest imports the SDK
when first needed. The classic builder's build stream is mlenv.image.classic's.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable
from typing import Any

from .. import dockerd
from ..errors import MlenvError
from ..runtime.text import clip, first_line

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"


def norm_hash(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"


class DockerEngine:
    """The Docker Engine at DOCKER_HOST (mlenv.dockerd)."""

    def __init__(self) -> None:
        self.socket_path = dockerd.socket_path()
        self._client: Any = None

    # --- availability -----------------------------------------------------------
    @classmethod
    def available(cls) -> DockerEngine | None:
        """An engine that answers, or None (for commands where Docker is optional)."""
        return cls() if dockerd.answers() else None

    @property
    def client(self) -> Any:
        """The docker SDK client (connected and pinged), or one clear error naming DOCKER_HOST."""
        if self._client is None:
            self._client = dockerd.connect()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the fast calls (unix socket, stdlib) -----------------------------------------
    def find(self, content_hash: str, ref: str | None = None) -> dict | None:
        """The newest image carrying this content hash label, under any name. The usual
        cache hit already carries the tag `ref`: one inspect (~1 ms) instead of a
        label-filtered listing (tens of ms once a daemon holds a few hundred images)."""
        if self.socket_path is None:
            images = self.client.api.images(filters={"label": f"{LABEL_HASH}={content_hash}"})
            return max(images, key=lambda i: i.get("Created", 0)) if images else None
        if ref:
            info = dockerd.inspect(ref)
            labels = ((info or {}).get("Config") or {}).get("Labels") or {}
            if info is not None and labels.get(LABEL_HASH) == content_hash:
                return {"Id": info["Id"], "RepoTags": info.get("RepoTags") or [], "Created": info.get("Created")}
        flt = json.dumps({"label": [f"{LABEL_HASH}={content_hash}"]})
        _, images = dockerd.request("GET", "/images/json", {"filters": flt})
        return max(images, key=lambda i: i.get("Created", 0)) if images else None

    def tag(self, image: dict, ref: str) -> bool:
        """Tag image as ref if it is not already; True when a tag was added."""
        if ref in (image.get("RepoTags") or []):
            return False
        repo, _, tag = ref.rpartition(":")
        if self.socket_path is None:
            self.client.api.tag(image["Id"], repo, tag)
        else:
            dockerd.request("POST", dockerd.api_path("/images/{}/tag", image["Id"]), {"repo": repo, "tag": tag})
        return True

    # --- images -----------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        info = self.image(ref)
        return info["Id"] if info else None

    def image(self, ref: str) -> dict | None:
        """`docker inspect` of an image, None when the daemon does not have it."""
        return dockerd.inspect(ref, None if self.socket_path is not None else self.client)

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
