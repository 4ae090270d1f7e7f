"""The Azure ML workspace backend.

Azure cannot be reached from here, so two kinds of tests:

- entity tests: azure-ai-ml's own Environment entity and schema code dumps and
  loads what mlenv creates (YAML, REST object);
- a contract test: the real SDK (MLClient, environments.create_or_update/get/
  list/archive/restore) against a local HTTP server on 127.0.0.1 that answers
  the documented REST calls for environment containers and versions
  (api-version 2023-04-01-preview) the way the service does: versions are
  immutable except description, tags and isArchived; a PUT that changes
  anything else is 409. Every request is recorded and the bodies are asserted.
  The only stand-ins are this server and a static bearer-token credential.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("azure.ai.ml", reason="the Azure ML backend needs the `azure` extra (pip install 'mlenv[azure]')")

from mlenv.registry.azureml import CHUNK, AzureMLRegistry, decode_blob, split_ref
from mlenv.registry.base import NotFound, RegistryError

SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "ml-rg", "ml-ws"
URL = f"azureml://subscriptions/{SUB}/resourceGroups/{RG}/workspaces/{WS}"
TOKEN = "contract-test-token"
BASE = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}/environments"
)

SPEC = b"""[environment]
name = "fraud-train"
description = "Training environment"
python = "3.11"

[pypi]
dependencies = ["fixalpha==1.1.0"]

[variables]
OMP_NUM_THREADS = "4"
"""


def make_lock(version="1.1.0", sha="a" * 64) -> bytes:
    from mlenv.lockfile import Lock, Package

    lock = Lock(
        spec_hash="sha256:" + "0" * 64,
        python="3.11",
        platforms={"linux-64": {"python": "3.11"}},
        packages=[
            Package(
                "pypi",
                "linux-64",
                "fixalpha",
                version,
                f"https://files.pythonhosted.org/packages/fixalpha-{version}-py3-none-any.whl",
                sha,
                {"size": 1234, "index": "https://pypi.org/simple"},
            )
        ],
        variables={"OMP_NUM_THREADS": "4"},
        image={
            "base": "python:3.11-slim-bookworm",
            "reference": "docker.io/library/python:3.11-slim-bookworm@sha256:" + "b" * 64,
            "digest": "sha256:" + "b" * 64,
            "apt-packages": [],
            "steps": [],
        },
        inputs={},
    ).seal()
    return lock.dumps().encode(), lock.content_hash


class StaticToken:
    """A TokenCredential: the SDK calls get_token(scope) and sends `Authorization: Bearer ...`."""

    def __init__(self, token=TOKEN):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


# --- the contract server -----------------------------------------------------------------------


class Workspace:
    def __init__(self):
        self.containers: dict[str, dict] = {}
        self.versions: dict[tuple[str, str], dict] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @staticmethod
    def now():
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


IMMUTABLE = ("image", "condaFile", "build", "osType", "properties", "inferenceConfig")


class Handler(BaseHTTPRequestHandler):
    ws: Workspace

    def log_message(self, *args):
        pass

    def _send(self, code, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", "contract")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code, message, err="UserError"):
        self._send(code, {"error": {"code": err, "message": message}})

    def _handle(self):
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        ws = self.ws
        with ws.lock:
            ws.requests.append(
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": query,
                    "body": body,
                    "auth": self.headers.get("Authorization"),
                }
            )
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "missing or wrong bearer token", "AuthenticationFailed")
        if query.get("api-version") != "2023-04-01-preview":
            return self._error(400, f"unsupported api-version {query.get('api-version')}")
        path = parts.path
        if not path.startswith(BASE):
            return self._error(404, f"no such resource {path}", "ResourceNotFound")
        rest = path[len(BASE) :]
        view = query.get("listViewType", "ActiveOnly")
        with ws.lock:
            if rest == "" and self.command == "GET":
                return self._send(
                    200,
                    {
                        "value": [
                            self._container(n)
                            for n in sorted(ws.containers)
                            if _in_view(ws.containers[n]["isArchived"], view)
                        ]
                    },
                )
            m = re.fullmatch(r"/([^/]+)", rest)
            if m:
                name = m.group(1)
                if name not in ws.containers:
                    return self._error(404, f"environment {name} not found", "ResourceNotFound")
                if self.command == "PUT":
                    ws.containers[name]["isArchived"] = bool(body["properties"].get("isArchived"))
                return self._send(200, self._container(name))
            m = re.fullmatch(r"/([^/]+)/versions", rest)
            if m and self.command == "GET":
                name = m.group(1)
                rows = [
                    self._version(n, v)
                    for (n, v) in sorted(ws.versions, key=lambda k: int(k[1]) if k[1].isdigit() else 0)
                    if n == name and _in_view(ws.versions[(n, v)]["properties"]["isArchived"], view)
                ]
                return self._send(200, {"value": rows})
            m = re.fullmatch(r"/([^/]+)/versions/([^/]+)", rest)
            if m:
                name, version = m.groups()
                key = (name, version)
                if self.command == "GET":
                    if key not in ws.versions:
                        return self._error(404, f"environment {name}:{version} not found", "ResourceNotFound")
                    return self._send(200, self._version(name, version))
                if self.command == "PUT":
                    return self._put_version(name, version, body)
        return self._error(405, f"{self.command} {path} is not part of the contract")

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

    def _put_version(self, name, version, body):
        ws = self.ws
        props = dict(body["properties"])
        for field in ("tags", "properties"):
            for k, v in (props.get(field) or {}).items():
                if len(k) > 256 or len(str(v)) > CHUNK:
                    return self._error(400, f"{field} {k}: values are limited to {CHUNK} characters")
        key = (name, version)
        now = ws.now()
        if key in ws.versions:
            old = ws.versions[key]["properties"]
            if any(old.get(f) != props.get(f) for f in IMMUTABLE):
                return self._error(
                    409,
                    f"environment {name}:{version} exists; only description, tags and isArchived can change",
                    "Conflict",
                )
            old.update(
                {
                    "description": props.get("description"),
                    "tags": props.get("tags") or {},
                    "isArchived": bool(props.get("isArchived")),
                }
            )
            ws.versions[key]["lastModifiedAt"] = now
            return self._send(200, self._version(name, version))
        props.setdefault("isArchived", False)
        props.setdefault("tags", {})
        props["environmentType"] = "UserCreated"
        props["provisioningState"] = "Succeeded"
        ws.versions[key] = {"properties": props, "createdAt": now, "lastModifiedAt": now}
        c = ws.containers.setdefault(name, {"isArchived": False, "createdAt": now})
        c["latestVersion"] = version
        return self._send(201, self._version(name, version))

    def _version(self, name, version):
        v = self.ws.versions[(name, version)]
        return {
            "id": f"{BASE}/{name}/versions/{version}",
            "name": version,
            "type": "Microsoft.MachineLearningServices/workspaces/environments/versions",
            "properties": v["properties"],
            "systemData": {
                "createdAt": v["createdAt"],
                "createdBy": "contract",
                "createdByType": "User",
                "lastModifiedAt": v["lastModifiedAt"],
            },
        }

    def _container(self, name):
        c = self.ws.containers[name]
        return {
            "id": f"{BASE}/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/environments",
            "properties": {
                "isArchived": c["isArchived"],
                "latestVersion": c.get("latestVersion"),
                "description": None,
                "tags": {},
            },
            "systemData": {"createdAt": c["createdAt"], "createdBy": "contract", "createdByType": "User"},
        }


def _in_view(archived: bool, view: str) -> bool:
    return {"All": True, "ActiveOnly": not archived, "ArchivedOnly": archived}.get(view, not archived)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: azure-core refuses to send a bearer token
    over plain http, so the workspace server speaks TLS like the real endpoint."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d / "cert.pem", d / "key.pem"


@pytest.fixture
def workspace(tls_cert, monkeypatch):
    import ssl

    ws = Workspace()
    handler = type("H", (Handler,), {"ws": ws})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls_cert)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ws.endpoint = f"https://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_cert[0]))  # the SDK (requests) trusts the test CA
    yield ws
    server.shutdown()
    server.server_close()


@pytest.fixture
def registry(workspace):
    reg = AzureMLRegistry(URL, credential=StaticToken(), endpoint=workspace.endpoint)
    yield reg
    reg.close()


def puts(ws, name=None):
    return [
        r
        for r in ws.requests
        if r["method"] == "PUT"
        and "/versions/" in r["path"]
        and (name is None or f"/environments/{name}/" in r["path"])
    ]


# --- entity tests: azure-ai-ml's Environment entity and schema ------------------------------------


def test_environment_entity_dumps_and_loads_with_azure_ai_ml(tmp_path):
    """The YAML schema (az ml environment create --file) carries image, conda_file, tags and
    description; `properties` exist only in the REST body, so they are checked through the
    SDK's own REST serialization and deserialization."""
    from azure.ai.ml import load_environment
    from azure.ai.ml.entities import Environment

    lock, content_hash = make_lock()
    reg = AzureMLRegistry(URL, credential=StaticToken(), endpoint="http://127.0.0.1:9")
    env = reg._environment("fraud-train", SPEC, lock, content_hash, "first", None, None)
    env.version = "1"
    env.dump(tmp_path / "env.yml")
    loaded = load_environment(tmp_path / "env.yml")
    assert loaded.name == "fraud-train" and loaded.version == "1" and loaded.description == "first"
    assert loaded.image == "docker.io/library/python:3.11-slim-bookworm@sha256:" + "b" * 64
    assert loaded.conda_file == {
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11", "pip", {"pip": ["fixalpha==1.1.0"]}],
    }
    assert loaded.tags["mlenv.content-hash"] == content_hash
    assert not loaded.properties  # not part of the YAML schema

    rest = env._to_rest_object()
    wire = rest.as_dict()["properties"]
    wire = {k.lower().replace("_", ""): v for k, v in wire.items()}
    assert "fixalpha==1.1.0" in wire["condafile"] and wire["image"] == loaded.image
    rest.id = f"{BASE}/fraud-train/versions/1"
    back = Environment._from_rest_object(rest)
    props = back.properties
    assert props["mlenv.content-hash"] == content_hash and back.tags["mlenv.content-hash"] == content_hash
    for key, data in (("spec", SPEC), ("lock", lock)):
        chunks = [props[f"mlenv.{key}.{i}"] for i in range(int(props[f"mlenv.{key}.chunks"]))]
        assert all(len(c) <= CHUNK for c in chunks)
        assert decode_blob(chunks) == data
    assert back.conda_file == loaded.conda_file


def test_environment_entity_with_an_image_mlenv_pushed():
    lock, content_hash = make_lock()
    reg = AzureMLRegistry(URL, credential=StaticToken(), endpoint="http://127.0.0.1:9")
    digest = "sha256:" + "c" * 64
    env = reg._environment(
        "fraud-train", SPEC, lock, content_hash, "", "127.0.0.1:5000/mlenv/fraud-train:ad736e9feece", digest
    )
    assert env.image == f"127.0.0.1:5000/mlenv/fraud-train@{digest}" and env.conda_file is None
    assert env.tags["mlenv.image-digest"] == digest


def test_url_parsing_and_refs():
    assert split_ref(f"{URL}/environments/fraud-train@3") == (URL, "fraud-train@3")
    assert split_ref(f"{URL}/fraud-train") == (URL, "fraud-train")
    assert split_ref("fraud-train@3") is None
    with pytest.raises(RegistryError, match="invalid Azure ML registry URL"):
        AzureMLRegistry("azureml://workspaces/ws")


def test_missing_sdk_is_one_clear_message(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "azure.ai.ml", None)
    reg = AzureMLRegistry(URL, credential=StaticToken())
    with pytest.raises(RegistryError) as err:
        reg.versions("x")
    assert "azure-ai-ml" in str(err.value) and "mlenv[azure]" in str(err.value)


# --- contract tests: the real SDK against the local workspace server ---------------------------------


def test_contract_register_dedup_and_versions(registry, workspace):
    lock1, hash1 = make_lock()
    first = registry.register("fraud-train", SPEC, lock1, hash1, description="first")
    assert first.created and first.version.version == 1 and first.version.content_hash == hash1
    (put,) = puts(workspace)
    assert put["path"] == f"{BASE}/fraud-train/versions/1" and put["auth"] == f"Bearer {TOKEN}"
    body = put["body"]["properties"]
    assert body["image"] == "docker.io/library/python:3.11-slim-bookworm@sha256:" + "b" * 64
    assert "fixalpha==1.1.0" in body["condaFile"] and "python=3.11" in body["condaFile"]
    assert body["description"] == "first" and body["isArchived"] is False
    assert body["properties"]["mlenv.content-hash"] == hash1 and body["tags"]["mlenv.content-hash"] == hash1

    again = registry.register("fraud-train", SPEC, lock1, hash1, description="ignored")
    assert not again.created and again.version.version == 1 and len(puts(workspace)) == 1  # no new PUT

    lock2, hash2 = make_lock("2.0.0", "d" * 64)
    second = registry.register("fraud-train", SPEC, lock2, hash2)
    assert second.created and second.version.version == 2
    assert [v.version for v in registry.versions("fraud-train")] == [1, 2]
    assert registry.resolve("fraud-train").version == 2
    assert registry.resolve("fraud-train", hash1.split(":")[1][:8]).version == 1
    assert (
        registry.find("fraud-train", hash2).version == 2 and registry.find("fraud-train", "sha256:" + "9" * 64) is None
    )
    assert registry.names() == ["fraud-train"]
    assert registry.content_hashes() == {hash1, hash2}
    v1 = registry.resolve("fraud-train", "1")
    assert v1.created.endswith("Z") and v1.description == "first"


def test_contract_restore_is_byte_identical(registry, workspace):
    lock, content_hash = make_lock()
    v = registry.register("fraud-train", SPEC, lock, content_hash).version
    fresh = AzureMLRegistry(URL, credential=StaticToken(), endpoint=workspace.endpoint)  # a second client
    spec_bytes, lock_bytes = fresh.read(fresh.resolve("fraud-train", str(v.version)))
    assert spec_bytes == SPEC and lock_bytes == lock
    gets = [r for r in workspace.requests if r["method"] == "GET" and r["path"] == f"{BASE}/fraud-train/versions/1"]
    assert gets


def test_contract_corrupt_stored_lock_is_refused(registry, workspace):
    lock, content_hash = make_lock()
    v = registry.register("fraud-train", SPEC, lock, content_hash).version
    props = workspace.versions[("fraud-train", "1")]["properties"]["properties"]
    from mlenv.registry.azureml import encode_blob

    tampered = encode_blob(lock.replace(b"1.1.0", b"6.6.6"))
    props.update({f"mlenv.lock.{i}": c for i, c in enumerate(tampered)})
    props["mlenv.lock.chunks"] = str(len(tampered))
    with pytest.raises(RegistryError, match="does not match its sha256"):
        registry.read(v)


def test_contract_a_concurrent_writer_takes_the_number(registry, workspace):
    """Another client creates version 1 between mlenv's list and its PUT: Azure answers 409
    and mlenv takes the next number."""
    lock_other, hash_other = make_lock("0.9.0", "e" * 64)
    other = AzureMLRegistry(URL, credential=StaticToken(), endpoint=workspace.endpoint)
    real_list = registry._versions_raw
    calls = {"n": 0}

    def racing(name):
        out = real_list(name)
        if calls["n"] == 0:
            other.register(name, SPEC, lock_other, hash_other)  # sneaks in as version 1
        calls["n"] += 1
        return out

    registry._versions_raw = racing
    lock, content_hash = make_lock()
    got = registry.register("fraud-train", SPEC, lock, content_hash)
    assert got.created and got.version.version == 2
    codes = [r["path"] for r in puts(workspace)]
    assert codes.count(f"{BASE}/fraud-train/versions/1") == 2  # ours was refused (409), then version 2
    assert workspace.versions[("fraud-train", "1")]["properties"]["properties"]["mlenv.content-hash"] == hash_other


def test_contract_labels_archive_and_update(registry, workspace):
    l1, h1 = make_lock()
    l2, h2 = make_lock("2.0.0", "d" * 64)
    registry.register("fraud-train", SPEC, l1, h1)
    registry.register("fraud-train", SPEC, l2, h2)
    registry.set_label("fraud-train", 1, "prod")
    assert registry.labels("fraud-train") == {"prod": 1} and registry.resolve("fraud-train", "prod").version == 1
    registry.set_label("fraud-train", 2, "prod")  # moves
    assert registry.labels("fraud-train") == {"prod": 2}
    assert [v for _, v in registry.label_history("fraud-train", "prod")] == [1, 2]
    tags1 = workspace.versions[("fraud-train", "1")]["properties"]["tags"]
    assert "mlenv.label.prod" not in tags1 and "mlenv.label-history.prod" in tags1

    registry.set_archived("fraud-train", 2, True)
    assert registry.resolve("fraud-train").version == 1
    assert [v.archived for v in registry.versions("fraud-train")] == [False, True]
    # editing an archived version keeps it archived (the SDK's PUT always sends isArchived=false)
    updated = registry.update(
        "fraud-train", 2, description="rolled back", image="127.0.0.1:5000/x:1", image_digest="sha256:" + "f" * 64
    )
    assert updated.archived and updated.description == "rolled back" and updated.image == "127.0.0.1:5000/x:1"
    assert workspace.versions[("fraud-train", "2")]["properties"]["isArchived"] is True
    registry.set_archived("fraud-train", 2, False)
    assert registry.resolve("fraud-train").version == 2

    registry.set_archived("fraud-train", None, True)
    assert registry.names() == [] and registry.names(include_archived=True) == ["fraud-train"]
    assert all(v.archived for v in registry.versions("fraud-train"))
    registry.set_archived("fraud-train", None, False)
    assert registry.names() == ["fraud-train"]
    container_puts = [r for r in workspace.requests if r["method"] == "PUT" and r["path"] == f"{BASE}/fraud-train"]
    assert [r["body"]["properties"]["isArchived"] for r in container_puts] == [True, False]


def test_contract_unknown_names_and_foreign_versions(registry, workspace):
    with pytest.raises(NotFound):
        registry.versions("nope")
    with pytest.raises(NotFound):
        registry.resolve("nope")
    # an environment created in Azure without mlenv is not an mlenv version
    from azure.ai.ml.entities import Environment

    registry.client.environments.create_or_update(Environment(name="handmade", version="1", image="ubuntu:22.04"))
    with pytest.raises(NotFound, match="no version registered by mlenv"):
        registry.versions("handmade")
    lock, content_hash = make_lock()
    got = registry.register("handmade", SPEC, lock, content_hash)
    assert got.version.version == 2  # numbering continues after the workspace's own versions


def test_contract_wrong_credentials_are_one_clear_error(workspace):
    reg = AzureMLRegistry(URL, credential=StaticToken("expired"), endpoint=workspace.endpoint)
    with pytest.raises(RegistryError) as err:
        reg.versions("fraud-train")
    assert "401" in str(err.value) or "authentication" in str(err.value).lower()


# --- the CLI: mlenv register / restore against the contract server ---------------------------------------


def test_cli_register_and_restore(workspace, tmp_path, monkeypatch, capsys, pypi_server):
    import subprocess
    import sys

    import mlenv.registry.azureml as azureml
    from mlenv.cli.main import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "mlenv.toml").write_text(
        f'[environment]\nname = "fraud-train"\npython = "3.11"\n\n[pypi]\n'
        f'index-url = "{pypi_server}"\ndependencies = ["fixbeta"]\n'
    )
    subprocess.run([sys.executable, "-m", "mlenv.cli", "lock", "-q"], cwd=src, check=True)
    monkeypatch.setattr(azureml, "default_credential", lambda: StaticToken())
    monkeypatch.setenv(azureml.ENDPOINT_ENV, workspace.endpoint)
    monkeypatch.chdir(src)

    def run(*argv):
        try:
            main(list(argv))
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr()
        return capsys.readouterr()

    out = run("register", "--registry", URL, "--no-image", "--json")
    data = json.loads(out.out)
    assert data["version"] == 1 and data["new"] is True
    out = run("register", "--registry", URL, "--no-image", "--json")
    assert json.loads(out.out)["new"] is False
    dest = tmp_path / "restored"
    run("restore", "--registry", URL, "fraud-train@1", "--into", str(dest))
    assert (dest / "mlenv.toml").read_bytes() == (src / "mlenv.toml").read_bytes()
    assert (dest / "mlenv.lock").read_bytes() == (src / "mlenv.lock").read_bytes()
    (put,) = puts(workspace)
    assert "fixbeta==1.0.0" in put["body"]["properties"]["condaFile"]
