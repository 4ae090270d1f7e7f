"""Debian packages in the daemonless builder, and the apt lock read from the base's
registry with no Docker Engine: real Debian packages (deb.debian.org through this
machine's apt access), the test base image in the local registry, the Docker Engine
only to run what was built. mlenv is called in-process (`import mlenv`)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest
from image_api import env_vars, verified
from refusals import one_line

import mlenv
from mlenv.errors import MlenvError
from mlenv.image import daemonless, transport
from mlenv.lockfile import read_lock
from mlenv.oci.store import BlobStore
from mlenv.spec import load_spec

pytestmark = [pytest.mark.network, pytest.mark.docker, pytest.mark.registry]
RUN = uuid.uuid4().hex[:8]
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent"}


@pytest.fixture(autouse=True)
def _no_ca_setting(monkeypatch):
    """Each test names its CA bundle itself."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)


def mlenv_lock(d: Path, **env: str):
    """mlenv.lock(d) with these environment variables (and no MLENV_CA_BUNDLE)."""
    with env_vars(**env):
        return mlenv.lock(d)


def project(d: Path, base: str, apt: list[str], name: str, platforms=("linux-64",)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        f'[environment]\nname = "{name}"\nplatforms = {json.dumps(list(platforms))}\n\n'
        f'[image]\nbase = "{base}"\napt-packages = {json.dumps(apt)}\n'
    )
    return d


def load(d: Path):
    return load_spec(d / "mlenv.toml"), read_lock(d / "mlenv.lock")


def layer_members(store: BlobStore, digest: str) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.read(digest)))) as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


@pytest.fixture(scope="module")
def locked(tmp_path_factory, base_image_remote):
    """libgomp1 + curl locked against the registry base with no Docker Engine and an empty
    cache: the base's apt sources, keyring and dpkg status come from its registry."""
    root = tmp_path_factory.mktemp("dl-apt")
    d = project(root / "env", base_image_remote, ["libgomp1", "curl"], f"dl-apt-{RUN}")
    mlenv_lock(d, **NO_ENGINE, XDG_CACHE_HOME=str(root / "cache"))
    return d


def test_lock_reads_the_base_from_its_registry_without_an_engine(locked, base_image_remote, tmp_path):
    lock = read_lock(locked / "mlenv.lock")
    debs = {p.name: p for p in lock.for_platform("linux-64", "apt")}
    assert {"libgomp1", "curl", "libcurl4"} <= set(debs) and "libc6" not in debs  # the base has libc6
    assert lock.inputs["apt-base"] == lock.image["reference"]
    # the same lock as with an Engine there (and another cache): the same content hash
    other = project(tmp_path / "engine", base_image_remote, ["curl", "libgomp1"], f"dl-apt-{RUN}")
    assert mlenv_lock(other, XDG_CACHE_HOME=str(tmp_path / "cache")).content_hash == lock.content_hash
    assert read_lock(other / "mlenv.lock").content_hash == lock.content_hash
    # a base pinned by tag only that neither a registry nor an Engine has: apt-packages left
    # unpinned with a warning (docs/lockfile.md), not an error
    gone = project(tmp_path / "gone", "127.0.0.1:5000/mlenv-test/no-such-base:1", ["curl"], f"dl-apt-{RUN}")
    outcome = mlenv_lock(gone, **NO_ENGINE, XDG_CACHE_HOME=str(tmp_path / "c2"))
    assert any("left unpinned" in w for w in outcome.warnings), outcome.warnings
    assert not read_lock(gone / "mlenv.lock").for_platform("linux-64", "apt")


def test_daemonless_installs_exactly_the_locked_debs(locked, tmp_path, test_registry, docker_client):
    spec, lock = load(locked)
    ref = f"{test_registry}/dl-apt-{RUN}/img"
    first = daemonless.build(spec, lock, "linux-64", store=BlobStore(tmp_path / "a"), push_to=ref,
                             cache_dir=tmp_path / "cache-a", workers=2)  # fmt: skip
    second = daemonless.build(spec, lock, "linux-64", store=BlobStore(tmp_path / "b"), force=True,
                              cache_dir=tmp_path / "cache-b", workers=1)  # fmt: skip
    assert second.manifest_digest == first.manifest_digest  # the apt layer is deterministic too
    assert [x.id for x in first.layers] == ["apt", "metadata"]  # right above the base's layers
    assert first.rebase.startswith("no: Debian packages")
    members = layer_members(BlobStore(tmp_path / "a"), first.layers[0].digest)
    assert all(m.mtime == 1_700_000_000 and m.uname == "" for m, _ in members.values())
    status = members["var/lib/dpkg/status"][1].decode()
    assert "Package: libgomp1\nStatus: install ok installed" in status
    assert "usr/lib/x86_64-linux-gnu/libgomp.so.1" in members and "lib" not in members  # /lib is the base's link
    docker_client.images.pull(first.reference)
    try:
        want = {p.name: p.version for p in lock.for_platform("linux-64", "apt")}
        out = docker_client.containers.run(
            first.reference, ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *sorted(want)],
            network_mode="none", remove=True,
        ).decode()  # fmt: skip
        assert dict(ln.split(" ", 1) for ln in out.strip().splitlines()) == want
        script = (
            "python3 -c \"import ctypes; ctypes.CDLL('libgomp.so.1'); print('gomp ok')\" && curl --version | head -1"
            " && find /var/lib/apt/lists -type f ! -name lock && find / -xdev -name '*.deb' && dpkg --audit"
        )
        out = docker_client.containers.run(first.reference, ["sh", "-c", script], network_mode="none",
                                           remove=True).decode()  # fmt: skip
        assert out.splitlines()[0] == "gomp ok" and out.splitlines()[1].startswith("curl 7.88.1")
        assert len(out.strip().splitlines()) == 2  # no lists, no .deb, dpkg --audit finds nothing to say
        assert verified(first.reference, locked).lock.content_hash == lock.content_hash
    finally:
        docker_client.api.remove_image(first.reference, force=True)


def test_a_package_with_maintainer_scripts_is_refused_and_auto_moves_on(tmp_path, base_image_remote):
    from mlenv.apt.fetch import fetch_debs
    from mlenv.image.engine import BuildJob, choose

    d = project(tmp_path / "procps", base_image_remote, ["procps"], f"dl-apt-procps-{RUN}")  # postinst & co.
    mlenv.lock(d)
    spec, lock = load(d)
    debs = fetch_debs(lock.for_platform("linux-64", "apt"))
    job = BuildJob(spec=spec, lock=lock, platform="linux-64", ref="mlenv/x:1", artifacts=debs,
                   log_path=tmp_path / "log", push_to=f"127.0.0.1:5000/dl-apt-{RUN}/procps")  # fmt: skip
    reason = daemonless.DaemonlessBuilder().refuses(job)
    assert reason is not None and reason.startswith("Debian package procps ") and "postinst" in reason
    assert "\n" not in reason
    assert choose("auto", job).name in ("buildkit", "classic")
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, builder="daemonless", push=True, repository=f"127.0.0.1:5000/dl-apt-{RUN}")
    assert e.value.exit_code == 2 and "Debian package procps" in one_line(e)


def _arm64_base(tmp_path: Path, base_image_remote: str, ref: str) -> str:
    """A linux/arm64 base made without running anything: the test base's apt sources and
    keyrings, its dpkg status relabelled arm64, stand-ins for dpkg/apt-get/apt-helper."""
    from mlenv.apt.base import read_base
    from mlenv.image.daemonless import base_reference
    from mlenv.oci.image import canonical_json, oci_platform
    from mlenv.oci.layer import bytes_entry, write_layer
    from mlenv.oci.store import OCI_CONFIG, OCI_MANIFEST

    d = project(tmp_path / "amd64", base_image_remote, ["libgomp1"], f"dl-apt-arm-src-{RUN}")
    mlenv.lock(d)
    lock = read_lock(d / "mlenv.lock")
    facts = read_base(base_reference(lock), lock.image["digest"], "amd64")
    files = {p.lstrip("/"): t.encode() for p, t in facts.sources}
    files.update({p.lstrip("/"): data for p, data in facts.keyrings.items()})
    files["var/lib/dpkg/status"] = facts.status.replace("Architecture: amd64", "Architecture: arm64").encode()
    for tool in ("usr/bin/dpkg", "usr/bin/apt-get", "usr/lib/apt/apt-helper"):
        files[tool] = b"#!/bin/sh\nexit 1\n"
    store = BlobStore(tmp_path / "arm-store")
    layer = write_layer([bytes_entry(p, data) for p, data in sorted(files.items())], store)
    config = {**oci_platform("linux-aarch64"), "config": {"Env": ["PATH=/usr/bin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}  # fmt: skip
    cfg = store.put_bytes(canonical_json(config), OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg.to_json(),
                "layers": [layer.descriptor.to_json()]}  # fmt: skip
    desc = store.put_bytes(canonical_json(manifest), OCI_MANIFEST)
    return transport.push(store, desc.digest, ref).digest


def test_linux_aarch64_apt_lock_and_layer_from_this_x86_64_host(tmp_path, base_image_remote, test_registry):
    base = f"{test_registry}/dl-apt-{RUN}/arm64-base:1"
    _arm64_base(tmp_path, base_image_remote, base)
    d = project(tmp_path / "arm", base, ["libgomp1"], f"dl-apt-arm-{RUN}", platforms=("linux-aarch64",))
    mlenv_lock(d, **NO_ENGINE, XDG_CACHE_HOME=str(tmp_path / "cache"))
    spec, lock = load(d)
    debs = lock.for_platform("linux-aarch64", "apt")
    assert [p.name for p in debs] == ["libgomp1"] and debs[0].url.endswith("_arm64.deb")
    store = BlobStore(tmp_path / "store")
    built = daemonless.build(spec, lock, "linux-aarch64", store=store, push_to=f"{test_registry}/dl-apt-{RUN}/arm")
    members = layer_members(store, built.layers[0].digest)
    assert built.layers[0].id == "apt" and "usr/lib/aarch64-linux-gnu/libgomp.so.1" in members
    assert "Package: libgomp1\nStatus: install ok installed" in members["var/lib/dpkg/status"][1].decode()
    assert "Architecture: arm64" in members["var/lib/dpkg/status"][1].decode().split("Package: libgomp1", 1)[1]
