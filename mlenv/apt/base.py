"""What a base image says about apt, read from its files (never by running it):
its sources, the keyrings its apt trusts, its dpkg status (what is installed) and
its architecture.

Where the files come from: the base image's layers, merged by
mlenv.oci.rootfs.LayeredRootFS (whiteouts honoured). `base_rootfs()` gets them
from the local Docker Engine (`docker save` through the Engine API), pulling the
pinned reference through the Engine when it is not there. The registry pull of
mlenv.oci (issue 11, `mlenv.oci.pull.pull_image`) slots in at `_from_registry`:
once it exists it is tried first for a base that is not in the Engine.

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

from ..errors import MlenvError

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
    facts, image_id = _from_engine(reference, arch)
    atomic_write(_cache_path(key or f"{FORMAT}\0{image_id}\0{arch}"), facts.to_json())
    return facts


def _engine_image_id(reference: str) -> str | None:
    """The local Engine's image id of a tag-only reference, None when it has none."""
    from ..image.docker import DockerEngine

    try:
        return DockerEngine().image_id(reference)
    except Exception:  # no Engine: _from_engine says which
        return None


def _from_registry(reference: str, arch: str):
    """The seam for mlenv.oci.pull.pull_image (issue 11): the base's layers from its
    registry into mlenv's blob store, then LayeredRootFS.from_layers over the blobs.
    Returns None while that module is not there."""
    try:
        from ..oci import pull  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return
    return  # wired by the lead once pull_image's interface is settled


def _from_engine(reference: str, arch: str) -> tuple[BaseFacts, str]:
    import tempfile

    from ..image.docker import DockerEngine
    from ..oci.rootfs import RootFSError, from_docker_save
    from .archive import cache_dir

    client = DockerEngine().client
    try:
        info = client.api.inspect_image(reference)
    except Exception:
        info = None
    if info is None:
        try:
            client.images.pull(reference)
            info = client.api.inspect_image(reference)
        except Exception as exc:
            raise BaseUnavailable(
                f"base image {reference} is not in the local Docker Engine and could not be pulled "
                f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}): mlenv reads "
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
