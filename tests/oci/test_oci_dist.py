"""mlenv.oci distribution: pull (registry and Engine), push (HEAD / mount / chunked upload,
no half-pushed tag, concurrency), auth (basic, Docker config, credential helper, token),
failures (refused auth, network cut, full disk), layout and `docker load` outputs.

Against real servers only: the shared registry (127.0.0.1:5000), private
docker-registry processes started per test (tests/oci_servers.py), the Docker Engine."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from oci_images import assemble, layer_tar, sha, synthetic
from oci_servers import CuttingRelay, TokenServer, start_registry

from mlenv.errors import MlenvError
from mlenv.oci.client import RegistryClient, remote_has
from mlenv.oci.locations import BlobLocations
from mlenv.oci.pull import pull_base, pull_image
from mlenv.oci.push import push_image
from mlenv.oci.store import BlobStore

ROOT = Path(__file__).resolve().parents[2]


def uniq(prefix: str) -> str:
    return f"mlenv-test-ocidist/{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "store")


@pytest.fixture
def locations(tmp_path) -> BlobLocations:
    return BlobLocations(tmp_path / "locations")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No user credentials or caches leak into these tests."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLENV_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("MLENV_REGISTRY_PASSWORD", raising=False)


@pytest.fixture
def private_registry(tmp_path):
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def pulled_base(tmp_path_factory, test_registry, base_image_remote):
    """The test base pulled once from the shared registry into a module store."""
    root = tmp_path_factory.mktemp("base-store")
    store = BlobStore(root / "store")
    image = pull_image(base_image_remote, "linux-64", store, locations=BlobLocations(root / "loc"))
    return store, image


def _copy_base(pulled_base, store: BlobStore) -> None:
    src, image = pulled_base
    for d in [image.config_descriptor, *image.layers]:
        if not store.has(d.digest):
            store.put_file(src.path(d.digest), d.media_type)


# --- pull ---------------------------------------------------------------------------------------


@pytest.mark.registry
def test_pull_by_tag_and_by_digest(base_image_remote, store, locations):
    by_tag = pull_image(base_image_remote, "linux-64", store, locations=locations)
    assert by_tag.source == "registry" and str(by_tag.platform) == "linux/amd64"
    assert len(by_tag.layers) == len(by_tag.diff_ids) >= 1
    for d in [by_tag.config_descriptor, *by_tag.layers]:
        assert store.read(d.digest) and sha(store.read(d.digest)) == d.digest  # every blob verified, in the store
    assert store.read(by_tag.manifest_digest) == by_tag.manifest
    name = base_image_remote.rsplit(":", 1)[0]
    by_digest = pull_image(f"{name}@{by_tag.digest}", "linux-64", store, locations=locations)
    assert (by_digest.digest, by_digest.manifest_digest, by_digest.config_digest) == (
        by_tag.digest,
        by_tag.manifest_digest,
        by_tag.config_digest,
    )
    assert by_digest.pinned == f"{name}@{by_tag.digest}"
    # the pull recorded where the blobs are, for later mounts
    repo = name.split("/", 1)[1]
    assert repo in locations.repos(name.split("/")[0], by_tag.layers[0].digest)


@pytest.mark.registry
def test_moved_tag_changes_nothing_when_pinned(test_registry, store, locations):
    repo = uniq("moved")
    first = synthetic(store, ["moved-a"])
    second = synthetic(store, ["moved-b"])
    push_image(store, first, f"{test_registry}/{repo}:stable", locations=locations)
    push_image(store, second, f"{test_registry}/{repo}:stable", locations=locations)  # the tag moves
    fresh = BlobStore(store.root.parent / "fresh")
    assert pull_image(f"{test_registry}/{repo}:stable", "linux-64", fresh, locations=locations).digest == second
    pinned = pull_image(f"{test_registry}/{repo}:stable@{first}", "linux-64", fresh, locations=locations)
    assert pinned.manifest_digest == first and pinned.digest == first
    # the builder's entry: the lock's pin wins over the moved tag; a contradicting pin is refused
    assert pull_base(f"{test_registry}/{repo}:stable", "linux-64", fresh, expect=first).manifest_digest == first
    with pytest.raises(MlenvError, match="the lock pins"):
        pull_base(f"{test_registry}/{repo}@{second}", "linux-64", fresh, expect=first)


@pytest.mark.registry
def test_corrupt_blob_in_store_is_detected_and_fetched_again(test_registry, store, locations):
    repo = uniq("corrupt")
    digest = synthetic(store, ["corrupt-1", "corrupt-2"], size=50_000)
    push_image(store, digest, f"{test_registry}/{repo}:v1", locations=locations)
    mine = BlobStore(store.root.parent / "mine")
    image = pull_image(f"{test_registry}/{repo}:v1", "linux-64", mine, locations=locations)
    victim = mine.path(image.layers[1].digest)
    original = victim.read_bytes()
    victim.write_bytes(original[:-10] + b"x" * 10)  # same size, wrong bytes
    again = pull_image(f"{test_registry}/{repo}:v1", "linux-64", mine, locations=locations)
    assert again.manifest_digest == image.manifest_digest
    assert victim.read_bytes() == original


@pytest.mark.registry
def test_missing_base_is_one_clear_line(test_registry, store):
    with pytest.raises(MlenvError) as err:
        pull_image(f"{test_registry}/{uniq('absent')}:nope", "linux-64", store)
    assert "not found" in str(err.value) and test_registry in str(err.value)
    assert "\n" not in err.value.message


@pytest.mark.registry
def test_wrong_platform_is_refused(test_registry, store, locations):
    repo = uniq("platform")
    digest = synthetic(store, ["plat"])
    push_image(store, digest, f"{test_registry}/{repo}:v1", locations=locations)
    with pytest.raises(MlenvError, match="linux/amd64, the platform needs linux/arm64"):
        pull_image(f"{test_registry}/{repo}:v1", "linux-aarch64", store, locations=locations)


@pytest.mark.docker
def test_base_read_from_the_local_engine(docker_client, base_image, store, tmp_path):
    info = docker_client.api.inspect_image(base_image)
    image = pull_base(base_image, "linux-64", store)
    assert image.source == "engine"
    assert image.digest == info["Id"] == image.config_digest  # the image ID is the config digest
    assert [d.digest for d in image.layers] == list(image.diff_ids)  # saved layers are the uncompressed tars
    assert list(image.diff_ids) == info["RootFS"]["Layers"]
    # deterministic: reading it again (into another store) gives the same manifest digest
    again = pull_base(base_image, "linux-64", BlobStore(tmp_path / "other"), expect=info["Id"])
    assert again.manifest_digest == image.manifest_digest
    with pytest.raises(MlenvError, match="the lock pins"):
        pull_base(base_image, "linux-64", store, expect="sha256:" + "0" * 64)


@pytest.mark.docker
@pytest.mark.registry
def test_engine_and_registry_copies_share_the_config(pulled_base, base_image, store):
    _, remote = pulled_base
    local = pull_base(base_image, "linux-64", store)
    assert local.config_digest == remote.config_digest and local.diff_ids == remote.diff_ids


# --- push ---------------------------------------------------------------------------------------


@pytest.mark.registry
def test_push_then_pull_back_gives_the_same_digest(pulled_base, test_registry, tmp_path, locations):
    _, base = pulled_base
    store = BlobStore(tmp_path / "s")
    _copy_base(pulled_base, store)
    locations.add(test_registry, [d.digest for d in base.layers], base.name.split("/", 1)[1])
    extra = layer_tar({"hello.txt": b"hello from mlenv.oci\n"})
    digest = assemble(store, base.config, list(base.layers), [extra])
    repo = uniq("roundtrip")
    result = push_image(store, digest, f"{test_registry}/{repo}:5f2c0d1e9a7b", tags=["latest"],
                        locations=locations)  # fmt: skip
    assert result.digest == digest and result.tags == ("5f2c0d1e9a7b", "latest")
    assert result.stats.mounted == [base.layers[0].digest]  # the base layer came from the base's repository
    assert sha(extra) in result.stats.uploaded and result.stats.bytes_sent >= len(extra)
    back = pull_image(f"{test_registry}/{repo}:5f2c0d1e9a7b", "linux-64", BlobStore(tmp_path / "back"),
                      locations=locations)  # fmt: skip
    assert back.manifest_digest == digest and back.diff_ids[-1] == sha(extra)
    assert remote_has(f"{test_registry}/{repo}:latest") == digest
    assert remote_has(f"{test_registry}/{repo}:nope") is None
    # a second push is all HEADs
    again = push_image(store, digest, f"{test_registry}/{repo}:5f2c0d1e9a7b", locations=locations)
    assert again.stats.uploaded == [] and again.stats.mounted == [] and again.stats.bytes_sent == 0
    assert len(again.stats.skipped) == 1 + len(base.layers) + 1


def test_shared_blobs_are_stored_once_and_uploaded_once(private_registry, store, locations, tmp_path):
    reg = private_registry
    one = synthetic(store, ["shared-1", "shared-2", "only-a"], size=200_000)
    two = synthetic(store, ["shared-1", "shared-2", "only-b"], size=200_000)
    first = push_image(store, one, f"{reg.addr}/team/env-a:aaaa", locations=locations)
    assert len(first.stats.uploaded) == 4 and first.stats.mounted == [] and first.stats.skipped == []
    second = push_image(store, two, f"{reg.addr}/team/env-b:bbbb", locations=locations)
    shared = {sha(layer_tar({f"data/{s}.bin": hashlib.shake_256(s.encode()).digest(200_000)}))
              for s in ("shared-1", "shared-2")}  # fmt: skip
    assert set(second.stats.mounted) == shared  # mounted from env-a, no bytes
    assert len(second.stats.uploaded) == 2  # its own layer and config
    assert second.stats.bytes_sent < 2 * 200_000 + 2048

    # the registry's storage holds each blob once: both configs, 4 distinct layers, 2 manifests
    def blobs(digest: str) -> set[str]:
        m = json.loads(store.read(digest))
        return {digest, m["config"]["digest"], *(d["digest"] for d in m["layers"])}

    assert reg.blob_files() == blobs(one) | blobs(two)
    assert len(reg.blob_files()) == 2 + 2 + 4
    # sequential reruns upload nothing
    for digest, repo in ((one, "team/env-a"), (two, "team/env-b")):
        rerun = push_image(store, digest, f"{reg.addr}/{repo}:again", locations=locations)
        assert rerun.stats.uploaded == [] and rerun.stats.bytes_sent == 0
    # a machine without the location record is told where to mount from
    third = synthetic(store, ["shared-1", "only-c"], size=200_000)
    fresh = BlobLocations(tmp_path / "fresh-locations")
    res = push_image(store, third, f"{reg.addr}/team/env-c:cccc", locations=fresh, mount_from=["team/env-a"])
    assert len(res.stats.mounted) == 1 and len(res.stats.uploaded) == 2


def test_chunked_upload_round_trips(private_registry, store, locations, tmp_path):
    reg = private_registry
    digest = synthetic(store, ["big"], size=3_000_000)
    res = push_image(store, digest, f"{reg.addr}/chunked/env:v1", locations=locations,
                     chunk_threshold=1 << 20, chunk_size=300_000)  # fmt: skip
    assert len(res.stats.uploaded) == 2
    log = reg.log.read_text()
    assert log.count('"PATCH /v2/chunked/env/blobs/uploads/') >= 10  # 3 MB in 300 kB chunks
    back = pull_image(f"{reg.addr}/chunked/env:v1", "linux-64", BlobStore(tmp_path / "back"), locations=locations)
    assert back.manifest_digest == digest


CONCURRENT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[4])
    from mlenv.oci.store import BlobStore
    from mlenv.oci.push import push_image
    from oci_images import synthetic
    store = BlobStore(sys.argv[1])
    seeds = sys.argv[3].split(",")
    digest = synthetic(store, seeds, size=400_000)
    res = push_image(store, digest, sys.argv[2], chunk_threshold=500_000, chunk_size=200_000)
    print(res.digest)
    """
)


def test_concurrent_pushes_of_overlapping_images(private_registry, tmp_path):
    reg = private_registry
    jobs = []
    for i in range(6):
        seeds = ["common-1", "common-2", f"pair-{i // 2}", f"own-{i}"]
        target = f"{reg.addr}/fleet/env-{i % 3}:t{i}"
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / f"cache-{i}"))
        jobs.append(
            (
                target,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        CONCURRENT,
                        str(tmp_path / f"store-{i}"),
                        target,
                        ",".join(seeds),
                        str(Path(__file__).parents[1]),
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    digests = {}
    for target, proc in jobs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        digests[target] = out.strip()
    for target, digest in digests.items():
        image = pull_image(target, "linux-64", BlobStore(tmp_path / "verify"), locations=BlobLocations(tmp_path / "l"))
        assert image.manifest_digest == digest and len(image.layers) == 4
    # 2 common + 3 pair + 6 own layers, 6 configs, 6 manifests: nothing lost, nothing doubled
    assert len(reg.blob_files()) == 2 + 3 + 6 + 6 + 6


# --- auth ---------------------------------------------------------------------------------------

PUSH_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from mlenv.errors import MlenvError
    from mlenv.oci.store import BlobStore
    from mlenv.oci.push import push_image
    from oci_images import synthetic
    store = BlobStore(sys.argv[1])
    try:
        print(push_image(store, synthetic(store, ["auth-layer"]), sys.argv[2]).digest)
    except MlenvError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    """
)


def run_push(tmp_path, target: str, env: dict) -> subprocess.CompletedProcess:
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", PUSH_SCRIPT, str(tmp_path / "push-store"), target,
                           str(Path(__file__).parents[1])], env=full, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def head_status(addr: str, repo: str, tag: str, auth=None) -> int:
    import requests

    s = requests.Session()
    s.trust_env = False
    return s.head(f"http://{addr}/v2/{repo}/manifests/{tag}", auth=auth,
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code  # fmt: skip


@pytest.fixture
def basic_registry(tmp_path):
    reg = start_registry(tmp_path / "basic-registry", htpasswd={"alice": "s3cret-pw"})
    yield reg
    reg.stop()


def test_basic_auth_from_env_docker_config_and_helper(basic_registry, tmp_path, monkeypatch):
    reg = basic_registry
    # 1. environment variables
    ok = run_push(tmp_path, f"{reg.addr}/auth/env:v1",
                  {"MLENV_REGISTRY_USERNAME": "alice", "MLENV_REGISTRY_PASSWORD": "s3cret-pw"})  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # 2. the Docker config's auths
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir(exist_ok=True)
    auth = base64.b64encode(b"alice:s3cret-pw").decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {f"http://{reg.addr}": {"auth": auth}}}))
    ok = run_push(tmp_path, f"{reg.addr}/auth/config:v1", {"DOCKER_CONFIG": str(config_dir)})
    assert ok.returncode == 0, ok.stderr
    # 3. a credential helper (a real executable on PATH)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-mlenvtest"
    helper.write_text("#!/bin/sh\nread server\n"
                      f'[ "$server" = "{reg.addr}" ] || exit 1\n'
                      'echo \'{"ServerURL": "\'$server\'", "Username": "alice", "Secret": "s3cret-pw"}\'\n')  # fmt: skip
    helper.chmod(0o755)
    helper_dir = tmp_path / "helper-config"
    helper_dir.mkdir()
    (helper_dir / "config.json").write_text(json.dumps({"credHelpers": {reg.addr: "mlenvtest"}}))
    env = {"DOCKER_CONFIG": str(helper_dir), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    ok = run_push(tmp_path, f"{reg.addr}/auth/helper:v1", env)
    assert ok.returncode == 0, ok.stderr
    # pulls with the helper too (in this process)
    monkeypatch.setenv("DOCKER_CONFIG", str(helper_dir))
    monkeypatch.setenv("PATH", env["PATH"])
    image = pull_image(f"{reg.addr}/auth/helper:v1", "linux-64", BlobStore(tmp_path / "pulled"))
    assert image.manifest_digest == ok.stdout.strip()
    for repo in ("auth/env", "auth/config", "auth/helper"):
        assert head_status(reg.addr, repo, "v1", ("alice", "s3cret-pw")) == 200


def test_refused_credentials_are_one_line_and_write_no_tag(basic_registry, tmp_path):
    reg = basic_registry
    bad = run_push(tmp_path, f"{reg.addr}/auth/refused:v1",
                   {"MLENV_REGISTRY_USERNAME": "alice", "MLENV_REGISTRY_PASSWORD": "wrong-pw"})  # fmt: skip
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: registry {reg.addr} refused access"), bad.stderr
    assert "MLENV_REGISTRY_USERNAME" in lines[0] and "wrong-pw" not in bad.stderr + bad.stdout
    none = run_push(tmp_path, f"{reg.addr}/auth/refused:v1", {})
    assert none.returncode != 0 and "no credentials configured" in none.stderr
    assert head_status(reg.addr, "auth/refused", "v1", ("alice", "s3cret-pw")) == 404


def test_token_auth_bearer_flow(tmp_path, monkeypatch):
    tokens = TokenServer(tmp_path / "token", {"bob": "tok-pw"})
    reg = start_registry(tmp_path / "token-registry", token=tokens)
    try:
        store = BlobStore(tmp_path / "s")
        digest = synthetic(store, ["tok-1", "tok-2"])
        target = f"{reg.addr}/tok/env:v1"
        with pytest.raises(MlenvError, match=f"registry {reg.addr} refused access"):
            push_image(store, digest, target)  # anonymous: pull only
        assert head_status(reg.addr, "tok/env", "v1") == 401  # (anonymous HEAD is challenged)
        monkeypatch.setenv("MLENV_REGISTRY_USERNAME", "bob")
        monkeypatch.setenv("MLENV_REGISTRY_PASSWORD", "tok-pw")
        client = RegistryClient(reg.addr)
        res = push_image(store, digest, target, client=client, locations=BlobLocations(tmp_path / "l"))
        assert res.digest == digest
        # tokens are cached per scope set: far fewer token requests than API calls
        assert 1 <= len([r for r in tokens.requests if r[0] == "bob"]) <= 3
        assert any("repository:tok/env:pull,push" in scopes for _, scopes in tokens.requests)
        # anonymous pull works with an anonymous token; remote_has goes through the 401 path
        monkeypatch.delenv("MLENV_REGISTRY_USERNAME")
        image = pull_image(target, "linux-64", BlobStore(tmp_path / "anon"), locations=BlobLocations(tmp_path / "l"))
        assert image.manifest_digest == digest
        assert remote_has(target) == digest
    finally:
        reg.stop()


# --- failures -----------------------------------------------------------------------------------


def test_network_cut_mid_push_is_one_line_and_leaves_no_tag(private_registry, tmp_path):
    reg = private_registry
    relay = CuttingRelay(reg.addr, limit=600_000)
    try:
        store = BlobStore(tmp_path / "s")
        digest = synthetic(store, ["cut-1", "cut-2", "cut-3"], size=1_500_000)
        with pytest.raises(MlenvError) as err:
            push_image(store, digest, f"{relay.addr}/cut/env:v1", locations=BlobLocations(tmp_path / "l"))
        msg = err.value.message
        assert "\n" not in msg and relay.addr in msg and "nothing was tagged" in msg, msg
        assert relay.cut.is_set()
    finally:
        relay.close()
    assert head_status(reg.addr, "cut/env", "v1") == 404


def test_full_disk_while_pulling_names_the_path(private_registry, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    reg = private_registry
    src = BlobStore(tmp_path / "src")
    digest = synthetic(src, ["disk-1", "disk-2"], size=3_000_000)
    push_image(src, digest, f"{reg.addr}/disk/env:v1", locations=BlobLocations(tmp_path / "l"))
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()[:120]}")
    try:
        with pytest.raises(MlenvError) as err:
            pull_image(f"{reg.addr}/disk/env:v1", "linux-64", BlobStore(small / "store"),
                       locations=BlobLocations(tmp_path / "l"))  # fmt: skip
        msg = err.value.message
        assert "\n" not in msg and "no space left" in msg and str(small / "store") in msg, msg
        leftovers = [p for p in (small / "store" / "blobs" / "sha256").iterdir() if p.name.endswith(".part")]
        assert leftovers == []  # no partial blob stays behind
    finally:
        subprocess.run(["umount", str(small)], check=False)


# --- outputs ------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_dir_and_tar_are_deterministic(store, tmp_path):
    from mlenv.oci.layout import write_layout, write_layout_tar

    one = synthetic(store, ["lay-1", "lay-2"])
    two = synthetic(store, ["lay-1", "lay-3"])
    refs = {"env-a:1": one, "env-b:2": two}
    write_layout(store, refs, tmp_path / "d1")
    write_layout(store, dict(reversed(list(refs.items()))), tmp_path / "d2")
    assert _tree(tmp_path / "d1") == _tree(tmp_path / "d2")
    index = json.loads((tmp_path / "d1" / "index.json").read_bytes())
    assert [(m["digest"], m["annotations"]["org.opencontainers.image.ref.name"]) for m in index["manifests"]] == [
        (one, "env-a:1"),
        (two, "env-b:2"),
    ]
    assert json.loads((tmp_path / "d1" / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    blobs = {p.name for p in (tmp_path / "d1" / "blobs" / "sha256").iterdir()}
    assert len(blobs) == 2 + 2 + 3  # manifests, configs, 3 distinct layers
    write_layout_tar(store, refs, tmp_path / "a.tar")
    other = BlobStore(tmp_path / "other-store")  # another store, same content
    for d in store.digests():
        other.put_file(store.path(d), "x")
    write_layout_tar(other, refs, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    import tarfile

    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members) or members[0].isdir()
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)


@pytest.mark.docker
@pytest.mark.registry
def test_docker_load_of_the_archive_runs_with_the_expected_id(pulled_base, docker_client, docker_run, tmp_path):
    from mlenv.oci.engine import load_archive
    from mlenv.oci.layout import write_docker_archive

    _, base = pulled_base
    store = BlobStore(tmp_path / "s")
    _copy_base(pulled_base, store)
    marker = uuid.uuid4().hex
    extra = layer_tar({"opt/mlenv-test/hello.txt": f"hello {marker}\n".encode()})
    digest = assemble(store, base.config, list(base.layers), [extra])
    config_digest = json.loads(store.read(digest))["config"]["digest"]
    name = f"mlenv-test-ocidist/load-{marker[:10]}:5f2c0d1e9a7b"
    write_docker_archive(store, digest, [name], tmp_path / "a.tar")
    write_docker_archive(store, digest, [name], tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    try:
        loaded = load_archive(tmp_path / "a.tar")
        assert name in loaded.names
        info = docker_client.api.inspect_image(name)
        assert info["Id"] == config_digest  # classic store: image ID = config digest
        assert info["RootFS"]["Layers"] == list(base.diff_ids) + [sha(extra)]
        out = docker_run(name, ["python3", "-c", "print(open('/opt/mlenv-test/hello.txt').read().strip())"])
        assert out.decode().strip() == f"hello {marker}"
    finally:
        docker_client.api.remove_image(name, force=True)
