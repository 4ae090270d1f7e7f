"""Unpack verified .debs into a staging directory, as dpkg would leave them, without
running anything: for the daemonless builder, which writes the staging directory as
a layer of its own (docs/build.md#debian-packages-without-a-daemon).

For each .deb (python-debian's DebFile reads the ar archive and its control.tar.*
and data.tar.*; xz, gz, bz2, and zst through `unzstd`):

- data.tar.* is extracted into the staging directory with the tar's modes (setuid
  kept), owners (when running as root) and mtimes. Member names are untrusted: a
  `..` component, a device node, or a path through a symlink the package itself
  created is refused. When the base's root file system is given (mlenv.oci.rootfs),
  a path whose parent directory is a symlink in the base (/lib -> usr/lib on merged-/usr
  systems) is placed at the resolved path, so the layer does not replace the base's
  symlink with a directory (dpkg writes through the symlink the same way).
- control.tar.* gives the dpkg database entries: `var/lib/dpkg/info/<pkg>.list` (every
  path of the package, `/.` first, in tar order, as dpkg writes it), `.md5sums`,
  `.conffiles`, `.shlibs`, `.symbols`, `.triggers`, `.templates` and the maintainer
  scripts (dpkg keeps them for a later removal); `<pkg>:<arch>.*` for
  `Multi-Arch: same` packages, as dpkg names them.
- `var/lib/dpkg/status` is the base's status with a stanza per package
  (`Status: install ok installed`, `Conffiles` with each conffile's md5) added or, for
  an upgraded base package, replaced; stanzas sorted by name and architecture, as
  dpkg writes the file.

Maintainer scripts: nothing can run them here. Which packages have preinst,
postinst, prerm, postrm, config or triggers is reported (Unpacked.scripts); the
allow-list of what an image does not need is:

- `triggers` that only activate `ldconfig` (`activate-noawait ldconfig`, `activate
  ldconfig`): every shared library package in Debian 12 has one. ldconfig refreshes
  /etc/ld.so.cache; Debian's dynamic linker searches the multiarch directories
  (/usr/lib/<triplet>, /lib/<triplet>) without the cache, so the libraries load.
- a script that does nothing: only comments, blank lines, `set -e` and `exit 0`.

Any other script is refused (UnpackError naming the package and the script): use
the BuildKit or classic builder, which run them (docs/build.md).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlenvError

SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config", "triggers")
INFO_MEMBERS = ("md5sums", "conffiles", "shlibs", "symbols", "triggers", "templates", "preinst", "postinst", "prerm",
                "postrm", "config")  # fmt: skip
LDCONFIG_TRIGGERS = {"activate-noawait ldconfig", "activate ldconfig"}
NOOP_LINES = {"set -e", "exit 0", "set -eu", "set -e -u"}
# dpkg's order of known status fields (lib/dpkg/parse.c); others follow Description
STATUS_ORDER = ("Package", "Essential", "Protected", "Status", "Priority", "Section", "Installed-Size", "Origin", "Maintainer", "Bugs",
                "Architecture", "Multi-Arch", "Source", "Version", "Config-Version", "Replaces", "Provides", "Depends",
                "Pre-Depends", "Recommends", "Suggests", "Breaks", "Conflicts", "Enhances", "Conffiles", "Description")  # fmt: skip


class UnpackError(MlenvError):
    """A .deb cannot be unpacked into an image without running it."""


@dataclass
class Unpacked:
    staging: Path
    packages: list[str] = field(default_factory=list)  # "name version arch", sorted
    status: str = ""  # the merged dpkg status (also written to staging/var/lib/dpkg/status)
    scripts: dict[str, list[str]] = field(default_factory=dict)  # package -> its maintainer scripts / triggers
    allowed: dict[str, str] = field(default_factory=dict)  # package -> why its scripts are not needed
    removed: list[str] = field(default_factory=list)  # paths an upgraded base package had and the new one lacks
    # staging-relative path -> (mode, uid, gid) of the .deb member unpacked there (the layer keeps them)
    owners: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def script_verdict(name: str, body: bytes) -> str | None:
    """Why a maintainer script / triggers file is not needed in an image, else None."""
    lines = [ln.strip() for ln in body.decode("utf-8", errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if name == "triggers":
        if lines and all(ln in LDCONFIG_TRIGGERS for ln in lines):
            return "only ldconfig triggers (the multiarch library directories need no ld.so.cache)"
        return None
    if all(ln in NOOP_LINES for ln in lines):
        return f"its {name} does nothing"
    return None


def _scripts(where: str, members: dict[str, bytes]) -> tuple[list[str], str, UnpackError | None]:
    """(maintainer scripts shipped, why none is needed (allow-list) or "", the refusal)."""
    shipped = [m for m in INFO_MEMBERS if m in members and m in SCRIPTS]
    if not shipped:
        return [], "", None
    reasons = [script_verdict(m, members[m]) for m in shipped]
    if all(reasons):
        return shipped, "; ".join(sorted({r for r in reasons if r})), None
    bad = [m for m, r in zip(shipped, reasons, strict=True) if not r]
    return (
        shipped,
        "",
        UnpackError(
            f"Debian package {where} has maintainer scripts ({', '.join(bad)}) that must run to install it, and "
            "the daemonless builder runs nothing",
            hint="build with --builder buildkit or classic (they run dpkg), or drop the package",
        ),
    )


def script_refusal(debs: list[Path]) -> str | None:
    """Why the daemonless builder cannot install these .debs (the first package, in name
    order, with a maintainer script that is not on the allow-list), or None. Reads only
    each .deb's control archive."""
    found = []
    for path in debs:
        fields, members = _control(_open_deb(Path(path)), Path(path).name)
        found.append((fields["Package"], fields["Version"], members))
    for name, ver, members in sorted(found, key=lambda x: (x[0], x[1])):
        _, _, refusal = _scripts(f"{name} {ver}", members)
        if refusal is not None:
            return refusal.message
    return None


def _open_deb(path: Path):
    from debian.arfile import ArError
    from debian.debfile import DebError, DebFile

    try:
        return DebFile(str(path))
    except (ArError, DebError, OSError, ValueError, KeyError) as exc:
        raise UnpackError(f"{path.name}: not a readable .deb ({exc})") from None


def _control(deb, where: str) -> tuple[dict, dict[str, bytes]]:
    from debian.deb822 import Deb822

    members: dict[str, bytes] = {}
    try:
        tar = deb.control.tgz()
        for m in tar.getmembers():
            name = posixpath.basename(str(m.name).rstrip("/"))
            if m.isfile() and name in INFO_MEMBERS + ("control",):
                fh = tar.extractfile(m)
                members[name] = fh.read() if fh is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnpackError(f"{where}: unreadable control archive ({exc})") from None
    if "control" not in members:
        raise UnpackError(f"{where}: no control file")
    stanza = Deb822(members["control"].decode("utf-8", errors="replace"))
    fields = {str(k): str(v) for k, v in stanza.items()}
    for key in ("Package", "Version", "Architecture"):
        if not fields.get(key):
            raise UnpackError(f"{where}: control file has no {key}")
    from ..apt.resolve import NAME_RE

    if not NAME_RE.match(fields["Package"]):
        raise UnpackError(f"{where}: invalid package name {fields['Package'][:60]!r}")
    return fields, members


def _target(staging: Path, rel: str, base, where: str, *, is_dir: bool = False) -> Path:
    """Where a package path goes in the staging dir: through the base's directory
    symlinks (a directory member the base has as a symlink to a directory, /lib on a
    merged-/usr base, lands at the symlink's target: dpkg keeps the symlink), never
    through a symlink in the staging dir itself."""
    parent, name = posixpath.split(rel)
    if base is not None and is_dir:
        real = base.resolve("/" + rel)
        if real is not None and real != rel and base.kind("/" + rel) == "dir":
            parent, name = posixpath.split(real)
    if base is not None and parent:
        real = base.resolve("/" + parent)
        if real is not None:
            parent = real
    dest = staging
    for part in [p for p in parent.split("/") if p]:
        dest = dest / part
        if dest.is_symlink():
            raise UnpackError(f"{where}: path {rel} goes through a symlink the packages create")
    return dest / name if name else dest


def unpack_debs(
    debs: list[Path], staging: str | os.PathLike[str], *, base_status: str = "", base=None, check_scripts: bool = True
) -> Unpacked:
    """Unpack debs (files already checked against the lock's sha256) into staging.
    base_status: the base image's /var/lib/dpkg/status text; base: its RootFS (for
    /lib-style symlinks and the file lists of upgraded packages)."""
    from debian.deb822 import Deb822

    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    result = Unpacked(staging)
    stanzas: dict[tuple[str, str], dict] = {}
    order: list[tuple[str, str]] = []
    for s in Deb822.iter_paragraphs(base_status.splitlines(keepends=True), use_apt_pkg=False):
        fields = {str(k): str(v) for k, v in s.items()}
        if fields.get("Package"):
            key = (fields["Package"], fields.get("Architecture", ""))
            stanzas[key] = fields
            order.append(key)
    info = staging / "var" / "lib" / "dpkg" / "info"
    root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    dir_times: list[tuple[Path, int]] = []
    for path in sorted(debs, key=lambda p: str(p)):
        path = Path(path)
        deb = _open_deb(path)
        fields, members = _control(deb, path.name)
        name, arch, ver = fields["Package"], fields["Architecture"], fields["Version"]
        where = f"{name} {ver}"
        shipped, allowed, refusal = _scripts(where, members)
        if shipped:
            result.scripts[name] = shipped
            if allowed:
                result.allowed[name] = allowed
            elif check_scripts and refusal is not None:
                raise refusal
        listing = ["/."]
        md5 = {}
        conffiles = [ln.strip() for ln in members.get("conffiles", b"").decode("utf-8", "replace").splitlines()
                     if ln.strip()]  # fmt: skip
        try:
            tar = deb.data.tgz()
            members_list = tar.getmembers()
        except Exception as exc:
            raise UnpackError(f"{where}: unreadable data archive ({exc})") from None
        from ..oci.rootfs import normalize

        for m in members_list:
            rel = normalize(str(m.name))
            if rel is None:
                raise UnpackError(f"{where}: unsafe path {str(m.name)[:100]!r} in its data archive")
            if rel == "":
                continue
            listing.append("/" + rel)
            dest = _target(staging, rel, base, where, is_dir=m.isdir())
            if dest == staging:
                continue  # the root (or a symlink to it)
            result.owners[dest.relative_to(staging).as_posix()] = (m.mode & 0o7777, int(m.uid), int(m.gid))
            if m.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                os.chmod(dest, m.mode & 0o7777)
                dir_times.append((dest, int(m.mtime)))
            elif m.isfile():
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                fh = tar.extractfile(m)
                h = hashlib.md5()
                with open(dest, "wb") as out:
                    while fh is not None and (chunk := fh.read(1 << 20)):
                        h.update(chunk)
                        out.write(chunk)
                md5["/" + rel] = h.hexdigest()
                os.chmod(dest, m.mode & 0o7777)
            elif m.issym():
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                os.symlink(m.linkname, dest)
            elif m.islnk():
                target = normalize(str(m.linkname))
                if target is None:
                    raise UnpackError(f"{where}: unsafe hard link {str(m.linkname)[:100]!r}")
                src = _target(staging, target, base, where)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                os.link(src, dest)
            else:
                raise UnpackError(f"{where}: {rel} is a device node or fifo, which mlenv does not unpack")
            if root and not m.islnk():
                os.lchown(dest, m.uid, m.gid)
            if not m.isdir():
                os.utime(dest, (int(m.mtime), int(m.mtime)), follow_symlinks=False)
        # dpkg's info files
        stem = f"{name}:{arch}" if fields.get("Multi-Arch", "").strip() == "same" else name
        info.mkdir(parents=True, exist_ok=True)
        (info / f"{stem}.list").write_text("\n".join(listing) + "\n", encoding="utf-8")
        for member in INFO_MEMBERS:
            if member in members:
                dest = info / f"{stem}.{member}"
                dest.write_bytes(members[member])
                os.chmod(dest, 0o755 if member in SCRIPTS and member != "triggers" else 0o644)
        if base is not None:  # files of the replaced version the new one no longer has
            for old_stem in (name, f"{name}:{arch}"):
                old = (
                    base.read(f"/var/lib/dpkg/info/{old_stem}.list")
                    if base.exists(f"/var/lib/dpkg/info/{old_stem}.list")
                    else None
                )
                if old:
                    now = set(listing)
                    result.removed += [p for p in old.decode("utf-8", "replace").splitlines()
                                       if p and p not in now and base.entry(p) is not None
                                       and base.entry(p).kind != "dir"]  # fmt: skip
        status = dict(fields)
        status["Status"] = "install ok installed"
        if conffiles:
            status["Conffiles"] = "\n" + "\n".join(f" {c} {md5.get(c, 'newconffile')}" for c in conffiles)
        key = (name, arch)
        for k in [k for k in stanzas if k[0] == name and (k[1] == arch or "all" in (k[1], arch))]:
            del stanzas[k]
        stanzas[key] = status
        result.packages.append(f"{name} {ver} {arch}")
    for dest, mtime in reversed(dir_times):  # after their content was written
        os.utime(dest, (mtime, mtime))
    result.packages.sort()
    result.removed = sorted(set(result.removed))
    result.status = "".join(_stanza(stanzas[k]) + "\n" for k in sorted(stanzas))
    status_path = staging / "var" / "lib" / "dpkg" / "status"
    status_path.parent.mkdir(parents=True, exist_ok=True)
    status_path.write_text(result.status, encoding="utf-8")
    return result


def layer_entries(unpacked: Unpacked, base=None) -> list:
    """The layer of an unpack (mlenv.oci.layer entries): every staged path, with the
    mode bits and numeric owner its .deb gave it (dpkg's database files: the writer's
    normal modes), plus a whiteout `.wh.<name>` for each path an upgraded base package
    had and the new version lacks (at its real path in the base)."""
    from dataclasses import replace

    from ..oci.layer import bytes_entry, entries_from_dir

    out = []
    for e in entries_from_dir(unpacked.staging):
        meta = unpacked.owners.get(e.path)
        out.append(replace(e, mode=meta[0], uid=meta[1], gid=meta[2]) if meta else e)
    have = {e.path for e in out}
    for path in unpacked.removed:
        parent, name = posixpath.split(path.lstrip("/"))
        real = base.resolve("/" + parent) if base is not None and parent else parent
        if real is None or not name:
            continue
        target = f"{real}/{name}" if real else name
        if target not in have:
            out.append(bytes_entry(f"{real}/.wh.{name}" if real else f".wh.{name}", b""))
    return out


def _dpkg_files(path: str) -> bool:
    return path == "var/lib/dpkg/status" or (path.startswith("var/lib/dpkg/info/") and path.endswith(".list"))


def apt_layer_entries(debs: list[Path], store, manifest: dict, staging: Path) -> list:
    """The apt layer of a base (its manifest, its layers in store): the .debs unpacked
    against the base's dpkg database and directory symlinks (read from its layers, only
    /var/lib/dpkg/status and the info/*.list files kept in memory)."""
    from ..oci.image import base_layers
    from ..oci.rootfs import read_layers

    def opener(digest: str):
        return lambda: store.open(digest)

    fs = read_layers([(opener(d.digest), True) for d in base_layers(manifest)], _dpkg_files, max_bytes=64 << 20)
    status = fs.read("/var/lib/dpkg/status")
    if status is None:
        raise UnpackError(
            "the base image has no dpkg database (/var/lib/dpkg/status): Debian packages cannot be added to it",
            hint="use a Debian or Ubuntu base image, or remove [image] apt-packages",
        )
    unpacked = unpack_debs(debs, staging, base_status=status.decode("utf-8", "replace"), base=fs)
    return layer_entries(unpacked, fs)


def _stanza(fields: dict) -> str:
    """One status stanza in dpkg's field order, formatted by python-debian."""
    from debian.deb822 import Deb822

    out = Deb822()
    for k in [k for k in STATUS_ORDER if k in fields] + [k for k in fields if k not in STATUS_ORDER]:
        out[k] = str(fields[k])
    return out.dump()
