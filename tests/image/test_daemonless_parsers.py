"""The daemonless builder's pure parts: the layer writer's bytes, the base-file
parsers (hypothesis: any input gives a result or a clean None, never a crash),
the rootfs reader's whiteouts, the layer rule, the glibc floor, config assembly."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlenv.image import basefacts, layering, rebasable
from mlenv.oci import layer as L
from mlenv.oci.image import assemble, canonical_json, set_env
from mlenv.oci.rootfs import LayeredRootFS
from mlenv.oci.store import BlobStore

# --- the layer writer --------------------------------------------------------------------

GOLDEN = [
    L.bytes_entry("opt/mlenv/env/bin/tool", b"#!/bin/sh\necho hi\n", executable=True),
    L.bytes_entry("opt/mlenv/env/share/data.txt", b"x" * 5000),
    L.symlink_entry("opt/mlenv/env/bin/alias", "tool"),
    L.bytes_entry("opt/mlenv/env/lib/" + "long-name-" * 12 + "/f.txt", b"deep\n"),
    L.bytes_entry("opt/mlenv/env/ünïcode.txt", "ü\n".encode()),
]


def test_layer_bytes_are_pinned(tmp_path):
    """The exact bytes of a small layer: any change of the tar encoder, the
    compressor (deflate wheel / libdeflate version, level, block size) or the
    normalization changes these digests, and with them every image's. A failure
    here on another machine or CPU is a determinism bug (docs/build.md)."""
    layer = L.write_layer(list(reversed(GOLDEN)), BlobStore(tmp_path))
    assert layer.diff_id == "sha256:7b149cdb725b963622380184bd230d6dafde981cf596345da4e29758703f36bc"
    assert layer.descriptor.digest == "sha256:e608a0d4146f65be16fb62728c2883a100c254717513acc4a9c4acc18d8ce68a"


def test_layer_content_order_parents_and_metadata(tmp_path):
    store = BlobStore(tmp_path)
    layer = L.write_layer(GOLDEN, store)
    raw = gzip.decompress(store.read(layer.descriptor.digest))
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == layer.diff_id and len(raw) == layer.size
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:4] == ["opt", "opt/mlenv", "opt/mlenv/env", "opt/mlenv/env/bin"]  # parents first, added
    assert names == sorted(names, key=lambda n: n.split("/"))
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (L.FIXED_MTIME, 0, 0, "", "")
        assert m.mode == {tarfile.DIRTYPE: 0o755, tarfile.SYMTYPE: 0o777}.get(m.type, m.mode)
        assert set(m.pax_headers) <= {"path", "linkpath"}
    tool = next(m for m in members if m.name.endswith("bin/tool"))
    assert tool.mode == 0o755 and next(m for m in members if m.name.endswith("data.txt")).mode == 0o644
    assert any(m.name.endswith("ünïcode.txt") for m in members)


def test_worker_count_and_block_split_do_not_change_bytes(tmp_path):
    big = [L.bytes_entry(f"d/f{i}", bytes(range(256)) * 20_000 + str(i).encode()) for i in range(3)]  # > 1 block
    a = L.write_layer(big, BlobStore(tmp_path / "a"), workers=1)
    b = L.write_layer(list(reversed(big)), BlobStore(tmp_path / "b"), workers=3)
    assert a == b
    # several gzip members, read back whole by Python's gzip
    data = (tmp_path / "a" / "blobs" / "sha256" / a.descriptor.digest.split(":")[1]).read_bytes()
    assert data.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") >= 2
    assert len(gzip.decompress(data)) == a.size


def test_hardlinks_become_files_and_special_files_are_refused(tmp_path):
    import os

    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"same")
    os.link(root / "a" / "f", root / "a" / "g")
    entries = L.entries_from_dir(root)
    assert sorted((e.path, e.kind) for e in entries) == [("a", "dir"), ("a/f", "file"), ("a/g", "file")]
    os.mkfifo(root / "a" / "pipe")
    with pytest.raises(L.LayerError, match="not a regular file"):
        L.entries_from_dir(root)


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a//b", "./a", "a/\0"])
def test_bad_paths_refused(bad):
    with pytest.raises(L.LayerError):
        L.check_path(bad)


_name = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(
        st.lists(_name.filter(lambda s: s not in (".", "..")), min_size=1, max_size=4).map("/".join),
        st.tuples(st.binary(max_size=600), st.booleans()),
        max_size=8,
    ),
    link=st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=150),
)
def test_tarfile_reads_back_what_the_encoder_writes(files, link):
    paths = set(files)
    files = {p: v for p, v in files.items() if not any(q != p and q.startswith(p + "/") for q in paths)}
    entries = [L.bytes_entry(p, data, executable=exe) for p, (data, exe) in files.items()]
    entries.append(L.symlink_entry("zz-link", link))
    raw = b"".join(L.tar_stream(entries))
    with tarfile.open(fileobj=io.BytesIO(raw), encoding="utf-8") as tar:
        got = {m.name: m for m in tar.getmembers()}
        for p, (data, exe) in files.items():
            assert tar.extractfile(got[p]).read() == data
            assert got[p].mode == (0o755 if exe else 0o644)
    assert got["zz-link"].linkname == link


# --- base-file parsers (untrusted bytes) -----------------------------------------------------


def test_os_release_and_dpkg_status():
    text = 'NAME="Debian GNU/Linux"\nID=debian\n# c\nVERSION_ID="12"\nPRETTY_NAME="A \\"q\\""\nbad line\n'
    assert basefacts.parse_os_release(text) == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
        "VERSION_ID": "12",
        "PRETTY_NAME": 'A "q"',
    }
    status = (
        "Package: python3.11-minimal\nStatus: install ok installed\nVersion: 3.11.2-6+deb12u6\n\n"
        "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u7\nDescription: x\n y\n"
    )
    pkgs = basefacts.parse_dpkg_status(status)
    assert pkgs == {"python3.11-minimal": "3.11.2-6+deb12u6", "libc6": "2.36-9+deb12u7"}
    assert basefacts.upstream_version("1:3.11.2-6") == "3.11.2"


def test_glibc_version_from_libc_bytes():
    assert (
        basefacts.glibc_version(b"\x7fELF...GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n")
        == "2.36"
    )
    assert basefacts.glibc_version(b"\0GLIBC_2.2.5\0GLIBC_2.17\0GLIBC_2.34\0GLIBC_PRIVATE\0") == "2.34"
    assert basefacts.glibc_version(b"musl libc") is None


@given(st.binary(max_size=2000))
def test_base_parsers_never_crash(data):
    assert isinstance(basefacts.parse_os_release(data), dict)
    assert isinstance(basefacts.parse_dpkg_status(data), dict)
    assert isinstance(basefacts.parse_pyvenv_cfg(data), dict)
    got = basefacts.glibc_version(data)
    assert got is None or all(x.isdigit() for x in got.split("."))
    v = basefacts.python_xy_from_name(data.decode("latin-1"))
    assert v is None or v.count(".") == 1


_cfg_value = (
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)


@given(home=_cfg_value, version=_cfg_value, exe=_cfg_value)
def test_pyvenv_cfg_round_trip(home, version, exe):
    cfg = basefacts.parse_pyvenv_cfg(basefacts.render_pyvenv_cfg(home, version, exe, "/opt/mlenv/env"))
    assert cfg["home"] == home and cfg["version"] == version and cfg["executable"] == exe
    assert cfg["include-system-site-packages"] == "false"


@pytest.mark.parametrize("bad", ["/usr/bin\nhome = /evil", "a\x1eb", " x", ""])
def test_pyvenv_cfg_refuses_values_that_would_add_lines(bad):
    with pytest.raises(ValueError):
        basefacts.render_pyvenv_cfg(bad, "3.11", "/usr/bin/python3", "/opt/mlenv/env")


def _layer(entries) -> bytes:
    """A layer tar of (path, kind, data-or-target) entries, in order."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, kind, value in entries:
            info = tarfile.TarInfo(path)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            else:
                data = value or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_rootfs_whiteouts_and_symlinks():
    import io

    fs = LayeredRootFS()
    fs.apply_layer(io.BytesIO(_layer([
        ("usr", "dir", None), ("usr/bin", "dir", None), ("usr/bin/python3.11", "file", b"x"),
        ("usr/bin/python3", "symlink", "python3.11"), ("etc", "dir", None), ("etc/a", "file", b""),
        ("etc/sub", "dir", None), ("etc/sub/b", "file", b""), ("bin", "symlink", "usr/bin"),
    ])))  # fmt: skip
    assert fs.resolve("/bin/python3") == "usr/bin/python3.11" and fs.read("/bin/python3") == b"x"
    assert fs.kind("/bin/python3") == "file" and fs.kind("/etc") == "dir"
    fs.apply_layer(io.BytesIO(_layer([("etc/.wh.a", "file", b""), ("etc/sub/.wh..wh..opq", "file", b""),
                                      ("etc/sub/c", "file", b"")])))  # fmt: skip
    assert "etc/a" not in fs.entries and "etc/sub/b" not in fs.entries and "etc/sub/c" in fs.entries
    fs.apply_layer(io.BytesIO(_layer([("usr/bin/.wh.python3.11", "file", b"")])))
    assert fs.resolve("/usr/bin/python3") is None
    loop = LayeredRootFS()
    loop.apply_layer(io.BytesIO(_layer([("a", "symlink", "b"), ("b", "symlink", "a")])))
    assert loop.resolve("/a") is None  # a symlink loop resolves to nothing, never hangs


# --- the layer rule ---------------------------------------------------------------------------


_units = st.lists(
    st.tuples(
        st.sampled_from(["conda", "pypi"]),
        st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
        st.integers(0, 5 << 20),
    ),
    max_size=30,
    unique_by=lambda t: (t[0], t[1]),
)


@given(_units, st.randoms(), st.integers(2, 20))
def test_layer_plan_ignores_lock_order(raw, rnd, budget):
    units = [layering.Unit(f"{m}/{n}", m, n, s) for m, n, s in raw]
    a = layering.plan(units, max_layers=budget)
    shuffled = list(units)
    rnd.shuffle(shuffled)
    b = layering.plan(shuffled, max_layers=budget)
    assert [(x.id, x.units) for x in a] == [(x.id, x.units) for x in b]
    assert len(a) <= max(budget, 2)
    assert sorted(u for x in a for u in x.units) == sorted(u.id for u in units)


@given(_units, _units)
def test_a_big_package_gets_the_same_own_layer_in_any_environment(a, b):
    shared = layering.Unit("pypi/shared", "pypi", "shared", 3 << 20)
    for raw in (a, b):
        units = [layering.Unit(f"{m}/{n}", m, n, s) for m, n, s in raw if f"{m}/{n}" != shared.id] + [shared]
        if sum(1 for u in units if u.size >= layering.OWN_LAYER_MIN_BYTES) + 2 > layering.MAX_ENV_LAYERS:
            continue  # over budget: the rule may demote (documented)
        plan = layering.plan(units)
        assert any(x.id == shared.id and x.units == [shared.id] for x in plan)


def test_layer_plan_order_and_budget():
    units = [
        layering.Unit("pypi/sk", "pypi", "sk", 9 << 20, direct=True),
        layering.Unit("pypi/np", "pypi", "np", 5 << 20),
        layering.Unit("pypi/six", "pypi", "six", 10),
        layering.Unit("conda/python", "conda", "python", 30 << 20),
        layering.Unit("conda/zlib", "conda", "zlib", 100),
    ]
    assert [x.id for x in layering.plan(units)] == ["conda/python", "conda-rest", "pypi-rest", "pypi/np", "pypi/sk"]
    small = layering.plan(units, max_layers=3)
    assert [x.id for x in small] == ["conda/python", "conda-rest", "pypi-rest"]
    assert layering.budget(95) == 2 and layering.budget(1) == layering.MAX_ENV_LAYERS


# --- the glibc floor -----------------------------------------------------------------------


def test_glibc_floors():
    assert rebasable.conda_glibc_floor(["__glibc >=2.17,<3.0.a0", "libgcc >=13"]) == (2, 17)
    assert rebasable.conda_glibc_floor(["python >=3.8"]) is None
    assert rebasable.wheel_glibc_floor("x-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == (2, 17)
    assert rebasable.wheel_glibc_floor("x-1-cp311-cp311-manylinux_2_28_aarch64.whl") == (2, 28)
    assert rebasable.wheel_glibc_floor("x-1-py3-none-manylinux1_x86_64.whl") == (2, 5)
    assert rebasable.wheel_glibc_floor("x-1-py3-none-any.whl") is None


@given(st.lists(st.text(max_size=40), max_size=5), st.text(max_size=80))
def test_floor_parsers_never_crash(depends, filename):
    rebasable.conda_glibc_floor(depends)
    rebasable.wheel_glibc_floor(filename)


# --- config and manifest -------------------------------------------------------------------------


def test_env_semantics_and_canonical_json():
    assert set_env(["PATH=/usr/bin", "LANG=C"], [("PATH", "/x:/usr/bin"), ("A", "1")]) == [
        "PATH=/x:/usr/bin",
        "LANG=C",
        "A=1",
    ]
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_assembled_config_is_independent_of_dict_order(tmp_path):
    store = BlobStore(tmp_path)
    base_cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["bash"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
        "history": [{"created": "x"}],
        "container_config": {"Hostname": "builder"},
        "docker_version": "20.10",
    }
    base_manifest = {
        "schemaVersion": 2,
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": "sha256:" + "2" * 64,
                "size": 5,
            }
        ],
    }
    a = assemble(store, base_cfg, base_manifest, [], platform="linux-64", env=[("A", "1")], labels={"z": "1", "a": "2"})
    rev = json.loads(json.dumps(base_cfg), object_pairs_hook=lambda kv: dict(reversed(kv)))
    b = assemble(store, rev, base_manifest, [], platform="linux-64", env=[("A", "1")], labels={"a": "2", "z": "1"})
    assert a.manifest.digest == b.manifest.digest
    cfg = json.loads(a.config_bytes)
    assert "container_config" not in cfg and "docker_version" not in cfg and cfg["created"] == "2023-11-14T22:13:20Z"
    assert json.loads(a.manifest_bytes)["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    with pytest.raises(Exception, match="arm64"):
        assemble(store, base_cfg, base_manifest, [], platform="linux-aarch64", env=[], labels={})
