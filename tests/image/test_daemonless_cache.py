"""The daemonless builder's cache under stress: a full disk under XDG_CACHE_HOME (a
small tmpfs) and concurrent builds of overlapping locks sharing one cache, each pushing
to its own repository of the test registry. mlenv is called in-process, except the
concurrent builds: separate `mlenv build` processes are what races on the cache there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from image_api import env_vars

import mlenv
from mlenv.errors import MlenvError

pytestmark = [pytest.mark.docker, pytest.mark.registry]
RUN = uuid.uuid4().hex[:8]
REGISTRY = "127.0.0.1:5000"


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch):
    """Each test names its CA bundle and builder itself."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)
    monkeypatch.delenv("MLENV_BUILDER", raising=False)


def cli_build(*args, cwd, env):
    """A separate `mlenv build --json` process (without MLENV_CA_BUNDLE / MLENV_BUILDER from here)."""
    full = {k: v for k, v in os.environ.items() if k not in ("MLENV_CA_BUNDLE", "MLENV_BUILDER")}
    full.update(env)
    cmd = [sys.executable, "-m", "mlenv.cli", "build", "--json", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def project(d: Path, name: str, deps: list[str], base: str, index: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        textwrap.dedent(f"""\
        [environment]
        name = "{name}"
        platforms = ["linux-64"]
        python = "3.11"
        [pypi]
        index-url = "{index}"
        dependencies = {json.dumps(deps)}
        [image]
        base = "{base}"
        python = "/usr/bin/python3"
        """)
    )
    with env_vars(MLENV_BUILDER=None):
        mlenv.lock(d)
    return d


def tag_exists(reference: str) -> bool:
    from mlenv.oci.client import remote_has

    return remote_has(reference) is not None


def leftovers(root: Path) -> list[str]:
    """Temporary files a write left behind (blob .part files, atomic_write temps)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and (p.name.endswith((".part", ".tmp")) or ".tmp" in p.name or ".part" in p.name)
    )


def check_cache(cache: Path) -> None:
    """Every blob is what its name says, every layer-cache entry names a blob that is there,
    and no temporary file is left."""
    blobs = cache / "mlenv" / "blobs" / "blobs" / "sha256"
    for blob in blobs.iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, blob
    for entry in (cache / "mlenv" / "layers").glob("*.json"):
        digest = json.loads(entry.read_text())["digest"]
        assert (blobs / digest.split(":", 1)[1]).is_file(), entry
    assert leftovers(cache) == []


def blobs_of(layout_tar: Path) -> dict[str, str]:
    import tarfile

    with tarfile.open(layout_tar) as tar:
        return {
            m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith("blobs/")
        }


# --- a full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and a mount the kernel permits)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def assert_one_line_no_space(excinfo: pytest.ExceptionInfo[MlenvError], area: str) -> None:
    """A full disk is an MlenvError (mlenv.runtime.errors.WriteError) of one line naming where."""
    message = excinfo.value.message
    assert excinfo.value.exit_code != 0 and "\n" not in message, message
    assert "no space left" in message.lower() and area in message, message


def test_full_disk_is_one_line_leaves_no_temp_file_and_pushes_no_tag(
    small_disk, tmp_path, base_image_remote, fixture_paths, monkeypatch
):
    d = project(tmp_path / "p", f"full-disk-{RUN}", ["fixbeta"], base_image_remote, fixture_paths["pypi_simple_url"])
    repo = f"{REGISTRY}/gaps11-full-{RUN}"
    from mlenv.lockfile import read_lock

    short = read_lock(d / "mlenv.lock").short_hash
    monkeypatch.setenv("XDG_CACHE_HOME", str(small_disk))

    # 1. the base image (80 MB) does not fit: the blob store fills up while it downloads
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, builder="daemonless", push=True, repository=repo)
    assert_one_line_no_space(e, str(small_disk / "mlenv" / "blobs"))
    assert leftovers(small_disk) == []
    assert not tag_exists(f"{repo}/full-disk-{RUN}:{short}")

    # 2. the base and the wheels fit (their stores live on a larger disk), the disk is full
    # otherwise: the layer cache cannot be written
    for child in small_disk.iterdir():
        subprocess.run(["rm", "-rf", str(child)], check=True)
    for name in ("mlenv/blobs", "mlenv/artifacts"):
        big = tmp_path / "big" / name
        big.mkdir(parents=True)
        (small_disk / name).parent.mkdir(parents=True, exist_ok=True)
        (small_disk / name).symlink_to(big)
    mlenv.build(d, builder="daemonless", layout=tmp_path / "warm.tar")  # fills blobs and artifacts
    for name in ("layers", "pyc", "base-facts"):
        subprocess.run(["rm", "-rf", str(small_disk / "mlenv" / name)], check=True)
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, builder="daemonless", push=True, repository=repo)
    assert_one_line_no_space(e, str(small_disk / "mlenv"))
    assert leftovers(small_disk) == [] and leftovers(tmp_path / "big") == []
    assert not tag_exists(f"{repo}/full-disk-{RUN}:{short}")
    ballast.unlink()
    check_cache(small_disk)


# --- concurrent builds sharing one cache ------------------------------------------------


def test_concurrent_builds_sharing_a_cache_give_the_solo_digests(
    tmp_path, base_image_remote, fixture_paths, monkeypatch
):
    """Three overlapping locks (fixalpha in all, numpy in two), one package per layer so
    the builds race on the same layer blobs, layer-cache entries, pyc packs and artifacts;
    each pushes to its own repository. Each digest is the one a build alone gives, and the
    shared cache is consistent afterwards (a fourth build takes every layer from it). The
    racing builds are separate `mlenv build` processes: the cache is shared across processes."""
    from mlenv.image import daemonless
    from mlenv.lockfile import read_lock
    from mlenv.oci.store import BlobStore
    from mlenv.spec import load_spec

    index = fixture_paths["pypi_simple_url"]
    sets = [["fixbeta"], ["fixbeta", "fixnum"], ["fixalpha==1.1.0", "fixnum", "fixplat"]]
    dirs = [
        project(tmp_path / f"p{i}", f"conc{i}-{RUN}", deps, base_image_remote, index) for i, deps in enumerate(sets)
    ]
    monkeypatch.setenv("MLENV_LAYER_MIN_BYTES", "1")  # here and in the build processes

    solo = []
    for i, d in enumerate(dirs):
        res = daemonless.build(load_spec(d / "mlenv.toml"), read_lock(d / "mlenv.lock"), "linux-64",
                               store=BlobStore(tmp_path / f"solo-store-{i}"), cache_dir=tmp_path / f"solo-{i}",
                               force=True, layout=tmp_path / f"solo-{i}.tar")  # fmt: skip
        solo.append(res.manifest_digest)
    assert len(set(solo)) == 3

    shared = tmp_path / "shared-cache"
    env = {"XDG_CACHE_HOME": str(shared)}
    procs = [
        cli_build(
            "--builder", "daemonless", "--push", "--repository", f"{REGISTRY}/gaps11-conc{i}-{RUN}", cwd=d, env=env
        )
        for i, d in enumerate(dirs)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
        results.append(json.loads(out))
    assert [r["digest"] for r in results] == solo
    assert [r["pushed"] for r in results] == solo
    for i, r in enumerate(results):
        from mlenv.oci.client import remote_has

        assert remote_has(r["image"]) == solo[i]

    check_cache(shared)
    # the shared layer (fixalpha 1.1.0) is one blob, and a later build finds every layer in the cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    again = [mlenv.build(d, layout=tmp_path / f"again-{i}.tar") for i, d in enumerate(dirs)]
    assert [a.digest for a in again] == solo
    # the package layers come from the layer cache (skeleton and metadata are always written: cheap)
    assert all(x["cached"] for a in again for x in a.layers or [] if x["id"].startswith("pypi/"))
    assert all(a.builder == "daemonless" and a.layers for a in again)
    fixalpha = {x["digest"] for a in again for x in a.layers or [] if x["id"] == "pypi/fixalpha"}
    assert len(fixalpha) == 1  # one blob for the package all three share
    for i in range(3):  # the same blobs as the solo build's layout (index.json differs: ref name)
        assert blobs_of(tmp_path / f"again-{i}.tar") == blobs_of(tmp_path / f"solo-{i}.tar")
    check_cache(shared)
