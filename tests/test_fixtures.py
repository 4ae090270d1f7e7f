"""Tests of the local test fixtures: the conda channel, the PyPI index, the servers.

They check real behaviour (what rattler solves and installs, what uv resolves and
picks, what the server rejects), so a broken fixture fails here first.
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import datetime
import hashlib
import html.parser
import io
import json
import os
import stat
import subprocess
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import rattler
from plugin_fixtures import IndexServer, build_all, build_fixtures
from rattler import BuildString, GenericVirtualPackage, PackageName, PackageRecord, RepoDataRecord, Version
from rattler.exceptions import SolverError

LINUX = ["linux-64", "noarch"]
OSX_ARM = ["osx-arm64", "noarch"]


# --------------------------------------------------------------------------- helpers


def vp(name: str, version: str, build: str = "0") -> GenericVirtualPackage:
    return GenericVirtualPackage(PackageName(name), Version(version), BuildString(build))


def solve(channel: str, specs: list[str], platforms=LINUX, virtual_packages=()):
    return asyncio.run(
        rattler.solve(sources=[channel], specs=specs, platforms=platforms, virtual_packages=list(virtual_packages))
    )


def solved(records) -> dict[str, str]:
    return {r.name.normalized: str(r.version) for r in records}


def install(records, prefix: Path, cache: Path) -> None:
    asyncio.run(rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False))


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".fixtures-lock")
    }


def uv_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    env["UV_NO_CONFIG"] = "1"
    return env


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def uv_compile(
    tmp_path: Path,
    index_url: str,
    requirements: list[str],
    *,
    platform="x86_64-manylinux_2_28",
    python="3.11",
    constraints: list[str] = (),
    offline=False,
) -> subprocess.CompletedProcess:
    req = tmp_path / "requirements.in"
    req.write_text("\n".join(requirements) + "\n")
    cmd = [
        uv_bin(),
        "pip",
        "compile",
        str(req),
        "--generate-hashes",
        "--index-url",
        index_url,
        "--python-version",
        python,
        "--python-platform",
        platform,
        "--format",
        "pylock.toml",
        "-o",
        str(tmp_path / "pylock.toml"),
        "--quiet",
    ]
    if constraints:
        cons = tmp_path / "constraints.txt"
        cons.write_text("\n".join(constraints) + "\n")
        cmd += ["--constraint", str(cons)]
    if offline:
        cmd.append("--offline")
    (tmp_path / "pylock.toml").unlink(missing_ok=True)
    return subprocess.run(cmd, capture_output=True, text=True, env=uv_env(tmp_path), timeout=120)


def pylock(tmp_path: Path, *args, **kwargs) -> dict[str, dict]:
    result = uv_compile(tmp_path, *args, **kwargs)
    assert result.returncode == 0, result.stderr
    data = tomllib.loads((tmp_path / "pylock.toml").read_text())
    return {p["name"]: p for p in data["packages"]}


def wheel_names(package: dict) -> list[str]:
    return [w["url"].rsplit("/", 1)[-1] for w in package.get("wheels", [])]


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs))


def links(page: Path) -> list[dict]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.links


# --------------------------------------------------------------------------- build


EXPECTED_CONDA = {
    ("python", "3.11.9", "linux-64"), ("python", "3.11.9", "osx-arm64"),
    ("python", "3.12.4", "linux-64"), ("python", "3.12.4", "osx-arm64"),
    ("numpy", "1.26.4", "linux-64"), ("numpy", "1.26.4", "osx-arm64"),
    ("numpy", "2.0.0", "linux-64"), ("numpy", "2.0.0", "osx-arm64"),
    ("fixpy-utils", "0.3.0", "noarch"),
    ("libfix", "1.0.0", "linux-64"), ("libfix", "1.1.0", "linux-64"), ("libfix", "2.0.0", "linux-64"),
    ("libfix", "1.0.0", "osx-arm64"), ("libfix", "1.1.0", "osx-arm64"), ("libfix", "2.0.0", "osx-arm64"),
    ("libfix-data", "1.0.0", "noarch"), ("mlenv-hello", "1.0.0", "noarch"),
    ("fixcuda", "1.0.0", "linux-64"), ("fixglibc", "1.0.0", "linux-64"),
    ("conflict-a", "1.0.0", "noarch"), ("conflict-b", "1.0.0", "noarch"),
    ("fixpostlink", "1.0.0", "noarch"),
}  # fmt: skip

EXPECTED_WHEELS = {
    "fixalpha-1.0.0-py3-none-any.whl", "fixalpha-1.1.0-py3-none-any.whl", "fixalpha-2.0.0-py3-none-any.whl",
    "fixbeta-1.0.0-py3-none-any.whl", "numpy-1.26.4-py3-none-any.whl", "numpy-2.0.0-py3-none-any.whl",
    "fixnum-1.0.0-py3-none-any.whl", "fixconflict-1.0.0-py3-none-any.whl",
    "fixplat-1.0.0-py3-none-manylinux_2_17_x86_64.whl", "fixplat-1.0.0-py3-none-macosx_11_0_arm64.whl",
}  # fmt: skip


def test_build_is_fast_deterministic_and_idempotent(tmp_path):
    start = time.perf_counter()
    first = build_all(tmp_path / "a")
    took = time.perf_counter() - start
    assert first["built"] is True
    assert took < 3.0, f"fixture build took {took:.2f}s"

    second = build_all(tmp_path / "b")
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")

    again = build_all(tmp_path / "a")  # stamp matches: nothing written
    assert again["built"] is False
    assert again["conda_packages"] == first["conda_packages"]

    before = tree_digest(tmp_path / "a")
    forced = build_all(tmp_path / "a", force=True)
    assert forced["built"] is True
    assert tree_digest(tmp_path / "a") == before
    assert second["stamp"].read_text().strip() == build_fixtures.sources_hash()


def test_stale_stamp_triggers_rebuild(tmp_path):
    paths = build_all(tmp_path)
    hello = next(p for p in paths["conda_packages"] if p.name.startswith("mlenv-hello-"))
    hello.write_bytes(b"corrupted")
    assert build_all(tmp_path)["built"] is False  # stamp still matches the sources
    paths["stamp"].write_text("stale\n")
    assert build_all(tmp_path)["built"] is True
    assert hello.read_bytes().startswith(b"BZh")


def test_channel_layout_and_contents(fixture_paths, conda_channel_path):
    for subdir in ("noarch", "linux-64", "osx-arm64"):
        assert (conda_channel_path / subdir / "repodata.json").is_file()
    found = set()
    for subdir in ("noarch", "linux-64", "osx-arm64"):
        repodata = json.loads((conda_channel_path / subdir / "repodata.json").read_text())
        assert repodata["info"]["subdir"] == subdir
        for filename, rec in repodata["packages"].items():
            data = (conda_channel_path / subdir / filename).read_bytes()
            assert rec["sha256"] == hashlib.sha256(data).hexdigest()
            assert rec["md5"] == hashlib.md5(data).hexdigest()
            assert rec["size"] == len(data)
            assert rec["timestamp"] == 1704067200000
            assert rec["subdir"] == subdir
            found.add((rec["name"], rec["version"], subdir))
    assert found == EXPECTED_CONDA
    assert len(fixture_paths["conda_packages"]) == len(EXPECTED_CONDA)


def test_conda_package_format(conda_channel_path):
    path = conda_channel_path / "noarch" / "mlenv-hello-1.0.0-0.tar.bz2"
    with tarfile.open(fileobj=io.BytesIO(bz2.decompress(path.read_bytes()))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        read = lambda name: tar.extractfile(name).read()  # noqa: E731
        index = json.loads(read("info/index.json"))
        paths = json.loads(read("info/paths.json"))
        files = read("info/files").decode().splitlines()
        assert index["name"] == "mlenv-hello" and index["version"] == "1.0.0" and index["noarch"] == "generic"
        assert index["depends"] == ["libfix-data"]
        assert paths["paths_version"] == 1
        assert files == ["bin/mlenv-hello", "share/mlenv-hello/hello.txt"]
        for entry in paths["paths"]:
            data = read(entry["_path"])
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            assert entry["size_in_bytes"] == len(data)
            assert entry["path_type"] == "hardlink"
        assert read("share/mlenv-hello/hello.txt") == b"hello from the mlenv fixture channel\n"
        assert members["bin/mlenv-hello"].mode & 0o777 == 0o755
        assert {m.mtime for m in members.values()} == {build_fixtures.FIXED_EPOCH}
    noarch_python = conda_channel_path / "noarch" / "fixpy-utils-0.3.0-pyh0_0.tar.bz2"
    with tarfile.open(fileobj=io.BytesIO(bz2.decompress(noarch_python.read_bytes()))) as tar:
        assert json.loads(tar.extractfile("info/link.json").read())["noarch"]["type"] == "python"


def test_fallback_indexer_agrees_with_rattler(tmp_path, conda_channel_path):
    """The hand-written repodata writer (used without py-rattler) matches rattler's index."""
    channel = tmp_path / "channel"
    build_fixtures.build_conda_channel(channel, use_rattler=False)
    keys = (
        "name",
        "version",
        "build",
        "build_number",
        "depends",
        "constrains",
        "noarch",
        "sha256",
        "md5",
        "size",
        "timestamp",
        "subdir",
        "license",
    )
    for subdir in ("noarch", "linux-64", "osx-arm64"):
        ours = json.loads((channel / subdir / "repodata.json").read_text())["packages"]
        theirs = json.loads((conda_channel_path / subdir / "repodata.json").read_text())["packages"]
        assert ours.keys() == theirs.keys()
        for fn in ours:
            assert {k: ours[fn].get(k) for k in keys} == {k: theirs[fn].get(k) for k in keys}, fn


# --------------------------------------------------------------------------- rattler solve


def test_solve_mlenv_hello(conda_channel):
    records = solve(conda_channel, ["mlenv-hello"])
    assert solved(records) == {"mlenv-hello": "1.0.0", "libfix-data": "1.0.0", "libfix": "2.0.0"}
    hello = next(r for r in records if r.name.normalized == "mlenv-hello")
    assert hello.url == conda_channel + "/noarch/mlenv-hello-1.0.0-0.tar.bz2"


@pytest.mark.parametrize("platforms", [LINUX, OSX_ARM])
def test_solve_numpy_python_pins(conda_channel, platforms):
    records = solve(rattler.Channel(conda_channel), ["numpy 1.26.*", "python 3.11.*"], platforms=platforms)
    assert solved(records) == {"numpy": "1.26.4", "python": "3.11.9"}
    assert {r.subdir for r in records} == {platforms[0]}
    assert solved(solve(conda_channel, ["numpy", "python"], platforms=platforms)) == {
        "numpy": "2.0.0",
        "python": "3.12.4",
    }


def test_solve_respects_constrains(conda_channel):
    # numpy 2.0.0 constrains libfix >=2, so asking for libfix 1.* forces numpy 1.26.4
    assert solved(solve(conda_channel, ["numpy", "libfix 1.*"])) == {
        "numpy": "1.26.4",
        "libfix": "1.1.0",
        "python": "3.12.4",
    }


def test_solve_cuda_needs_virtual_package(conda_channel):
    with pytest.raises(SolverError, match="__cuda >=12"):
        solve(conda_channel, ["fixcuda"])
    with pytest.raises(SolverError):
        solve(conda_channel, ["fixcuda"], virtual_packages=[vp("__cuda", "11.8")])
    assert solved(solve(conda_channel, ["fixcuda"], virtual_packages=[vp("__cuda", "12.4")])) == {"fixcuda": "1.0.0"}
    with pytest.raises(SolverError):  # linux-64 only
        solve(conda_channel, ["fixcuda"], platforms=OSX_ARM, virtual_packages=[vp("__cuda", "12.4")])


def test_solve_glibc_virtual_package(conda_channel):
    assert solved(solve(conda_channel, ["fixglibc"], virtual_packages=[vp("__glibc", "2.28")])) == {"fixglibc": "1.0.0"}
    with pytest.raises(SolverError, match="__glibc"):
        solve(conda_channel, ["fixglibc"], virtual_packages=[vp("__glibc", "2.17")])


def test_virtual_package_overrides(conda_channel):
    """The README's VirtualPackageOverrides recipe (detect() + forced cuda/libc versions)."""
    overrides = rattler.VirtualPackageOverrides(
        cuda=rattler.Override.string("12.4"), libc=rattler.Override.string("2.28")
    )
    detected = rattler.VirtualPackage.detect(overrides)
    generic = {str(v.into_generic().name.normalized): str(v.into_generic().version) for v in detected}
    assert generic["__cuda"] == "12.4" and generic["__glibc"] == "2.28"
    assert solved(solve(conda_channel, ["fixcuda", "fixglibc"], virtual_packages=detected)) == {
        "fixcuda": "1.0.0",
        "fixglibc": "1.0.0",
    }


def test_solve_conflict_is_explained(conda_channel):
    with pytest.raises(SolverError) as info:
        solve(conda_channel, ["conflict-a", "conflict-b"])
    message = str(info.value)
    for needle in ("conflict-a", "conflict-b", "libfix 1.*", "libfix 2.*"):
        assert needle in message


# --------------------------------------------------------------------------- rattler install


def test_install_mlenv_hello(conda_channel, tmp_path):
    prefix = tmp_path / "env"
    install(solve(conda_channel, ["mlenv-hello"]), prefix, tmp_path / "pkgs")
    assert (prefix / "share/mlenv-hello/hello.txt").read_text() == "hello from the mlenv fixture channel\n"
    assert (prefix / "lib/libfix.txt").read_text() == "libfix 2.0.0 (linux-64)\n"
    assert len(list((prefix / "conda-meta").glob("mlenv-hello-1.0.0-*.json"))) == 1
    script = prefix / "bin/mlenv-hello"
    assert script.stat().st_mode & stat.S_IXUSR
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
    assert out == "hello from the mlenv fixture channel\n"


def _stored_fields(record) -> dict:
    """What a lockfile keeps per conda package (plain JSON-able values)."""
    nt = record.noarch
    return {
        "name": record.name.normalized, "version": str(record.version), "build": str(record.build),
        "build_number": record.build_number, "subdir": record.subdir,
        "depends": list(record.depends), "constrains": list(record.constrains),
        "noarch": "python" if nt.python else "generic" if nt.generic else None,
        "md5": record.md5.hex(), "sha256": record.sha256.hex(), "size": record.size,
        "timestamp": int(record.timestamp.timestamp() * 1000), "url": record.url, "channel": record.channel,
    }  # fmt: skip


def record_from_fields(f: dict) -> RepoDataRecord:
    """The README's recipe: a RepoDataRecord from stored fields, no repodata read."""
    package = PackageRecord(
        name=f["name"],
        version=f["version"],
        build=BuildString(f["build"]),
        build_number=f["build_number"],
        subdir=f["subdir"],
        noarch=f["noarch"],
        depends=f["depends"],
        constrains=f["constrains"],
        md5=bytes.fromhex(f["md5"]),
        sha256=bytes.fromhex(f["sha256"]),
        size=f["size"],
    )
    package.timestamp = datetime.datetime.fromtimestamp(f["timestamp"] / 1000, tz=datetime.UTC)
    return RepoDataRecord(package, file_name=f["url"].rsplit("/", 1)[-1], url=f["url"], channel=f["channel"])


def test_repodata_record_from_stored_fields_installs(conda_channel, tmp_path):
    records = solve(conda_channel, ["mlenv-hello", "fixpy-utils", "numpy 1.26.*", "python 3.11.*"])
    stored = json.loads(json.dumps([_stored_fields(r) for r in records]))  # through JSON, like a lockfile
    rebuilt = [record_from_fields(f) for f in stored]
    for new, old in zip(rebuilt, records, strict=False):
        assert (new.name, new.version, new.build, new.subdir, new.noarch, new.sha256, new.md5, new.size,
                new.timestamp, new.url, new.file_name, new.depends, new.constrains) == (
                old.name, old.version, old.build, old.subdir, old.noarch, old.sha256, old.md5, old.size,
                old.timestamp, old.url, old.file_name, old.depends, old.constrains)  # fmt: skip
    prefix = tmp_path / "env"
    install(rebuilt, prefix, tmp_path / "pkgs")
    assert (prefix / "share/mlenv-hello/hello.txt").is_file()
    # noarch: python is relocated into the solved python's site-packages
    init = prefix / "lib/python3.11/site-packages/fixpy_utils/__init__.py"
    assert '__version__ = "0.3.0"' in init.read_text()
    metas = sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))
    assert metas == sorted(f"{f['name']}-{f['version']}-{f['build']}.json" for f in stored)


def test_channel_over_http_verifies_sha256(conda_channel_server, tmp_path):
    records = solve(conda_channel_server.url, ["mlenv-hello"])
    hello = next(r for r in records if r.name.normalized == "mlenv-hello")
    assert hello.url.startswith(conda_channel_server.url + "/noarch/")
    assert "/noarch/repodata.json" in conda_channel_server.requests
    fields = _stored_fields(hello)
    fields["sha256"] = "00" * 32
    with pytest.raises(Exception, match="hash mismatch"):
        install([record_from_fields(fields)], tmp_path / "env", tmp_path / "pkgs")


# --------------------------------------------------------------------------- pypi index


def test_wheels_are_valid(fixture_paths):
    wheels = {p.name: p for p in fixture_paths["wheels"]}
    assert set(wheels) == EXPECTED_WHEELS
    for name, path in wheels.items():
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
            assert names[-1] == f"{dist_info}/RECORD"
            rows = [line.split(",") for line in zf.read(f"{dist_info}/RECORD").decode().splitlines()]
            assert sorted(r[0] for r in rows) == sorted(names)
            for member, digest, size in rows:
                if member.endswith("RECORD"):
                    assert digest == size == ""
                    continue
                data = zf.read(member)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={expected}" and int(size) == len(data)
            wheel = zf.read(f"{dist_info}/WHEEL").decode()
            assert f"Tag: {name[:-4].split('-', 2)[2]}" in wheel
            assert {i.date_time for i in zf.infolist()} == {build_fixtures.ZIP_DATE}
    with zipfile.ZipFile(wheels["fixbeta-1.0.0-py3-none-any.whl"]) as zf:
        metadata = zf.read("fixbeta-1.0.0.dist-info/METADATA").decode()
    assert "Name: fixbeta\n" in metadata and "Requires-Dist: fixalpha>=1.1,<2\n" in metadata
    with zipfile.ZipFile(wheels["fixplat-1.0.0-py3-none-manylinux_2_17_x86_64.whl"]) as zf:
        assert zf.read("fixplat/_platform.py") == b'PLATFORM = "linux-x86_64"\n'
    with zipfile.ZipFile(wheels["fixplat-1.0.0-py3-none-macosx_11_0_arm64.whl"]) as zf:
        assert zf.read("fixplat/_platform.py") == b'PLATFORM = "macos-arm64"\n'


def test_simple_index_pages(pypi_index_path, fixture_paths):
    projects = [a["href"] for a in links(pypi_index_path / "index.html")]
    assert projects == ["fixalpha/", "fixbeta/", "fixconflict/", "fixnum/", "fixplat/", "numpy/"]
    for project in projects:
        page = json.loads((pypi_index_path / project / "index.json").read_text())
        by_name = {f["filename"]: f for f in page["files"]}
        for link in links(pypi_index_path / project / "index.html"):
            href, _, fragment = link["href"].partition("#sha256=")
            target = (pypi_index_path / project / href).resolve()
            data = target.read_bytes()
            assert fragment == hashlib.sha256(data).hexdigest()
            assert by_name[target.name]["hashes"]["sha256"] == fragment
            assert by_name[target.name]["size"] == len(data)
            metadata = Path(str(target) + ".metadata").read_bytes()
            assert link["data-core-metadata"] == "sha256=" + hashlib.sha256(metadata).hexdigest()
    alpha = links(pypi_index_path / "fixalpha" / "index.html")
    assert [a["data-requires-python"] for a in alpha] == [">=3.8"] * 3  # parser unescapes &gt;
    assert "data-requires-python" not in links(pypi_index_path / "fixconflict" / "index.html")[0]


def test_uv_accepts_file_index(pypi_index_path, tmp_path):
    packages = pylock(tmp_path, pypi_index_path.as_uri(), ["fixbeta", "fixplat"], offline=True)
    assert {n: p["version"] for n, p in packages.items()} == {
        "fixalpha": "1.1.0",
        "fixbeta": "1.0.0",
        "fixplat": "1.0.0",
    }
    assert wheel_names(packages["fixplat"]) == ["fixplat-1.0.0-py3-none-manylinux_2_17_x86_64.whl"]
    wheel = packages["fixalpha"]["wheels"][0]
    path = Path(wheel["url"].removeprefix("file://"))
    assert wheel["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("platform", "wheel"), [
    ("x86_64-manylinux_2_28", "fixplat-1.0.0-py3-none-manylinux_2_17_x86_64.whl"),
    ("aarch64-apple-darwin", "fixplat-1.0.0-py3-none-macosx_11_0_arm64.whl"),
])  # fmt: skip
def test_uv_selects_platform_wheel(pypi_server, tmp_path, platform, wheel):
    seen = len(pypi_server.requests)
    packages = pylock(tmp_path, pypi_server, ["fixbeta", "fixplat"], platform=platform)
    assert packages["fixalpha"]["version"] == "1.1.0"
    assert wheel_names(packages["fixplat"]) == [wheel]
    assert packages["fixplat"]["wheels"][0]["url"] == f"{pypi_server.server.url}/files/{wheel}"
    assert packages["fixplat"]["wheels"][0]["size"] == (pypi_server.server.root_dir / "files" / wheel).stat().st_size
    assert "/simple/fixplat/" in pypi_server.requests[seen:]
    assert pypi_server.rejected == []


def test_uv_installs_platform_contents(pypi_index_path, tmp_path):
    target = tmp_path / "target"
    cmd = [
        uv_bin(),
        "pip",
        "install",
        "--offline",
        "--target",
        str(target),
        "--index-url",
        pypi_index_path.as_uri(),
        "--python-version",
        "3.11",
        "--python-platform",
        "aarch64-apple-darwin",
        "fixplat",
        "fixbeta",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=uv_env(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert (target / "fixplat/_platform.py").read_text() == 'PLATFORM = "macos-arm64"\n'
    assert (target / "fixalpha/__init__.py").read_text() == '__version__ = "1.1.0"\n'


def test_uv_numpy_pin_constrains_resolution(pypi_index_path, tmp_path):
    url = pypi_index_path.as_uri()
    free = pylock(tmp_path, url, ["fixnum"], offline=True)
    assert free["numpy"]["version"] == "2.0.0"
    pinned = pylock(tmp_path, url, ["fixnum"], constraints=["numpy==1.26.4"], offline=True)
    assert pinned["numpy"]["version"] == "1.26.4"
    assert wheel_names(pinned["numpy"]) == ["numpy-1.26.4-py3-none-any.whl"]


def test_uv_reports_conflict(pypi_index_path, tmp_path):
    result = uv_compile(tmp_path, pypi_index_path.as_uri(), ["fixconflict"], offline=True)
    assert result.returncode != 0
    assert "fixalpha<1.0" in result.stderr and "unsatisfiable" in result.stderr


# --------------------------------------------------------------------------- servers


def test_auth_server_rejects_without_credentials(pypi_auth_server):
    assert "@" not in pypi_auth_server.url
    assert (pypi_auth_server.username, pypi_auth_server.password) == ("mlenv-user", "s3cret-Tok3n")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(pypi_auth_server.url + "/fixalpha/", timeout=10)
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Basic")
    assert "/simple/fixalpha/" in pypi_auth_server.rejected

    wrong = base64.b64encode(b"mlenv-user:wrong").decode()
    request = urllib.request.Request(pypi_auth_server.url + "/fixalpha/", headers={"Authorization": f"Basic {wrong}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401

    token = base64.b64encode(f"{pypi_auth_server.username}:{pypi_auth_server.password}".encode()).decode()
    request = urllib.request.Request(pypi_auth_server.url + "/fixalpha/", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert "fixalpha-1.1.0-py3-none-any.whl" in response.read().decode()
    assert "/simple/fixalpha/" in pypi_auth_server.requests


def test_uv_with_auth_server(pypi_auth_server, tmp_path):
    failed = uv_compile(tmp_path, pypi_auth_server.url, ["fixbeta"])
    assert failed.returncode != 0 and "401" in failed.stderr
    packages = pylock(tmp_path, pypi_auth_server.url_with_credentials, ["fixbeta"])
    assert packages["fixalpha"]["version"] == "1.1.0"
    # uv keeps credentials out of the lock file
    assert pypi_auth_server.password not in (tmp_path / "pylock.toml").read_text()
    assert "/files/fixbeta-1.0.0-py3-none-any.whl.metadata" in pypi_auth_server.requests


def test_index_server_basics(fixture_paths, capfd):
    with IndexServer(fixture_paths["pypi"]) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.auth_url is None
        with urllib.request.urlopen(server.url + "/simple/fixalpha/", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/html")
            assert b"fixalpha-2.0.0-py3-none-any.whl" in r.read()
        pep691 = urllib.request.Request(
            server.url + "/simple/fixalpha/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(pep691, timeout=10) as r:
            assert r.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
            assert json.load(r)["versions"] == ["1.0.0", "1.1.0", "2.0.0"]
        for missing in ("/simple/nope/", "/files/"):  # no such project; no directory listings
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(server.url + missing, timeout=10)
            assert info.value.code == 404
        head = urllib.request.Request(server.url + "/files/fixbeta-1.0.0-py3-none-any.whl", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as r:
            assert int(r.headers["Content-Length"]) > 0
        assert server.requests == [
            "/simple/fixalpha/",
            "/simple/fixalpha/",
            "/simple/nope/",
            "/files/",
            "/files/fixbeta-1.0.0-py3-none-any.whl",
        ]
        server.clear()
        assert server.requests == []
        port = server.port
    assert server.requests == []  # still readable after stop
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # quiet
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
