"""The daemonless builder's new pure parts, no Engine, no network: the .pyc workers and
their cache (hypothesis on the pack reader), entries with their own mode and owner,
the apt layer of a synthetic .deb (dpkg-deb builds it) on a merged-/usr base, and the
streaming rootfs reader on multi-member gzip layers."""

from __future__ import annotations

import gzip
import importlib.util
import io
import marshal
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlenv.image import pyc
from mlenv.oci import layer as L
from mlenv.oci.rootfs import LayeredRootFS
from mlenv.oci.store import BlobStore

SOURCES = [
    (f"k{i:03d}", f"x = {i}\ndef f(a, b=({i}, 'two', 3.0)):\n    return [a, b, {{'k': a}}]\n".encode(), f"/m/{i}.py")
    for i in range(120)
] + [("bad", b"def (:\n", "/m/bad.py")]


def reference_pyc(data: bytes, dfile: str) -> bytes:
    code = compile(data, dfile, "exec", dont_inherit=True, optimize=0)
    return importlib.util.MAGIC_NUMBER + b"\x03\x00\x00\x00" + importlib.util.source_hash(data) + marshal.dumps(code, 2)


def test_compile_pool_bytes_do_not_depend_on_workers_or_batches():
    compiler = pyc.find_compiler(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert compiler is not None
    one = pyc.compile_sources(SOURCES, compiler, workers=1)
    three = pyc.compile_sources(list(reversed(SOURCES)), compiler, workers=3)
    assert one == three and "bad" not in one  # a file that does not compile gets no pyc
    assert all(one[k] == reference_pyc(data, dfile) for k, data, dfile in SOURCES if k != "bad")
    with pyc.CompilePool(compiler, 2) as pool:  # batches of any size, any order
        futures = [pool.submit(SOURCES[i : i + 7]) for i in range(0, len(SOURCES), 7)]
        merged = {k: v for f in futures for k, v in f.result().items()}
    assert merged == one


def test_a_dead_compiler_fails_the_batches_instead_of_hanging(tmp_path):
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\necho 'the compiler broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pyc.CompilePool(pyc.PycCompiler(str(fake), "3.11.0"), 2) as pool:
        futures = [pool.submit(SOURCES[i : i + 10]) for i in range(0, 50, 10)]
        for fut in futures:
            with pytest.raises(pyc.PycError, match="failed"):
                fut.result(timeout=60)


def test_pyc_cache_round_trip_and_damage(tmp_path):
    compiler = pyc.PycCompiler(sys.executable, "3.11.7")
    cache = pyc.PycCache(tmp_path, compiler)
    items = [("/site/a.py", "aa" * 32, b"pyc-a"), ("/site/b.py", "bb" * 32, b"pyc-b" * 100)]
    cache.remember("fixalpha", "11" * 32, items)
    assert cache.lookup("fixalpha") == {(p, s): b for p, s, b in items}
    assert cache.lookup("other") == {} and cache.lookup("../etc") == {}
    other = pyc.PycCache(tmp_path, pyc.PycCompiler(sys.executable, "3.11.8"))  # another compiler: nothing shared
    assert other.lookup("fixalpha") == {}
    pack = next((tmp_path / "pyc").rglob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[-1] ^= 0xFF  # a damaged pyc: the whole pack is ignored (the files are compiled again)
    pack.write_bytes(bytes(data))
    assert cache.lookup("fixalpha") == {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_pack_reader_never_crashes(tmp_path, data):
    path = tmp_path / "x.pack"
    path.write_bytes(pyc.PACK_MAGIC + data if data[:1] == b"\x00" else data)
    got = pyc.read_pack(path)
    assert isinstance(got, dict)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.text(alphabet="0123456789abcdef", min_size=64,
                                                                        max_size=64), st.binary(max_size=50)),
                max_size=8, unique_by=lambda t: (t[0], t[1])))  # fmt: skip
def test_pack_round_trip(tmp_path, items):
    path = tmp_path / "y.pack"
    path.write_bytes(pyc.write_pack(items))
    assert pyc.read_pack(path) == {(p, s): b for p, s, b in items}


def test_entries_with_their_own_mode_and_owner(tmp_path):
    store = BlobStore(tmp_path)
    entries = [
        L.Entry("usr/bin/su-x", "file", True, 3, data=b"abc", mode=0o4755, uid=0, gid=42),
        L.Entry("var/tmp", "dir", mode=0o1777),
        L.bytes_entry("usr/share/plain", b"x", executable=True),
    ]
    layer = L.write_layer(entries, store)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.read(layer.descriptor.digest)))) as tar:
        got = {m.name: (m.mode, m.uid, m.gid, m.uname) for m in tar.getmembers()}
    assert got["usr/bin/su-x"] == (0o4755, 0, 42, "") and got["var/tmp"] == (0o1777, 0, 0, "")
    assert got["usr/share/plain"] == (0o755, 0, 0, "") and got["usr/bin"] == (0o755, 0, 0, "")
    with pytest.raises(L.LayerError):
        L.write_layer([L.Entry("x", "file", False, 1, data=b"x", uid=1 << 30)], store)


# --- the apt layer of a synthetic .deb ---------------------------------------------------------


def _deb(tmp: Path, name: str, version: str, files: dict[str, tuple[bytes | None, int, int]],
         scripts: dict[str, str] | None = None) -> Path:  # fmt: skip
    """dpkg-deb -b of files {path: (content or None for a directory, mode, gid)}."""
    root = tmp / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: t <t@example.org>\n"
        "Description: mlenv test package\n"
    )
    for script, body in (scripts or {}).items():
        (root / "DEBIAN" / script).write_text(body)
        (root / "DEBIAN" / script).chmod(0o755)
    for path, (content, mode, gid) in files.items():
        target = root / path
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if os.geteuid() == 0:
            os.chown(target, 0, gid)  # before chmod: chown clears a setuid bit
        os.chmod(target, mode)
    out = tmp / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(out)], check=True, capture_output=True)
    return out


def _base_fs(files: dict[str, bytes], links: dict[str, str]) -> LayeredRootFS:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, target in links.items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    fs = LayeredRootFS()
    fs.apply_layer(buf)
    return fs


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to give files a group")
def test_apt_layer_of_a_synthetic_deb(tmp_path):
    from mlenv.image.debs import UnpackError, layer_entries, script_refusal, unpack_debs

    status = (
        "Package: tool\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: 1.0\n"
        "Description: old\n\n"
    )
    base = _base_fs(
        {"var/lib/dpkg/status": status.encode(), "var/lib/dpkg/info/tool.list": b"/.\n/usr\n/usr/bin/tool-old\n",
         "usr/bin/tool-old": b"old\n", "usr/lib/x86_64-linux-gnu/.keep": b""},
        {"lib": "usr/lib", "bin": "usr/bin"},
    )  # fmt: skip
    new = _deb(tmp_path, "tool", "2.0", {
        "lib": (None, 0o755, 0), "lib/x86_64-linux-gnu": (None, 0o755, 0),
        "lib/x86_64-linux-gnu/libtool.so.2": (b"\x7fELF", 0o644, 0),
        "usr/bin/tool-admin": (b"#!/bin/sh\n", 0o4754, 42), "var/spool/tool": (None, 0o1777, 0),
    }, scripts={"triggers": "activate-noawait ldconfig\n", "postinst": "#!/bin/sh\nset -e\n# nothing\nexit 0\n"})  # fmt: skip
    assert script_refusal([new]) is None  # ldconfig triggers and a postinst that does nothing: allowed
    unpacked = unpack_debs([new], tmp_path / "stage", base_status=status, base=base)
    entries = {e.path: e for e in layer_entries(unpacked, base)}
    assert "lib" not in entries and "lib/x86_64-linux-gnu/libtool.so.2" not in entries  # /lib is the base's link
    assert "usr/lib/x86_64-linux-gnu/libtool.so.2" in entries
    admin = entries["usr/bin/tool-admin"]
    assert (admin.mode, admin.uid, admin.gid) == (0o4754, 0, 42)
    assert entries["var/spool/tool"].mode == 0o1777
    assert "usr/bin/.wh.tool-old" in entries  # the upgraded package no longer has it
    assert "Version: 2.0" in Path(str(entries["var/lib/dpkg/status"].source)).read_text()
    # deterministic: the layer bytes of a second unpack are the same
    store = BlobStore(tmp_path / "s")
    again = unpack_debs([new], tmp_path / "stage2", base_status=status, base=base)
    one = L.write_layer(list(entries.values()), store)
    two = L.write_layer(layer_entries(again, base), store)
    assert one.descriptor.digest == two.descriptor.digest
    bad = _deb(tmp_path, "svc", "1.0", {"etc/svc": (b"x", 0o644, 0)},
               scripts={"postinst": "#!/bin/sh\nadduser --system svc\n"})  # fmt: skip
    reason = script_refusal([new, bad])
    assert reason is not None and reason.startswith("Debian package svc 1.0 has maintainer scripts (postinst)")
    with pytest.raises(UnpackError, match="svc 1.0"):
        unpack_debs([bad], tmp_path / "stage3", base_status=status, base=base)


# --- the streaming rootfs reader ---------------------------------------------------------------


def test_rootfs_reads_every_member_of_a_multi_member_gzip_layer(tmp_path):
    store = BlobStore(tmp_path)
    big = os.urandom(5 << 20)  # more than one 4 MiB gzip member before the file we want
    layer = L.write_layer([L.bytes_entry("a/big.bin", big), L.bytes_entry("z/wanted.txt", b"found\n")], store)
    fs = LayeredRootFS.from_layers([lambda: store.open(layer.descriptor.digest)], keep=lambda p: p.endswith(".txt"))
    assert fs.read("/z/wanted.txt") == b"found\n" and fs.kind("/a/big.bin") == "file"


def test_rootfs_hardlink_to_a_file_that_was_not_kept(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("usr/lib/libc.so.6.real")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"libc!"))
        link = tarfile.TarInfo("usr/lib/libc.so.6")
        link.type, link.linkname = tarfile.LNKTYPE, "usr/lib/libc.so.6.real"
        tar.addfile(link)
    path = tmp_path / "layer.tgz"
    path.write_bytes(buf.getvalue())
    fs = LayeredRootFS.from_layers([path], keep=lambda p: p == "/usr/lib/libc.so.6")
    assert fs.read("/usr/lib/libc.so.6") == b"libc!"


# --- the tar scanner against tarfile -------------------------------------------------------------

_NAME_PART = st.text(alphabet=st.sampled_from("abcXYZ019._-ü€ "), min_size=1, max_size=40).filter(
    lambda t: t not in (".", "..") and not t.startswith(" ")
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(_NAME_PART, min_size=1, max_size=5).map("/".join),
                  st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
                  st.binary(max_size=1500), st.sampled_from([0o644, 0o755, 0o4755, 0o1777, 0o600])),
        max_size=10,
    ),
    st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
)  # fmt: skip
def test_tar_scanner_reads_what_tarfile_reads(members, fmt):
    from mlenv.oci.rootfs import normalize
    from mlenv.oci.tarscan import scan

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tar:
        files: list[str] = []
        for name, kind, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            try:
                if kind == "file":
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    files.append(name)
                    continue
                info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "fifo": tarfile.FIFOTYPE,
                             "hardlink": tarfile.LNKTYPE}[kind]  # fmt: skip
                info.linkname = (
                    (files[-1] if files else "x") if kind == "hardlink" else ("../" + name if kind == "symlink" else "")
                )
                tar.addfile(info)
            except ValueError:  # a name this format cannot hold
                continue
    raw = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
        want = []
        for m in tar:
            kind = ("dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk()
                    else "file" if m.isfile() else "other")  # fmt: skip
            data = tar.extractfile(m).read() if m.isfile() else None
            want.append((normalize(m.name), kind, m.size if kind == "file" else 0, m.mode & 0o7777, m.linkname, data))
    got = [(normalize(m.name), m.type, m.size, m.mode, m.linkname, m.data)
           for m in scan(io.BytesIO(raw), lambda n, s: True)]  # fmt: skip
    assert got == want


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.integers(min_value=0, max_value=2))
def test_tar_scanner_never_crashes(data, where):
    from mlenv.oci.tarscan import TarScanError, scan

    raw = data
    if where:  # a valid header first, so the fuzz reaches the member and extension paths
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("a/" + "long" * 40)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        raw = buf.getvalue()[: 512 * where] + data
    try:
        for _ in scan(io.BytesIO(raw), lambda n, s: True):
            pass
    except TarScanError:
        pass


def test_wheel_members_inflated_by_libdeflate_match_zipfile_and_a_bad_crc_is_refused(tmp_path):
    import zipfile

    from mlenv.image.materialize import _wheel_zip

    path = tmp_path / "demo-1.0-py3-none-any.whl"
    payloads = {"demo/__init__.py": b"x = 1\n" * 5000, "demo/data.bin": os.urandom(3000), "demo/empty.txt": b""}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in payloads.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED if name.endswith(".bin") else zipfile.ZIP_DEFLATED)
    with _wheel_zip(path) as z:
        assert {i.filename: z.open(i).read() for i in z.infolist()} == payloads
    raw = bytearray(path.read_bytes())
    at = raw.index(b"demo/__init__.py") + len("demo/__init__.py") + 40  # inside the deflated data
    raw[at] ^= 0x55
    bad = tmp_path / "bad.whl"
    bad.write_bytes(bytes(raw))
    with _wheel_zip(bad) as z, pytest.raises(zipfile.BadZipFile):
        z.open("demo/__init__.py").read()


def test_a_stored_blob_is_hashed_once_and_a_changed_file_is_caught(tmp_path):
    import time

    from mlenv.oci.pull import ensure_blob
    from mlenv.oci.store import OCI_LAYER_GZIP, Descriptor

    store = BlobStore(tmp_path)
    desc = store.put_bytes(b"layer bytes" * 1000, OCI_LAYER_GZIP)
    assert ensure_blob(store, desc)  # hashed, stamped
    stamp = tmp_path / "blobs" / "verified" / desc.digest.split(":", 1)[1]
    assert stamp.is_file() and ensure_blob(store, desc)  # the stamp answers
    time.sleep(0.02)
    path = store.path(desc.digest)
    path.write_bytes(b"Layer bytes" + b"layer bytes" * 999)  # same size, other bytes, new mtime
    assert not ensure_blob(store, desc) and not path.exists()  # caught, removed: fetched again
    assert not ensure_blob(store, Descriptor(OCI_LAYER_GZIP, desc.digest, desc.size))
