"""The OCI backend against a real CNCF distribution registry (Debian docker-registry):
artifact layout, semantics, integrity, concurrency, unreachable and auth refusal."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import pytest
from refusals import one_line
from registry_envs import fake, make_env, register_all

import mlenv
from mlenv.errors import MlenvError
from mlenv.registry.base import NotFound, RegistryError
from mlenv.registry.oci import OciRegistry

pytestmark = pytest.mark.registry

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def session():
    import requests

    s = requests.Session()
    s.trust_env = False
    return s


@pytest.fixture
def oci_url(test_registry):
    return f"oci://{test_registry}/mlenv-test-{uuid.uuid4().hex[:10]}"


def test_artifact_and_tag_layout(oci_url, test_registry):
    reg = OciRegistry(oci_url)
    spec, lock, h = fake(1)
    r = reg.register("fraud-train", spec, lock, h, description="baseline")
    assert (r.created, r.version.version) == (True, 1)
    reg.set_label("fraud-train", 1, "prod")
    repo = oci_url.split("/", 3)[3] + "/fraud-train"
    s = session()
    tags = s.get(f"http://{test_registry}/v2/{repo}/tags/list").json()["tags"]
    assert sorted(tags) == sorted(["v1", "sha256-" + h.split(":")[1], "label-prod", "mlenv-state"])
    resp = s.get(f"http://{test_registry}/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST})
    m = resp.json()
    assert m["mediaType"] == MANIFEST and m["artifactType"] == "application/vnd.mlenv.environment.v1"
    assert m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json" and m["config"]["size"] == 2
    assert [(d["mediaType"], d["digest"]) for d in m["layers"]] == [
        ("application/vnd.mlenv.spec.v1+toml", "sha256:" + hashlib.sha256(spec).hexdigest()),
        ("application/vnd.mlenv.lock.v1+toml", "sha256:" + hashlib.sha256(lock).hexdigest()),
    ]
    ann = m["annotations"]
    assert (ann["org.mlenv.name"], ann["org.mlenv.version"], ann["org.mlenv.content-hash"]) == ("fraud-train", "1", h)
    assert ann["org.opencontainers.image.description"] == "baseline" and ann["org.opencontainers.image.created"]
    # label and hash tags resolve with plain API calls to the same manifest
    digest = resp.headers["Docker-Content-Digest"]
    for tag in ("label-prod", "sha256-" + h.split(":")[1]):
        head = s.head(f"http://{test_registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST})
        assert head.headers["Docker-Content-Digest"] == digest
    state = s.get(f"http://{test_registry}/v2/{repo}/manifests/mlenv-state", headers={"Accept": MANIFEST}).json()
    assert state["artifactType"] == "application/vnd.mlenv.state.v1"
    blob = s.get(f"http://{test_registry}/v2/{repo}/blobs/{state['layers'][0]['digest']}").json()
    assert blob["labels"] == {"prod": 1} and [v for _, v in blob["history"]["prod"]] == [1]


def test_semantics_match_the_local_backend(oci_url):
    reg = OciRegistry(oci_url)
    for i in (1, 2, 3):
        assert reg.register("env", *fake(i)).version.version == i
    again = reg.register("env", *fake(2))
    assert (again.created, again.version.version) == (False, 2)
    assert [v.version for v in reg.versions("env")] == [1, 2, 3]
    assert reg.read(reg.resolve("env", "2")) == fake(2)[:2]
    assert reg.resolve("env", fake(3)[2].split(":")[1][:10]).version == 3
    reg.set_label("env", 1, "prod")
    reg.set_label("env", 3, "prod")
    assert reg.resolve("env", "prod").version == 3
    assert [v for _, v in reg.label_history("env", "prod")] == [1, 3]
    reg.set_archived("env", 3, True)
    assert reg.resolve("env").version == 2
    assert reg.names() == ["env"]
    reg.set_archived("env", None, True)
    assert reg.names() == [] and reg.names(include_archived=True) == ["env"]
    reg.set_archived("env", None, False)
    v = reg.update("env", 2, description="edited", image="127.0.0.1:1/x:abc", image_digest="sha256:" + "a" * 64)
    assert (v.description, v.image, v.version) == ("edited", "127.0.0.1:1/x:abc", 2)
    assert reg.find("env", fake(2)[2]).description == "edited"
    assert reg.content_hashes() >= {fake(i)[2] for i in (1, 2, 3)}
    with pytest.raises(NotFound, match="no environment named 'nope'"):
        reg.versions("nope")
    with pytest.raises(NotFound, match="no such version"):
        reg.resolve("env", "8")


def test_tampered_blob_in_registry_storage_is_refused(oci_url, test_registry, tmp_path):
    """Corrupt the blob file inside the registry's own storage: mlenv must refuse it."""
    storage = os.environ.get("MLENV_TEST_REGISTRY_DATA") or ROOT / ".ci" / "_work" / "registry" / "data"
    data_root = Path(storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
    if not data_root.is_dir():
        pytest.skip("the test registry's storage is not under .ci/_work (registry not started by .ci/services.sh)")
    reg = OciRegistry(oci_url)
    spec, lock, h = fake(int(time.time() * 1000))  # unique content: a blob no other test shares
    reg.register("env", spec, lock, h)
    hexd = hashlib.sha256(lock).hexdigest()
    blob = data_root / hexd[:2] / hexd / "data"
    blob.write_bytes(lock.replace(b"lock", b"LOCK"))
    out = tmp_path / "out"
    with pytest.raises(MlenvError) as e:
        mlenv.restore("env@1", into=out, registry=oci_url)
    assert "does not match its digest" in one_line(e)
    assert not out.exists()


def test_unreachable_registry_is_one_clear_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_env(tmp_path)
    with pytest.raises(RegistryError) as e:
        mlenv.register(tmp_path, registry=f"oci://127.0.0.1:{port}/ns", image=False)
    assert one_line(e).startswith(f"registry 127.0.0.1:{port} unreachable")
    with pytest.raises(RegistryError) as e:
        mlenv.versions("demo", registry=f"oci://127.0.0.1:{port}/ns")
    assert "unreachable" in one_line(e)


def test_invalid_names_for_oci(oci_url):
    reg = OciRegistry(oci_url)
    with pytest.raises(RegistryError, match="not a valid OCI repository name"):
        reg.register("Bad--", *fake(1))
    with pytest.raises(RegistryError, match="invalid namespace"):
        OciRegistry("oci://127.0.0.1:5000/Upper")


def test_concurrent_clients_get_distinct_versions(oci_url, tmp_path):
    """8 `mlenv register` processes against one OCI repository, 4 distinct contents
    each twice: the optimistic allocation (write, re-read, retry) gives each content
    exactly one version and no number twice."""
    dirs, hashes = [], []
    for i in range(8):
        _, _, h = make_env(tmp_path / f"w{i}", name="race", variables={"SEED": str(i % 4)})
        dirs.append(tmp_path / f"w{i}")
        hashes.append(h)
    results = register_all(dirs, oci_url)
    vs = OciRegistry(oci_url).versions("race")
    assert len({v.content_hash for v in vs}) == len(vs) == 4
    assert {v.content_hash for v in vs} == set(hashes)
    by_hash = {v.content_hash: v.version for v in vs}
    for h, r in zip(hashes, results, strict=False):
        assert r["version"] == by_hash[h]


# --- auth: a second registry with htpasswd (bcrypt) ---------------------------------------


def _bcrypt(password: str) -> str:
    """bcrypt at its lowest cost (4): the registry checks the hash on every request, and
    the cost factor is not what these tests are about (the default 12 took ~0.25 s a request)."""
    try:
        import bcrypt

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # glibc/libxcrypt bcrypt ($2b$); removed in Python 3.13

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # 2**4 rounds


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    import shutil

    exe = shutil.which("docker-registry")
    if exe is None:
        if os.environ.get("MLENV_REQUIRE_DOCKER") == "1":
            pytest.fail("docker-registry is not installed")
        pytest.skip("docker-registry is not installed")
    work = tmp_path_factory.mktemp("auth-registry")
    (work / "htpasswd").write_text(f"alice:{_bcrypt('wonder-Land-9')}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: mlenv-test\n"
        f"auth:\n  htpasswd:\n    realm: mlenv-test\n    path: {work}/htpasswd\n"
    )
    log = open(work / "registry.log", "wb")
    proc = subprocess.Popen(
        [exe, "serve", str(work / "config.yml")], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        s = session()
        for _ in range(100):
            try:
                if s.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                    break
            except Exception:
                pass
            if proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {(work / 'registry.log').read_text()[-500:]}")
            time.sleep(0.1)
        else:
            pytest.fail("the htpasswd registry did not come up")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _credentials(monkeypatch, *, docker_config: Path, username: str = "", password: str = "") -> None:
    """Where the OCI client looks for credentials, for this test only."""
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("MLENV_REGISTRY_USERNAME", username)
    monkeypatch.setenv("MLENV_REGISTRY_PASSWORD", password)


def test_auth_refused_without_or_with_wrong_credentials(auth_registry, tmp_path, monkeypatch, capsys):
    make_env(tmp_path)
    url = f"oci://{auth_registry}/team"
    _credentials(monkeypatch, docker_config=tmp_path / "no-docker-config")
    with pytest.raises(RegistryError) as e:
        mlenv.register(tmp_path, registry=url, image=False)
    text = one_line(e)
    assert text.startswith(f"registry {auth_registry} refused access (HTTP 401, no credentials configured)")
    assert "docker login" in text
    _credentials(monkeypatch, docker_config=tmp_path / "no-docker-config", username="alice",
                 password="not-the-Password-7")  # fmt: skip
    with pytest.raises(RegistryError) as e:
        mlenv.register(tmp_path, registry=url, image=False)
    assert "refused access (HTTP 401, with the configured credentials)" in one_line(e)
    captured = capsys.readouterr()
    assert "not-the-Password-7" not in str(e.value) + repr(e.value.args) + captured.out + captured.err
    # nothing was written remotely
    s = session()
    s.auth = ("alice", "wonder-Land-9")
    assert s.get(f"http://{auth_registry}/v2/_catalog").json()["repositories"] == []


def test_auth_with_env_credentials_and_docker_config(auth_registry, tmp_path, monkeypatch, capsys):
    make_env(tmp_path, name="authed")
    url = f"oci://{auth_registry}/team"
    _credentials(monkeypatch, docker_config=tmp_path / "none", username="alice", password="wonder-Land-9")
    registered = mlenv.register(tmp_path, registry=url, image=False)
    assert (registered.created, registered.ref) == (True, "authed@1")
    assert "wonder-Land-9" not in json.dumps(registered.to_json()) + "".join(capsys.readouterr())
    # `docker login` style config.json
    cfg = tmp_path / "docker"
    cfg.mkdir()
    auth = base64.b64encode(b"alice:wonder-Land-9").decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {auth_registry: {"auth": auth}}}))
    _credentials(monkeypatch, docker_config=cfg)
    out = tmp_path / "out"
    mlenv.restore("authed@1", into=out, registry=url)
    assert (out / "mlenv.lock").read_bytes() == (tmp_path / "mlenv.lock").read_bytes()
    assert [e["name"] for e in mlenv.environments(registry=url)] == ["authed"]
