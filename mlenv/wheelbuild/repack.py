"""A built wheel, rewritten so its bytes depend only on its files' names and contents.

Build backends write zip entries in their own order, with the build time (or
SOURCE_DATE_EPOCH) as mtime, the umask's permissions, and compressed with the
zlib of the machine. mlenv rewrites every wheel it builds (git and local
packages) before hashing it:

- entries sorted by name, the `.dist-info/` directory last and its RECORD the
  very last entry (the order the wheel spec recommends);
- every entry dated 1980-01-01 00:00:00 (the zip format's epoch), made by "unix",
  mode 0644, or 0755 when the backend marked the file executable;
- stored, not deflated: compressed bytes depend on the zlib build (zlib-ng and
  zlib differ), stored bytes on the content only;
- RECORD regenerated: one line per file, sorted, `path,sha256=<urlsafe b64>,size`,
  then `<dist-info>/RECORD,,`.

The content of every file is kept byte for byte (a wheel's METADATA and WHEEL
are the backend's). Names are checked: no absolute paths, no `..`, no
backslashes, exactly one top-level `.dist-info` directory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)


class WheelError(ValueError):
    pass


def _dist_info(names: list[str]) -> str:
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    infos = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(infos) != 1:
        raise WheelError(f"a wheel needs exactly one .dist-info directory (found {len(infos)})")
    return infos[0]


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or ".." in parts or any(ord(c) < 0x20 for c in name):
        raise WheelError(f"unsafe file name in wheel: {name[:80]!r}")


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def repack(data: bytes) -> bytes:
    """The normalized bytes of the wheel `data` (see the module docstring)."""
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise WheelError(f"not a zip file ({exc})") from None
    files: dict[str, tuple[bytes, bool]] = {}
    with zin:
        for info in zin.infolist():
            if info.is_dir():
                continue
            _check_name(info.filename)
            if info.filename in files:
                raise WheelError(f"file {info.filename!r} appears twice in the wheel")
            executable = bool((info.external_attr >> 16) & 0o111)
            files[info.filename] = (zin.read(info), executable)
    info_dir = _dist_info(list(files))
    record_name = f"{info_dir}/RECORD"
    files.pop(record_name, None)
    for sig in ("RECORD.jws", "RECORD.p7s"):  # signatures over the old RECORD would be wrong now
        files.pop(f"{info_dir}/{sig}", None)

    def order(name: str) -> tuple[int, str]:
        return (1 if name.startswith(info_dir + "/") else 0, name)

    names = sorted(files, key=order)
    record = "".join(f"{n},{_record_hash(files[n][0])},{len(files[n][0])}\n" for n in names)
    record += f"{record_name},,\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zout:
        for name in [*names, record_name]:
            content, executable = files[name] if name != record_name else (record.encode("utf-8"), False)
            zinfo = zipfile.ZipInfo(name, date_time=EPOCH)
            zinfo.create_system = 3
            zinfo.external_attr = (0o100755 if executable else 0o100644) << 16
            zinfo.compress_type = zipfile.ZIP_STORED
            zout.writestr(zinfo, content)
    return out.getvalue()


def repack_file(src: Path) -> bytes:
    return repack(Path(src).read_bytes())


def wheel_metadata(data: bytes) -> tuple[str, str]:
    """(Name, Version) from a wheel's METADATA."""
    from email.parser import HeaderParser

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info_dir = _dist_info([i.filename for i in z.infolist()])
        meta = HeaderParser().parsestr(z.read(f"{info_dir}/METADATA").decode("utf-8", "replace"))
    name, version = meta.get("Name"), meta.get("Version")
    if not name or not version:
        raise WheelError("the wheel's METADATA has no Name or Version")
    return str(name), str(version)
