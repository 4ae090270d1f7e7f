"""What a base image says about apt, read from its files (never by running it):
its sources, the keyrings its apt trusts, its dpkg status (what is installed) and
its architecture.

Where the files come from: the base image's layers, merged by
mlenv.oci.rootfs (whiteouts honoured), from one of two places (`read_base`):

- its registry (`_from_registry`: mlenv.oci.pull.pull_image into mlenv's blob store,
  by the pinned digest, the lock platform's entry of an index; no Docker Engine
  needed, any architecture from any host): first, whenever the lock pins a digest
  and the reference names a registry;
- the local Docker Engine (`_from_engine`: `docker save` through the Engine API,
  pulling the reference through the Engine when it is not there): for a base that
  exists only locally (a Docker Hub shorthand, an image never pushed, a tag-only
  pin), and when the registry does not have the image.

Only what apt needs is kept in memory: /etc/apt, /usr/share/keyrings, the dpkg
status and arch files, and OpenPGP keyring files anywhere (a Signed-By may name
any path). The result is cached as one JSON file per base digest and
architecture under <user cache>/mlenv/apt/base/ (a re-lock does not export the
image again); a base pinned by tag only is keyed by its Engine image id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import MlenvError
from ..runtime.text import clip, first_line

FORMAT = "mlenv-apt-base-v1"
STATUS = "/var/lib/dpkg/status"
DPKG_ARCH = "/var/lib/dpkg/arch"
TRUSTED = "/etc/apt/trusted.gpg"
TRUSTED_DIR = "/etc/apt/trusted.gpg.d"
NEEDED_TOOLS = ("/usr/bin/dpkg", "/usr/bin/apt-get", "/usr/lib/apt/apt-helper")
# image config architecture (Go names) -> Debian architecture
GO_TO_DEB = {"amd64": "amd64", "arm64": "arm64", "386": "i386", "ppc64le": "ppc64el", "s390x": "s390x",
             "arm": "armhf", "riscv64": "riscv64", "mips64le": "mips64el"}  # fmt: skip


class BaseImageError(MlenvError):
    """The base image cannot be read, or has no usable apt."""


class BaseUnavailable(BaseImageError):
    """The base image is neither in the local Engine nor obtainable from its registry."""


@dataclass
class BaseFacts:
    reference: str
    arch: str  # dpkg's native architecture
    foreign: list[str] = field(default_factory=list)  # dpkg --print-foreign-architectures
    sources: list[tuple[str, str]] = field(default_factory=list)  # (path, text) in apt's order
    status: str = ""
    keyrings: dict[str, bytes] = field(default_factory=dict)  # path in the image -> bytes
    tools: list[str] = field(default_factory=list)  # which of NEEDED_TOOLS exist

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "reference": self.reference, "arch": self.arch, "foreign": self.foreign,
            "sources": [list(s) for s in self.sources], "status": self.status,
            "keyrings": {k: base64.b64encode(v).decode() for k, v in sorted(self.keyrings.items())},
            "tools": self.tools,
        }, sort_keys=True)  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> BaseFacts | None:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                return None
            return cls(
                str(d["reference"]),
                str(d["arch"]),
                [str(a) for a in d["foreign"]],
                [(str(p), str(t)) for p, t in d["sources"]],
                str(d["status"]),
                {str(k): base64.b64decode(v) for k, v in d["keyrings"].items()},
                [str(t) for t in d["tools"]],
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def keep(path: str) -> bool:
    """The files of a base image mlenv reads for apt (mlenv.oci.rootfs keep predicate)."""
    return (
        path.startswith(("/etc/apt/", "/usr/share/keyrings/", "/etc/dpkg/"))
        or path in (STATUS, DPKG_ARCH)
        or path.endswith((".gpg", ".asc", ".pgp"))
    )


def facts_from_rootfs(fs, reference: str, config_arch: str | None) -> BaseFacts:
    """Read the apt facts from a RootFS (mlenv.oci.rootfs.RootFS)."""
    from .sources import MAIN_LIST, sources_files

    status = fs.read(STATUS)
    if status is None:
        raise BaseImageError(
            f"base image {reference} has no dpkg database ({STATUS}): it is not Debian-based, so "
            "[image] apt-packages cannot be installed in it",
            hint="remove [image] apt-packages, or use a Debian or Ubuntu base image",
        )
    text = status.decode("utf-8", errors="replace")
    arch = _dpkg_arch(text) or GO_TO_DEB.get(config_arch or "", "")
    if not arch:
        raise BaseImageError(f"base image {reference}: cannot tell its architecture (no dpkg entry in {STATUS})")
    foreign_raw = fs.read(DPKG_ARCH)
    foreign = sorted({a for a in (foreign_raw or b"").decode("ascii", errors="replace").split() if a != arch})
    files = []
    main = fs.read(MAIN_LIST)
    if main is not None:
        files.append((MAIN_LIST, main.decode("utf-8", errors="replace")))
    for path in sources_files(fs.listdir("/etc/apt/sources.list.d")):
        data = fs.read(path)
        if data is not None:
            files.append((path, data.decode("utf-8", errors="replace")))
    if not files:
        raise BaseImageError(
            f"base image {reference} has no apt sources (/etc/apt/sources.list, "
            "/etc/apt/sources.list.d/): apt cannot install anything in it",
            hint="use a base image with apt configured, or remove [image] apt-packages",
        )
    keyrings: dict[str, bytes] = {}
    for path in [TRUSTED] + [
        f"{TRUSTED_DIR}/{n}" for n in fs.listdir(TRUSTED_DIR) or [] if n.endswith((".gpg", ".asc"))
    ]:
        data = fs.read(path)
        if data is not None:
            keyrings[path] = data
    from .sources import read_sources

    for src in read_sources(files, arch).sources:  # Signed-By files
        for ref in src.signed_by:
            if ref.startswith("/") and ref not in keyrings:
                try:
                    data = fs.read(ref)
                except Exception:
                    data = None
                if data is not None:
                    keyrings[ref] = data
    tools = [t for t in NEEDED_TOOLS if fs.exists(t)]
    return BaseFacts(reference, arch, foreign, files, text, keyrings, tools)


def _dpkg_arch(status: str) -> str | None:
    """dpkg's native architecture: the Architecture of the installed dpkg package."""
    from debian.deb822 import Deb822

    for stanza in Deb822.iter_paragraphs(
        status.splitlines(keepends=True), use_apt_pkg=False, fields=["Package", "Architecture", "Status"]
    ):
        if stanza.get("Package") == "dpkg" and str(stanza.get("Status", "")).endswith(" installed"):
            arch = str(stanza.get("Architecture", "")).strip()
            return arch if arch and arch != "all" else None
    return None


def require_apt(facts: BaseFacts) -> None:
    missing = [t for t in NEEDED_TOOLS if t not in facts.tools]
    if missing:
        raise BaseImageError(
            f"base image {facts.reference} has no apt ({', '.join(missing)} missing): mlenv installs "
            "the locked .debs with apt-get and dpkg",
            hint="use a Debian or Ubuntu base image with apt, or remove [image] apt-packages",
        )


# --- where the layers come from -----------------------------------------------------


def _cache_path(key: str):
    from .archive import cache_dir

    return cache_dir() / "base" / (hashlib.sha256(key.encode()).hexdigest() + ".json")


def read_base(reference: str, digest: str | None, arch: str) -> BaseFacts:
    """The apt facts of the base image for Debian architecture arch (cached: by digest,
    else by the Engine's image id, so a tag-only base is exported once per image)."""
    from ..runtime.fsutil import atomic_write

    key = f"{FORMAT}\0{reference}\0{digest}\0{arch}" if digest else None
    if key is None:
        image_id = _engine_image_id(reference)
        key = f"{FORMAT}\0{image_id}\0{arch}" if image_id else None
    if key is not None:
        path = _cache_path(key)
        if path.is_file():
            facts = BaseFacts.from_json(path.read_text(encoding="utf-8"))
            if facts is not None and facts.arch == arch:
                os.utime(path)
                return facts
    got = _from_registry(reference, digest, arch) if digest else None
    if got is None:
        try:
            got = _from_engine(reference, arch)
        except BaseUnavailable:
            got = _from_registry(reference, digest, arch, last_resort=True) if not digest else None
            if got is None:
                raise
    facts, image_id = got
    atomic_write(_cache_path(key or f"{FORMAT}\0{image_id}\0{arch}"), facts.to_json())
    return facts


def _engine_image_id(reference: str) -> str | None:
    """The local Engine's image id of a tag-only reference, None when it has none."""
    from .. import dockerd

    try:
        info = dockerd.inspect(reference)
    except MlenvError:  # no Engine: _from_engine says which
        return None
    return str(info["Id"]) if info and info.get("Id") else None


def _from_registry(
    reference: str, digest: str | None, arch: str, *, last_resort: bool = False
) -> tuple[BaseFacts, str] | None:
    """(facts, the pulled digest) read from the base's registry: its layers into mlenv's
    blob store (mlenv.oci.pull.pull_image; the lock's digest is what is pulled, an index
    resolves to arch's entry), then their root file system. None when the reference
    names no registry or the registry does not have it (the Engine may); other
    failures (auth refused, a digest mismatch) are one line. last_resort: the Engine
    has nothing either, so a registry that cannot be reached is the error to report."""
    from ..oci.client import ManifestNotFound, RegistryTransferError, names_registry
    from ..oci.image import base_layers
    from ..oci.pull import pull_image
    from ..oci.rootfs import RootFSError, read_layers
    from ..oci.store import default_store

    if not names_registry(reference):
        return None
    go = {v: k for k, v in GO_TO_DEB.items()}.get(arch)
    if go is None:
        return None
    store = default_store()
    pinned = reference if ("@" in reference or not digest) else f"{reference}@{digest}"
    try:
        image = pull_image(pinned, f"linux/{go}", store)
    except (ManifestNotFound, RegistryTransferError) as exc:
        if last_resort:
            raise BaseUnavailable(
                f"base image {reference} could not be read from its registry ({exc.message}), nor from a local "
                "Docker Engine: mlenv reads its apt sources, keyring and dpkg status to lock "
                "[image] apt-packages",
                hint=exc.hint or "check the registry and your credentials (docker login), then `mlenv lock` again",
            ) from None
        return None
    if digest and digest not in (image.digest, image.manifest_digest, image.config_digest):
        raise BaseImageError(
            f"base image {reference} in its registry is {image.digest[:19]}…, the lock pins {digest[:19]}…",
            hint="`mlenv lock --upgrade` to pin the new base",
        )

    def opener(d: str):
        return lambda: store.open(d)

    try:
        fs = read_layers(
            [(opener(d.digest), True) for d in base_layers(json.loads(image.manifest))], lambda p: keep("/" + p)
        )
    except RootFSError as exc:
        raise BaseImageError(f"base image {reference}: {exc}") from None
    config = json.loads(image.config)
    facts = facts_from_rootfs(fs, reference, str(config.get("architecture") or ""))
    if facts.arch != arch:
        raise BaseImageError(f"base image {reference} for {arch} holds a dpkg database for {facts.arch}")
    return facts, image.digest


def _from_engine(reference: str, arch: str) -> tuple[BaseFacts, str]:
    from .. import dockerd

    try:
        client = dockerd.connect()
    except MlenvError as exc:
        raise BaseUnavailable(f"base image {reference} cannot be read: {exc.message}", hint=exc.hint) from None
    try:
        return _read_from_engine(client, reference, arch)
    finally:
        client.close()


def _read_from_engine(client: Any, reference: str, arch: str) -> tuple[BaseFacts, str]:
    """(facts, image id) of reference in the Engine of client (a docker SDK client), pulled if absent."""
    import tempfile

    from .. import dockerd
    from ..oci.rootfs import RootFSError, from_docker_save
    from .archive import cache_dir

    try:
        info = dockerd.inspect(reference, client)
    except MlenvError:
        info = None
    if info is None:
        try:
            client.images.pull(reference)
            info = client.api.inspect_image(reference)
        except Exception as exc:
            raise BaseUnavailable(
                f"base image {reference} is not in the local Docker Engine and could not be pulled "
                f"({clip(first_line(exc), 160)}): mlenv reads "
                "its apt sources, keyring and dpkg status to lock [image] apt-packages",
                hint=f"`docker pull {reference}`, then `mlenv lock` again",
            ) from None
    engine_arch = GO_TO_DEB.get(str(info.get("Architecture", "")), str(info.get("Architecture", "")))
    if engine_arch != arch:
        raise BaseImageError(
            f"base image {reference} in the local Docker Engine is {engine_arch}, not {arch}: "
            f"mlenv cannot read the {arch} image to lock its apt packages yet",
            hint=f"lock {arch} on a {arch} machine, or remove that platform",
        )
    tmpdir = cache_dir() / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="save-", suffix=".tar") as tmp:
        try:
            for chunk in client.api.get_image(info["Id"]):
                tmp.write(chunk)
            tmp.flush()
        except Exception as exc:
            raise BaseImageError(f"could not export base image {reference} from the Docker Engine: {exc}") from None
        try:
            fs, config = from_docker_save(tmp.name, keep)
        except RootFSError as exc:
            raise BaseImageError(f"base image {reference}: {exc}") from None
    return facts_from_rootfs(fs, reference, str(config.get("architecture") or "")), str(info["Id"])
