"""What the daemonless builder needs to know about a base image, read from its
files (never by running it, so it works for any target platform):

- the Python a venv is created on: `[image] python` (else `python3` looked up in
  the base config's PATH), its path resolved through symlinks inside the image,
  and its version: X.Y from the interpreter's name (`python3.11`) or its stdlib
  directory (`<prefix>/lib/python3.11/os.py`); the full X.Y.Z from the config's
  PYTHON_VERSION (official python images), else Debian/Ubuntu's dpkg status
  (`python3.11-minimal` version), else X.Y only;
- the C library: glibc's version from the release banner every libc.so.6 carries
  ("... release version 2.36."), else the highest `GLIBC_2.N` symbol version it
  defines; `musl` when only `ld-musl-*.so.1` is there; none for a static base;
- /etc/os-release (or /usr/lib/os-release) fields.

Every parser here takes untrusted bytes and returns None / {} for anything it
does not understand (tests/image/test_daemonless_parsers.py, hypothesis).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field

from ..oci.rootfs import LayeredRootFS as RootFS
from ..oci.rootfs import clean

_LIBC_RE = re.compile(r"^(usr/)?lib(32|64)?/([^/]+-linux-gnu[^/]*/)?(libc\.so\.6|libc-\d+\.\d+\.so)$")
_MUSL_RE = re.compile(r"^(usr/)?lib/ld-musl-[^/]+\.so\.1$")
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
DPKG_STATUS = "var/lib/dpkg/status"
FACTS_VERSION = 1


@dataclass
class BaseFacts:
    python: str | None = None  # in-image path as configured / found on PATH (e.g. /usr/bin/python3)
    python_real: str | None = None  # after symlinks (e.g. /usr/bin/python3.11)
    python_version: str | None = None  # X.Y or X.Y.Z
    libc: str | None = None  # glibc | musl | None
    glibc: str | None = None  # X.Y
    os_release: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def python_xy(self) -> str | None:
        return ".".join(self.python_version.split(".")[:2]) if self.python_version else None


def wanted(path: str) -> bool:
    """Which base files the reader keeps the content of."""
    return path in OS_RELEASE or path == DPKG_STATUS or bool(_LIBC_RE.match(path))


# --- parsers (pure functions over untrusted bytes) ---------------------------------------


def parse_os_release(data: bytes | str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values optionally quoted with shell escapes."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if line.partition("=")[2].strip()[0] == '"':
                value = re.sub(r"\\([\\$\"`])", r"\1", value)
        out[key] = value
    return out


def glibc_version(libc: bytes) -> str | None:
    """glibc's X.Y from a libc.so.6's bytes: the release banner, else the highest
    GLIBC_2.N symbol version string."""
    m = re.search(rb"GNU C Library[^\n\x00]{0,200}?release version (\d{1,2})\.(\d{1,3})", libc)
    if m:
        return f"{int(m.group(1))}.{int(m.group(2))}"
    versions = {(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d{1,2})\.(\d{1,3})(?![.\d])", libc)}
    if versions:
        major, minor = max(versions)
        return f"{major}.{minor}"
    return None


def parse_dpkg_status(data: bytes | str) -> dict[str, str]:
    """Package -> Version of the installed packages in a dpkg status file."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    out: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("package") and fields.get("version") and "installed" in fields.get("status", "installed"):
            out[fields["package"]] = fields["version"]
    return out


def upstream_version(debian_version: str) -> str | None:
    """'3.11.2-6+deb12u6' -> '3.11.2' (epoch and Debian revision dropped)."""
    v = debian_version.split(":", 1)[-1]
    m = re.match(r"(\d+\.\d+(?:\.\d+)?)", v)
    return m.group(1) if m else None


def parse_pyvenv_cfg(data: bytes | str) -> dict[str, str]:
    """pyvenv.cfg as site.py reads it: `key = value` lines, keys lowercased."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    out: dict[str, str] = {}
    for line in re.split(r"\r\n|\r|\n", text):  # as site.py reads it: universal newlines only
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().lower()
        if key:
            out[key] = value.strip()
    return out


def render_pyvenv_cfg(home: str, version: str, executable: str, prefix: str) -> bytes:
    """The pyvenv.cfg `python -m venv --without-pip PREFIX` writes on Python 3.11+."""
    for name, value in (("home", home), ("version", version), ("executable", executable), ("prefix", prefix)):
        if not value or value != value.strip() or len(value.splitlines()) != 1 or any(ord(c) < 0x20 for c in value):
            raise ValueError(f"invalid pyvenv.cfg {name} {value!r}")
    return (
        f"home = {home}\ninclude-system-site-packages = false\nversion = {version}\n"
        f"executable = {executable}\ncommand = {executable} -m venv --without-pip {prefix}\n"
    ).encode()


def python_xy_from_name(path: str) -> str | None:
    m = re.search(r"(?:^|/)python(\d)\.(\d{1,2})$", path)
    return f"{m.group(1)}.{m.group(2)}" if m else None


# --- facts of a rootfs ----------------------------------------------------------------------


def find_python(fs: RootFS, interpreter: str | None, env_path: str) -> tuple[str | None, str | None]:
    """(configured path, resolved path) of the base's Python, or (None, None)."""
    candidates: list[str] = []
    if interpreter and interpreter.startswith("/"):
        candidates.append(interpreter)
    else:
        name = interpreter or "python3"
        for d in (env_path or "").split(":"):
            if d.startswith("/"):
                candidates.append(f"{d.rstrip('/')}/{name}")
    for cand in candidates:
        real = fs.resolve(cand)
        if real and fs.entries.get(real) is not None and fs.entries[real].kind in ("file", "hardlink"):
            return cand, "/" + real
    return None, None


def python_version(fs: RootFS, real: str, config_env: list[str]) -> str | None:
    xy = python_xy_from_name(real)
    if xy is None:  # e.g. /usr/local/bin/python3 -> python3 (no version in the name): the stdlib dir
        prefix = real.rsplit("/bin/", 1)[0] if "/bin/" in real else "/usr"
        for name in fs.listdir(prefix + "/lib") or []:
            got = python_xy_from_name(name)
            if got and fs.kind(f"{prefix}/lib/{name}/os.py") == "file":
                xy = got
                break
    if xy is None:
        return None
    for item in config_env:
        key, _, value = item.partition("=")
        if key == "PYTHON_VERSION" and value.startswith(xy + "."):
            m = re.match(r"\d+\.\d+\.\d+", value)
            if m:
                return m.group(0)
    status = fs.read(DPKG_STATUS)
    if status:
        pkgs = parse_dpkg_status(status)
        for pkg in (f"python{xy}-minimal", f"python{xy}", f"libpython{xy}-minimal"):
            if pkg in pkgs:
                up = upstream_version(pkgs[pkg])
                if up and up.startswith(xy + "."):
                    return up
    return xy


def libc_of(fs: RootFS) -> tuple[str | None, str | None]:
    best: str | None = None
    for path in sorted(fs.entries):
        if _LIBC_RE.match(path):
            data = fs.read(path)
            got = glibc_version(data) if data else None
            if got is None:
                m = re.search(r"libc-(\d+\.\d+)\.so$", path)
                got = m.group(1) if m else None
            if got and (best is None or _vkey(got) > _vkey(best)):
                best = got
    if best:
        return "glibc", best
    if any(_MUSL_RE.match(p) for p in fs.entries):
        return "musl", None
    return None, None


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def facts_of(fs: RootFS, config: dict, interpreter: str | None) -> BaseFacts:
    env = list((config.get("config") or {}).get("Env") or [])
    path = next((item.partition("=")[2] for item in env if item.startswith("PATH=")), "")
    facts = BaseFacts(path=path)
    for rel in OS_RELEASE:
        data = fs.read(rel)
        if data:
            facts.os_release = parse_os_release(data)
            break
    facts.libc, facts.glibc = libc_of(fs)
    facts.python, facts.python_real = find_python(fs, interpreter, path or "/usr/local/bin:/usr/bin:/bin")
    if facts.python_real:
        facts.python_version = python_version(fs, facts.python_real, env)
    return facts


def read_facts(store, manifest: dict, config: dict, interpreter: str | None, *, cache_dir=None) -> BaseFacts:
    """Facts of a pulled base (its layers in store), cached by manifest digest."""
    import hashlib

    from ..oci.image import base_layers
    from ..oci.manifest import canonical_json
    from ..oci.rootfs import read_layers
    from ..oci.store import OCI_LAYER_GZIP
    from ..runtime.fetch import default_cache_root as _default_cache
    from ..runtime.fsutil import atomic_write

    layers = base_layers(manifest)
    key = hashlib.sha256(
        canonical_json(
            {
                "v": FACTS_VERSION,
                "layers": [d.digest for d in layers],
                "config": config.get("config", {}).get("Env"),
                "python": interpreter,
            }
        )
    ).hexdigest()[:32]
    cache = (cache_dir or _default_cache()) / "base-facts" / f"{key}.json"
    try:
        facts = BaseFacts(**json.loads(cache.read_text()))
        os.utime(cache)  # used: its mtime is its last use (`mlenv cache prune`)
        return facts
    except (OSError, ValueError, TypeError):
        pass

    def opener(digest: str):
        return lambda: store.open(digest)

    fs = read_layers(
        [(opener(d.digest), d.media_type == OCI_LAYER_GZIP or d.media_type.endswith("gzip")) for d in layers],
        wanted,
    )
    facts = facts_of(fs, config, interpreter)
    atomic_write(cache, json.dumps(facts.to_json(), sort_keys=True), sync=False)  # a cache: torn = a miss
    return facts


def clean_path(path: str) -> str:
    return "/" + clean(path)
