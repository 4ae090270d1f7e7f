"""mlenv.lock: the model, its TOML form, and the content hash.

The content hash is the identity of an environment (image tag, registry key).
It is sha256 over a canonical JSON of exactly what determines the built
environment; docs/lockfile.md specifies it so another tool can recompute it.
Reading a lock checks every field's type and shape (mlenv.lock_schema) and recomputes
the hash, so a hand-edited, corrupted or crafted lock is rejected instead of silently
built (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import LockError
from .lock_schema import HINT, PACKAGE_FIELDS, check
from .runtime.fsutil import atomic_write
from .spec import sha256_json
from .validation import MAX_LOCK_BYTES, decode, loads_toml, quote, read_text

LOCK_VERSION = 1
CONTENT_FORMAT = "mlenv-content-v1"
SHORT = 12

# Fields of each manager's [[package]] entries, in the order they are written: the table
# in mlenv.lock_schema (a conda entry keeps enough to rebuild a rattler RepoDataRecord and
# install without re-reading channel repodata).
CONDA_FIELDS = tuple(PACKAGE_FIELDS["conda"])
PYPI_FIELDS = tuple(PACKAGE_FIELDS["pypi"])


@dataclass
class Package:
    manager: str  # "conda" | "pypi" | "apt"
    platform: str
    name: str
    version: str
    url: str
    sha256: str
    extra: dict = field(default_factory=dict)  # manager-specific fields (build, md5, depends, ...)

    def key(self) -> list[str]:
        return [self.manager, self.name, self.version, self.url, self.sha256]

    def get(self, name: str, default=None):
        return self.extra.get(name, default)


@dataclass
class Lock:
    spec_hash: str
    python: str | None
    platforms: dict[str, dict]  # platform -> {"python": "3.11.9" | None}
    packages: list[Package]
    variables: dict[str, str] = field(default_factory=dict)
    image: dict = field(default_factory=dict)  # base, digest, reference, apt-packages, python, steps
    inputs: dict = field(default_factory=dict)  # what was solved; informs the satisfiability check
    content_hash: str = ""

    # --- identity -------------------------------------------------------------
    def canonical(self) -> dict:
        image = self.image
        return {
            "format": CONTENT_FORMAT,
            "python": self.python,
            "variables": dict(sorted(self.variables.items())),
            "image": {
                "base": image.get("reference") or image.get("base"),
                "apt-packages": sorted(set(image.get("apt-packages", []))),
                "python": image.get("python"),
                "steps": list(image.get("steps", [])),
            },
            "platforms": {
                plat: {
                    "python": info.get("python"),
                    "packages": sorted(p.key() for p in self.packages if p.platform == plat),
                }
                for plat, info in sorted(self.platforms.items())
            },
        }

    def compute_hash(self) -> str:
        return "sha256:" + sha256_json(self.canonical())

    def seal(self) -> Lock:
        self.content_hash = self.compute_hash()
        return self

    @property
    def short_hash(self) -> str:
        return short_hash(self.content_hash)

    # --- queries --------------------------------------------------------------
    def for_platform(self, platform: str, manager: str | None = None) -> list[Package]:
        return [p for p in self.packages if p.platform == platform and (manager is None or p.manager == manager)]

    def platform_python(self, platform: str) -> str | None:
        return self.platforms.get(platform, {}).get("python") or self.python

    def has_moving_sources(self) -> bool:
        """Packages whose sources can move under an unchanged spec: local paths and git refs
        (mlenv.solve.moved checks them). Here, so a lock without any never imports that."""
        return any(p.manager == "pypi" and p.get("source") in ("path", "git") for p in self.packages)

    # --- TOML -----------------------------------------------------------------
    def dumps(self) -> str:
        out: list[str] = [
            "# mlenv.lock: written by `mlenv lock`. Do not edit: mlenv verifies the content hash on read.",
            f"version = {LOCK_VERSION}",
            f"content-hash = {_s(self.content_hash)}",
            f"spec-hash = {_s(self.spec_hash)}",
            "",
            "[environment]",
        ]
        if self.python is not None:
            out.append(f"python = {_s(self.python)}")
        out.append(f"variables = {_inline(self.variables)}")
        out += ["", "[image]"]
        for key in ("base", "reference", "digest", "python"):
            if self.image.get(key):
                out.append(f"{key} = {_s(self.image[key])}")
        out.append(f"apt-packages = {_list(sorted(set(self.image.get('apt-packages', []))))}")
        out.append(f"steps = {_list(self.image.get('steps', []))}")
        out += ["", "[inputs]"]
        for key, value in self.inputs.items():
            out.append(f"{_k(key)} = {_value(value)}")
        for plat, info in sorted(self.platforms.items()):
            out += ["", f"[platforms.{plat}]"]
            if info.get("python"):
                out.append(f"python = {_s(info['python'])}")
            out.append(f"packages = {len(self.for_platform(plat))}")
        for pkg in sorted(self.packages, key=lambda p: (p.platform, p.manager, p.name, p.version)):
            out += ["", "[[package]]", f"platform = {_s(pkg.platform)}", f"manager = {_s(pkg.manager)}"]
            fields = PACKAGE_FIELDS[pkg.manager]
            values = {"name": pkg.name, "version": pkg.version, "url": pkg.url, "sha256": pkg.sha256, **pkg.extra}
            for key in fields:
                if values.get(key) not in (None, "", []):
                    out.append(f"{key} = {_value(values[key])}")
        return "\n".join(out) + "\n"

    def write(self, path: Path) -> None:
        if not self.content_hash:
            self.seal()
        atomic_write(path, self.dumps())


def short_hash(content_hash: str) -> str:
    return content_hash.split(":", 1)[-1][:SHORT]


def loads_lock(text: str | bytes, path: Path | str = "mlenv.lock", *, verify: bool = True) -> Lock:
    """Parse and check a lock (str, or bytes that must be UTF-8). Every problem is one
    LockError naming `path`: size, encoding, TOML, nesting, the format version, any field
    of the wrong type or shape (mlenv.lock_schema), and (with verify) the content hash."""
    if isinstance(text, bytes):
        text = decode(text, path, MAX_LOCK_BYTES, LockError, "mlenv.lock", hint=HINT)
    elif len(text) > MAX_LOCK_BYTES:
        raise LockError(f"{path}: larger than {MAX_LOCK_BYTES} bytes; refusing to read it as mlenv.lock", hint=HINT)
    data = loads_toml(text, path, LockError, hint=HINT, lines=False, label="not a valid lock file")
    version = data.get("version")
    if type(version) is not int:  # `version = true` is a bool, which Python counts as an int
        raise LockError(f"{path}: not a valid lock file (version must be an integer, not {quote(version)})", hint=HINT)
    if version != LOCK_VERSION:
        raise LockError(
            f"{path}: lock format version {quote(version)} is not supported (this mlenv reads version {LOCK_VERSION})",
            hint=HINT,
        )
    check(data, path)
    packages = []
    for raw in data.get("package", []):
        raw = dict(raw)
        packages.append(
            Package(
                manager=raw.pop("manager"),
                platform=raw.pop("platform"),
                name=raw.pop("name"),
                version=raw.pop("version"),
                url=raw.pop("url"),
                sha256=raw.pop("sha256"),
                extra=raw,
            )
        )
    env = data.get("environment", {})
    lock = Lock(
        spec_hash=data["spec-hash"],
        python=env.get("python"),
        variables=dict(env.get("variables", {})),
        image=dict(data.get("image", {})),
        inputs=dict(data.get("inputs", {})),
        platforms={k: {"python": v.get("python")} for k, v in data.get("platforms", {}).items()},
        packages=packages,
        content_hash=data["content-hash"],
    )
    if verify:
        computed = lock.compute_hash()
        if computed != lock.content_hash:
            raise LockError(
                f"{path}: content hash mismatch: the file says {lock.content_hash[:19]}…, its content hashes to "
                f"{computed[:19]}…; it was edited by hand or corrupted",
                hint="`mlenv lock` regenerates it (or restore it from version control)",
            )
    return lock


def read_lock(path: Path, *, verify: bool = True) -> Lock:
    try:
        text = read_text(path, MAX_LOCK_BYTES, LockError, "mlenv.lock", hint=HINT)
    except FileNotFoundError:
        raise LockError(f"{path}: no such file", hint="run `mlenv lock` first") from None
    return loads_lock(text, path, verify=verify)


# --- a small, deterministic TOML writer (the lock only needs these shapes) -------


def _s(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _k(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else _s(key)


def _list(values) -> str:
    return "[" + ", ".join(_value(v) for v in values) + "]"


def _inline(mapping: dict) -> str:
    if not mapping:
        return "{}"
    return "{ " + ", ".join(f"{_k(k)} = {_value(v)}" for k, v in sorted(mapping.items())) + " }"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _s(value)
    if isinstance(value, (list, tuple)):
        return _list(value)
    if isinstance(value, dict):
        return _inline(value)
    if value is None:
        return '""'
    raise TypeError(f"cannot write {type(value).__name__} to the lock")
