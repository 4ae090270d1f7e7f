"""The daemonless builder end to end: real py-rattler on the fixture channel, real
wheels (fixture index; PyPI where marked `network`), the local registry and the
Docker Engine (for running and loading what was built without it). Locks, builds,
rebases and verifies are called in-process; `mlenv rebase`'s refusal on the terminal
stays a CLI test."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest
from image_api import env_vars, verified
from refusals import one_line

import mlenv
from mlenv.image import daemonless, transport
from mlenv.lockfile import read_lock
from mlenv.oci.store import BlobStore
from mlenv.spec import load_spec

pytestmark = [pytest.mark.docker, pytest.mark.registry]
# the storage directory of the test registry (.ci/services.sh writes it into services.env)
REGISTRY_DATA = Path(
    os.environ.get("MLENV_TEST_REGISTRY_DATA") or Path(__file__).parents[2] / ".ci/_work/registry/data"
)
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts with an empty mlenv cache (layer cache, blob-repos records) and
    names its CA bundle itself."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)


def project(
    d: Path,
    name: str,
    body: str,
    base: str,
    *,
    python: str | None = "/usr/bin/python3",
    platforms=("linux-64",),
    env_python: str | None = None,
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    head = f'[environment]\nname = "{name}"\nplatforms = {json.dumps(list(platforms))}\n'
    if env_python:
        head += f'python = "{env_python}"\n'
    image = f'\n[image]\nbase = "{base}"\n' + (f'python = "{python}"\n' if python else "")
    (d / "mlenv.toml").write_text(head + textwrap.dedent(body) + image)
    with env_vars():  # also from module-scoped fixtures, before the autouse ones
        mlenv.lock(d)
    return d


def load(d: Path):
    return load_spec(d / "mlenv.toml"), read_lock(d / "mlenv.lock")


def layer_files(store: BlobStore, digest: str) -> dict[str, tarfile.TarInfo]:
    raw = gzip.decompress(store.read(digest))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: m for m in tar.getmembers()}


def registry_blobs() -> set[str]:
    root = REGISTRY_DATA / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {"sha256:" + p.parent.name for p in root.glob("*/*/data")}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, base_image_remote, conda_channel, fixture_paths):
    """conda (python stub, mlenv-hello, noarch fixpy-utils) + PyPI into the conda python."""
    return project(
        tmp_path_factory.mktemp("mixed"),
        f"dl-mixed-{RUN}",
        f"""
        [conda]
        channels = ["{conda_channel}"]
        dependencies = ["python 3.11.*", "mlenv-hello", "fixpy-utils"]
        [pypi]
        index-url = "{fixture_paths["pypi_simple_url"]}"
        dependencies = ["fixbeta"]
        [variables]
        GREETING = "hello world"
        """,
        base_image_remote,
        python=None,
    )


@pytest.fixture(scope="module")
def venv_env(tmp_path_factory, base_image_remote, fixture_paths):
    """PyPI packages in a venv on the base image's Python."""
    return project(
        tmp_path_factory.mktemp("venv"),
        f"dl-venv-{RUN}",
        f"""
        [pypi]
        index-url = "{fixture_paths["pypi_simple_url"]}"
        dependencies = ["fixbeta", "fixnum", "fixplat"]
        [variables]
        GREETING = "hello world"
        """,
        base_image_remote,
        env_python="3.11",
    )


BUILD_SCRIPT = """
import json, os, sys
from mlenv.image.daemonless import build
from mlenv.lockfile import read_lock
from mlenv.oci.store import BlobStore
from mlenv.spec import load_spec
d, store, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = build(load_spec(d + "/mlenv.toml"), read_lock(d + "/mlenv.lock"), "linux-64", store=BlobStore(store),
          workers=workers, min_layer_bytes=1)
print(json.dumps(r.as_dict()))
"""


def test_same_lock_same_digest_across_caches_tz_umask_tmpdir_seed_and_workers(mixed, tmp_path):
    spec, lock = load(mixed)
    first = daemonless.build(
        spec,
        lock,
        "linux-64",
        store=BlobStore(tmp_path / "store-a"),
        workers=2,
        cache_dir=tmp_path / "cache-a",
        min_layer_bytes=1,
    )
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache-b"),
        "TZ": "Pacific/Kiritimati",
        "TMPDIR": str(other_tmp),
        "PYTHONHASHSEED": "4242",
        "HOSTNAME": "elsewhere",
    }
    proc = subprocess.run(
        [
            "sh",
            "-c",
            'umask 077; exec "$0" -c "$1" "$2" "$3" 1',
            sys.executable,
            BUILD_SCRIPT,
            str(mixed),
            str(tmp_path / "store-b"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout)
    assert not any(layer["cached"] for layer in second["layers"])  # nothing came from a cache
    assert second["manifest_digest"] == first.manifest_digest
    assert second["config_digest"] == first.config_digest
    # each unit its own layer; the conda records carry no host path, no staging path in any layer
    store = BlobStore(tmp_path / "store-b")
    ids = [layer.id for layer in first.layers]
    assert ids[0] == "skeleton" and ids[-1] == "metadata" and "conda/python" in ids and "pypi/fixalpha" in ids
    for layer in first.layers:
        raw = gzip.decompress(store.read(layer.digest))
        for needle in (str(tmp_path).encode(), b"mlenv-daemonless-", b"rattler-pkgs", b"extracted_package_dir"):
            assert needle not in raw, (layer.id, needle)
    files = layer_files(store, next(x.digest for x in first.layers if x.id == "pypi/fixalpha"))
    site = "opt/mlenv/env/lib/python3.11/site-packages"
    assert f"{site}/fixalpha/__pycache__/__init__.cpython-311.pyc" in files
    assert not any(n.endswith(("INSTALLER", "direct_url.json")) for n in files)
    hello = next(x.digest for x in first.layers if x.id == "conda/mlenv-hello")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.read(hello)))) as tar:
        rec = json.load(tar.extractfile("opt/mlenv/env/conda-meta/mlenv-hello-1.0.0-0.json"))
        names = tar.getnames()
    assert rec["url"] == next(p.url for p in lock.packages if p.name == "mlenv-hello")
    assert "extracted_package_dir" not in rec and "source" not in rec.get("link", {})
    assert "opt/mlenv/env/share/mlenv-hello/hello.txt" in names and not any("libfix" in n for n in names)


def test_push_pull_and_docker_load_keep_the_digests(mixed, tmp_path, test_registry, docker_client):
    spec, lock = load(mixed)
    ref = f"{test_registry}/dl-{RUN}/mixed"
    store = BlobStore(tmp_path / "store")
    built = daemonless.build(spec, lock, "linux-64", store=store, push_to=ref, min_layer_bytes=1)
    assert built.reference == f"{ref}:{lock.short_hash}" and built.upload["digest"] == built.manifest_digest
    assert transport.head(built.reference) == built.manifest_digest  # the registry stored our exact bytes
    # pull back with the Engine: the image ID is the config digest
    docker_client.images.pull(built.reference)
    try:
        assert docker_client.api.inspect_image(built.reference)["Id"] == built.config_digest
        assert docker_client.api.inspect_image(built.reference)["RepoDigests"] == [f"{ref}@{built.manifest_digest}"]
    finally:
        docker_client.api.remove_image(built.reference, force=True)
    # docker load of the daemonless tarball: the same image ID (the classic store keeps config + diff_ids)
    again = daemonless.build(spec, lock, "linux-64", store=store, load=True, force=True, min_layer_bytes=1)
    try:
        assert again.manifest_digest == built.manifest_digest and again.image_id == built.config_digest
        assert docker_client.api.inspect_image(again.image_id)["RootFS"]["Layers"][-len(again.layers) :] == [
            x.diff_id for x in again.layers
        ]
        # a second build reuses the local image by its content-hash label: nothing built
        hit = daemonless.build(spec, lock, "linux-64", store=store, load=True, min_layer_bytes=1)
        assert hit.reused == "local" and hit.image_id == built.config_digest
    finally:
        docker_client.api.remove_image(again.image_id, force=True)
    # a build with the tag already in the registry: one HEAD, nothing built
    hit = daemonless.build(spec, lock, "linux-64", store=BlobStore(tmp_path / "empty"), push_to=ref)
    assert hit.reused == "registry" and hit.manifest_digest == built.manifest_digest
    assert not (tmp_path / "empty").exists()


def test_runs_on_the_engine_and_verify_passes(venv_env, tmp_path, test_registry, docker_client):
    spec, lock = load(venv_env)
    built = daemonless.build(
        spec, lock, "linux-64", store=BlobStore(tmp_path / "s"), load=True, push_to=f"{test_registry}/dl-{RUN}/venv"
    )
    try:
        script = (
            'echo "$GREETING|$MLENV_PREFIX|$PATH"; python -c "import fixbeta, fixalpha, fixnum, numpy, fixplat, sys;'
            ' print(fixalpha.__version__, fixplat.PLATFORM, sys.prefix)"; cat /opt/mlenv/mlenv.lock | head -3;'
            " PYTHONDONTWRITEBYTECODE=1 python -v -c 'import fixalpha' 2>&1 | grep 'code object from'"
        )
        out = docker_client.containers.run(
            built.reference, ["sh", "-c", script], network_mode="none", remove=True
        ).decode()
        assert "hello world|/opt/mlenv/env|/opt/mlenv/env/bin:/usr/local/sbin" in out
        assert "1.1.0 linux-x86_64 /opt/mlenv/env" in out and lock.content_hash in out
        assert "fixalpha/__pycache__/__init__.cpython-311.pyc" in out  # the shipped .pyc is valid for the base's 3.11
        assert verified(built.reference, venv_env).lock.content_hash == lock.content_hash
        labels = docker_client.api.inspect_image(built.reference)["Config"]["Labels"]
        assert labels["org.mlenv.content-hash"] == lock.content_hash and labels["org.mlenv.builder"] == "daemonless"
        assert labels["org.mlenv.rebase"] == "no: venv on the base image's Python"
    finally:
        docker_client.api.remove_image(built.reference, force=True)


def test_conda_image_runs_and_verifies(mixed, tmp_path, docker_client):
    spec, lock = load(mixed)
    built = daemonless.build(spec, lock, "linux-64", store=BlobStore(tmp_path / "s"), load=True)
    ref = f"mlenv/{spec.name}:{lock.short_hash}"
    assert built.image_id == docker_client.api.inspect_image(ref)["Id"]
    try:
        script = "mlenv-hello; python; echo $GREETING; cat /opt/mlenv/env/conda-meta/mlenv-hello-1.0.0-0.json"
        out = docker_client.containers.run(ref, ["sh", "-c", script], network_mode="none", remove=True).decode()
        assert "hello" in out and "Python 3.11.9" in out and "hello world" in out
        assert '"url": "file://' in out and "extracted_package_dir" not in out
        # verify --image runs the inventory with the env's python: the fixture python is a stub, so
        # compare the conda records and PyPI dist-infos read off the image instead
        from mlenv.image.docker import DockerEngine
        from mlenv.image.verify import _conda_records
        from mlenv.installing import expected
        from mlenv.runtime.inventory import compare

        with DockerEngine() as engine:
            inv = {"conda": _conda_records(engine, ref), "pypi": {}}
        diffs = [d for d in compare({"conda": expected(lock, "linux-64")["conda"]}, inv) if d.manager == "conda"]
        assert diffs == []
    finally:
        docker_client.api.remove_image(ref, force=True)


def test_shared_packages_are_stored_once_in_the_registry(tmp_path, test_registry, base_image_remote, fixture_paths):
    index = fixture_paths["pypi_simple_url"]
    a = project(
        tmp_path / "a",
        f"dl-share-a-{RUN}",
        f'[pypi]\nindex-url = "{index}"\ndependencies = ["fixbeta", "fixnum", "numpy==2.0.0"]\n',
        base_image_remote,
        env_python="3.11",
    )
    b = project(
        tmp_path / "b",
        f"dl-share-b-{RUN}",
        f'[pypi]\nindex-url = "{index}"\ndependencies = ["fixalpha==1.1.0", "numpy==2.0.0", "fixplat"]\n',
        base_image_remote,
        env_python="3.11",
    )
    store = BlobStore(tmp_path / "store")
    ra = daemonless.build(
        *load(a), "linux-64", store=store, push_to=f"{test_registry}/dl-{RUN}/share-a", min_layer_bytes=1
    )
    before = registry_blobs()
    rb = daemonless.build(
        *load(b), "linux-64", store=store, push_to=f"{test_registry}/dl-{RUN}/share-b", min_layer_bytes=1
    )
    after = registry_blobs()
    la = {x.id: x.digest for x in ra.layers}
    lb = {x.id: x.digest for x in rb.layers}
    shared = {"skeleton", "pypi/fixalpha", "pypi/numpy"}
    for lid in shared:
        assert la[lid] == lb[lid], lid  # the same blob from both environments
    assert la["metadata"] != lb["metadata"]
    up = set(rb.upload["uploaded"])
    assert not up & {la[x] for x in shared}  # not uploaded again: the registry had them
    assert up == {lb["pypi/fixplat"], lb["metadata"], rb.config_digest}
    assert rb.upload["blobs_present"] + rb.upload["blobs_mounted"] == len(rb.layers) + rb.base_layers - 2
    # the storage holds one data file per digest; a shared layer added none (it was mounted)
    assert up <= after and not (after - before) & {la[x] for x in shared}
    assert rb.upload["blobs_mounted"] >= len(shared)
    import requests

    for lid in shared:  # and share-b serves them
        r = requests.head(
            f"http://{test_registry}/v2/dl-{RUN}/share-b/blobs/{lb[lid]}", timeout=10, proxies={"http": "", "https": ""}
        )
        assert r.status_code == 200


def make_base(
    store: BlobStore,
    ref: str,
    base: transport.Pulled | None,
    files: dict[str, bytes],
    *,
    platform="linux-64",
    config_env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
):
    """A base image: `base`'s layers (or none) plus one layer of files, pushed to ref."""
    from mlenv.oci.image import canonical_json, oci_platform
    from mlenv.oci.layer import bytes_entry, write_layer
    from mlenv.oci.store import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST

    layer = write_layer([bytes_entry(p, data) for p, data in files.items()], store)
    if base is not None:
        config = dict(base.config)
        layers = list(base.manifest["layers"])
        for item in layers:
            item["mediaType"] = OCI_LAYER_GZIP
    else:
        config = {
            **oci_platform(platform),
            "config": {"Env": list(config_env)},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        layers = []
    config["rootfs"] = {"type": "layers", "diff_ids": list(config["rootfs"]["diff_ids"]) + [layer.diff_id]}
    cfg = store.put_bytes(canonical_json(config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg.to_json(),
        "layers": layers + [layer.descriptor.to_json()],
    }
    desc = store.put_bytes(canonical_json(manifest), OCI_MANIFEST)
    return transport.push(store, desc.digest, ref).digest


def test_rebase_swaps_the_base_and_keeps_the_environment_layers(
    tmp_path, test_registry, base_image_remote, conda_channel, docker_client
):
    from mlenv.image.rebase import rebase_image

    store = BlobStore(tmp_path / "store")
    patched = f"{test_registry}/dl-{RUN}/base:bookworm"
    old_base = transport.pull(base_image_remote, "linux-64", store)
    make_base(store, patched, old_base, {"etc/mlenv-patched": b"patched\n"})
    body = f'[conda]\nchannels = ["{conda_channel}"]\ndependencies = ["mlenv-hello", "python 3.11.*"]\n'
    first = project(tmp_path / "v1", f"dl-rebase-{RUN}", body, base_image_remote, python=None)
    second = project(tmp_path / "v2", f"dl-rebase-{RUN}", body, patched, python=None)
    repo = f"{test_registry}/dl-{RUN}/rebase"
    old = daemonless.build(*load(first), "linux-64", store=store, push_to=repo)
    assert old.rebase == "conda-self-contained"
    spec2, lock2 = load(second)
    new = rebase_image(spec2, lock2, "linux-64", old.reference, store=store, push_to=repo, load=True)
    try:
        n_old_env = len(old.layers) - 1
        assert [x.digest for x in new.layers[:-1]] == [x.digest for x in old.layers[:n_old_env]]  # env layers kept
        assert new.layers[-1].id == "metadata" and new.layers[-1].digest != old.layers[-1].digest
        assert new.base_layers == old.base_layers + 1
        assert set(new.upload["uploaded"]) == {new.layers[-1].digest, new.config_digest}  # nothing else uploaded
        script = "cat /etc/mlenv-patched; mlenv-hello; grep -c content-hash /opt/mlenv/mlenv.lock"
        out = docker_client.containers.run(
            new.image_id, ["sh", "-c", script], network_mode="none", remove=True
        ).decode()
        assert "patched" in out and "hello" in out
        labels = docker_client.api.inspect_image(new.image_id)["Config"]["Labels"]
        assert labels["org.mlenv.content-hash"] == lock2.content_hash
        assert labels["org.opencontainers.image.base.name"].startswith(f"{test_registry}/dl-{RUN}/base@")
        # the rebased image is what a full build of the new lock gives, byte for byte
        full = daemonless.build(
            spec2,
            lock2,
            "linux-64",
            store=BlobStore(tmp_path / "fresh"),
            force=True,
            cache_dir=tmp_path / "fresh-cache",
        )
        assert full.manifest_digest == new.manifest_digest
    finally:
        docker_client.api.remove_image(new.image_id, force=True)


def test_rebase_refusals(tmp_path, test_registry, base_image_remote, conda_channel, venv_env):
    from mlenv.image.rebase import RebaseRefused, rebase_image

    store = BlobStore(tmp_path / "store")
    # a venv on the base image's Python
    spec, lock = load(venv_env)
    venv = daemonless.build(spec, lock, "linux-64", store=store, push_to=f"{test_registry}/dl-{RUN}/rf-venv")
    with pytest.raises(RebaseRefused, match="venv on the base image's Python"):
        rebase_image(spec, lock, "linux-64", venv.reference, store=store)
    # a base whose glibc is older than a package needs (fixglibc: __glibc >=2.28)
    old_glibc = f"{test_registry}/dl-{RUN}/oldglibc:1"
    make_base(
        store,
        old_glibc,
        None,
        {
            "lib/x86_64-linux-gnu/libc.so.6": b"\x7fELF GNU C Library (fake) stable release version 2.17.\0",
            "etc/os-release": b"ID=old\n",
        },
    )
    body = f'[conda]\nchannels = ["{conda_channel}"]\ndependencies = ["fixglibc", "python 3.11.*"]\n'
    v1 = project(tmp_path / "g1", f"dl-glibc-{RUN}", body, base_image_remote, python=None)
    v2 = project(tmp_path / "g2", f"dl-glibc-{RUN}", body, old_glibc, python=None)
    old = daemonless.build(*load(v1), "linux-64", store=store, push_to=f"{test_registry}/dl-{RUN}/rf-glibc")
    assert old.rebase == "conda-self-contained"
    with pytest.raises(RebaseRefused, match=r"glibc 2\.17 is older than 2\.28, which fixglibc 1\.0\.0 needs"):
        rebase_image(*load(v2), "linux-64", old.reference, store=store)
    # another environment (a package changed): not a rebase
    v3 = project(
        tmp_path / "g3",
        f"dl-glibc-{RUN}",
        body.replace('"fixglibc", ', '"fixglibc", "libfix-data", '),
        base_image_remote,
        python=None,
    )
    with pytest.raises(RebaseRefused, match="packages"):
        rebase_image(*load(v3), "linux-64", old.reference, store=store)


def cli_fails(*args, cwd, env=None) -> str:
    """A command that fails with one `error:` line (no traceback); returns it."""
    full = {k: v for k, v in os.environ.items() if k != "MLENV_CA_BUNDLE"}
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=full, check=False)  # fmt: skip
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_rebase_through_the_api(tmp_path, test_registry, base_image_remote, conda_channel, monkeypatch):
    """build; the base moves (a new digest under the same tag); lock(upgrade=True) changes only the
    base digest; `mlenv.rebase(from_image=<old image>)` (`mlenv rebase --from`) gives the digest a
    fresh build of the new lock gives, uploading only the new metadata layer and config."""
    store = BlobStore(tmp_path / "store")
    base_tag = f"{test_registry}/dl-{RUN}/cli-base:bookworm"
    original = transport.pull(base_image_remote, "linux-64", store)
    transport.push(store, original.digest, base_tag, mount_from=[original.name.split("/", 1)[1]])
    d = project(
        tmp_path / "env",
        f"dl-clirebase-{RUN}",
        f'[conda]\nchannels = ["{conda_channel}"]\ndependencies = ["mlenv-hello", "python 3.11.*"]\n',
        base_tag,
        python=None,
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = f"{test_registry}/dl-{RUN}/cli-rebase"
    old_lock = read_lock(d / "mlenv.lock")
    old = mlenv.build(d, builder="daemonless", push=True, repository=repo)
    moved = make_base(store, base_tag, original, {"etc/mlenv-patched": b"patched\n"})  # same tag, new digest
    mlenv.lock(d, upgrade=True)
    new_lock = read_lock(d / "mlenv.lock")
    assert new_lock.image["digest"] == moved != old_lock.image["digest"]
    assert [p.key() for p in new_lock.packages] == [p.key() for p in old_lock.packages]
    rebased = mlenv.rebase(d, from_image=old.image, push=True, repository=repo)
    assert rebased.action == "rebased" and rebased.image == f"{repo}/dl-clirebase-{RUN}:{new_lock.short_hash}"
    assert rebased.upload and rebased.layers and old.layers
    uploaded = set(rebased.upload["uploaded"])  # the new metadata layer and the config, nothing else
    assert len(uploaded) == 2 and rebased.layers[-1]["digest"] in uploaded
    assert not uploaded & {x["digest"] for x in old.layers}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh"))
    fresh = mlenv.build(d, force=True, builder="daemonless", push=True, repository=f"{repo}-fresh")
    assert fresh.action == "built" and fresh.digest == rebased.digest == transport.head(rebased.image)


def test_rebase_refused_through_the_cli(tmp_path, test_registry, venv_env, monkeypatch):
    """A refused rebase: a one-line RebaseRefused from the API, and the same line on the
    terminal (`error:`, exit 2, no traceback)."""
    from mlenv.image.rebase import RebaseRefused

    repo = f"{test_registry}/dl-{RUN}/cli-rf"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    built = mlenv.build(venv_env, builder="daemonless", push=True, repository=repo)
    with pytest.raises(RebaseRefused) as e:
        mlenv.rebase(venv_env, from_image=built.image, push=True, repository=repo)
    assert "cannot be rebased: venv on the base image's Python" in one_line(e) and e.value.exit_code == 2
    line = cli_fails("rebase", "--from", built.image, "--push", "--repository", repo, cwd=venv_env)
    assert line == f"error: {e.value.message}"


def test_bad_inputs_give_one_line(tmp_path, test_registry, base_image_remote, fixture_paths):
    from mlenv.errors import MlenvError

    spec, lock = load(
        project(
            tmp_path / "ok",
            f"dl-ok-{RUN}",
            f'[pypi]\nindex-url = "{fixture_paths["pypi_simple_url"]}"\ndependencies = ["fixalpha"]\n',
            base_image_remote,
            env_python="3.11",
        )
    )
    # a lock written before mlenv pinned Debian packages (apt-packages, no pins): not daemonless
    legacy = load(tmp_path / "ok")[1]
    legacy.image["apt-packages"] = ["curl"]
    with pytest.raises(MlenvError, match="apt-packages are not pinned") as err:
        daemonless.build(spec, legacy, "linux-64", store=BlobStore(tmp_path / "s"))
    assert "--builder buildkit" in str(err.value)
    with pytest.raises(MlenvError, match="no-such-base.* not found"):
        lock.image["reference"] = f"{test_registry}/dl-{RUN}/no-such-base:1"
        daemonless.build(spec, lock, "linux-64", store=BlobStore(tmp_path / "s2"))
    with pytest.raises(MlenvError, match="daemonless builder makes linux-64 and linux-aarch64"):
        daemonless.build(spec, lock, "osx-arm64", store=BlobStore(tmp_path / "s3"))


# --- linux-aarch64 from this x86_64 host ------------------------------------------------------

ARM64_BASE = "mlenv-test-arm64/debian-python:bookworm"


@pytest.fixture(scope="module")
def arm64_base(tmp_path_factory, test_registry):
    """A Debian bookworm arm64 base with python3.11, made without running anything of it:
    `debootstrap --foreign` (unpacks the required packages, runs no maintainer script)
    plus python3.11-minimal's packages unpacked with dpkg-deb -x; one layer written by
    mlenv's layer writer, pushed to the local registry once (reused while there)."""
    import shutil

    ref = f"{test_registry}/{ARM64_BASE}"
    if transport.head(ref):
        return ref
    if not shutil.which("debootstrap") or not shutil.which("dpkg-deb"):
        pytest.skip("debootstrap / dpkg-deb not installed")
    root = tmp_path_factory.mktemp("arm64") / "root"
    proc = subprocess.run(
        [
            "debootstrap",
            "--foreign",
            "--arch=arm64",
            "--variant=minbase",
            "--include=python3.11-minimal",
            "bookworm",
            str(root),
            "http://deb.debian.org/debian",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"debootstrap could not fetch Debian arm64 packages: {proc.stderr.strip()[-300:]}")
    archives = root / "var" / "cache" / "apt" / "archives"
    for deb in sorted(archives.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        deb.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    from mlenv.oci.layer import Entry, entries_from_dir

    keep: list[Entry] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if not (p.is_symlink() or p.is_file()):
                p.unlink()  # device nodes: the runtime provides /dev
    keep = entries_from_dir(root)
    store = BlobStore(tmp_path_factory.mktemp("arm64-store"))
    from mlenv.oci.image import canonical_json, oci_platform
    from mlenv.oci.layer import write_layer
    from mlenv.oci.store import OCI_CONFIG, OCI_MANIFEST

    layer = write_layer(keep, store, workers=2)
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    config = {
        **oci_platform("linux-aarch64"),
        "config": {"Env": [path], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    }
    cfg = store.put_bytes(canonical_json(config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg.to_json(),
        "layers": [layer.descriptor.to_json()],
    }
    desc = store.put_bytes(canonical_json(manifest), OCI_MANIFEST)
    transport.push(store, desc.digest, ref)
    return ref


@pytest.mark.network
def test_another_version_reuses_the_pycs_of_unchanged_files_and_the_digest_is_a_fresh_builds(
    tmp_path, base_image_remote
):
    """pyyaml 6.0.1 then 6.0.2 with one cache: most of yaml/*.py did not change, so their
    .pyc come from the pyc cache; the image is byte for byte a cold build's (other cache,
    other worker count)."""
    old = project(tmp_path / "old", f"dl-pyc-{RUN}", '[pypi]\ndependencies = ["pyyaml==6.0.1"]\n', base_image_remote,
                  env_python="3.11")  # fmt: skip
    new = project(tmp_path / "new", f"dl-pyc-{RUN}", '[pypi]\ndependencies = ["pyyaml==6.0.2"]\n', base_image_remote,
                  env_python="3.11")  # fmt: skip
    store = BlobStore(tmp_path / "store")
    first = daemonless.build(*load(old), "linux-64", store=store, cache_dir=tmp_path / "cache", workers=2)
    assert first.pycs["reused"] == 0 and first.pycs["compiled"] > 10
    warm = daemonless.build(*load(new), "linux-64", store=store, cache_dir=tmp_path / "cache", workers=2)
    assert warm.pycs["reused"] > warm.pycs["compiled"] > 0
    cold = daemonless.build(*load(new), "linux-64", store=BlobStore(tmp_path / "s2"), cache_dir=tmp_path / "c2",
                            workers=1)  # fmt: skip
    assert cold.pycs["reused"] == 0 and cold.manifest_digest == warm.manifest_digest


@pytest.mark.network
def test_linux_aarch64_image_from_an_x86_64_host(tmp_path, arm64_base):
    d = project(
        tmp_path / "arm",
        f"dl-arm-{RUN}",
        '[pypi]\ndependencies = ["pyyaml==6.0.2"]\n',
        arm64_base,
        python="/usr/bin/python3.11",
        platforms=("linux-aarch64",),
        env_python="3.11",
    )
    spec, lock = load(d)
    store = BlobStore(tmp_path / "store")
    built = daemonless.build(spec, lock, "linux-aarch64", store=store, layout=tmp_path / "layout")
    manifest = json.loads(store.read(built.manifest_digest))
    config = json.loads(store.read(built.config_digest))
    assert (config["architecture"], config["os"], config.get("variant")) == ("arm64", "linux", "v8")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == built.manifest_digest
    assert len(manifest["layers"]) == built.base_layers + len(built.layers)
    pyyaml = next(x for x in built.layers if x.id in ("pypi/pyyaml", "pypi-rest"))
    raw = gzip.decompress(store.read(pyyaml.digest))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        sos = [m for m in tar.getmembers() if m.name.endswith(".so")]
        assert sos, "pyyaml's C extension is missing"
        for m in sos:
            head = tar.extractfile(m).read(20)
            assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, m.name  # EM_AARCH64
        names = {m.name for m in tar.getmembers()}
    assert any(n.endswith("yaml/__pycache__/__init__.cpython-311.pyc") for n in names)
    skeleton = layer_files(store, built.layers[0].digest)
    assert skeleton["opt/mlenv/env/bin/python"].linkname == "/usr/bin/python3.11"


def test_builder_daemonless_builds_then_reuses_with_one_head(venv_env, test_registry):
    repo = f"{test_registry}/dl-cli-{RUN}"
    first = mlenv.build(venv_env, builder="daemonless", push=True, repository=repo)
    assert first.action == "built" and first.builder == "daemonless" and first.pushed == first.digest
    assert transport.head(first.image) == first.digest
    again = mlenv.build(venv_env, builder="daemonless", push=True, repository=repo)
    assert again.action == "reused" and again.where == "registry" and again.digest == first.digest
    assert again.layers is None and again.upload is None  # nothing built, nothing sent
    assert first.layers and first.upload and first.upload["uploaded"]
