"""End to end through the CLI on both backends: lock (real uv against the local
fixture index), register, change a dependency, lock, register, diff, restore;
and the Docker connections: image recorded at register, --pull, --from-image, gc."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest
from cli_run import mlenv
from registry_envs import make_env

from mlenv.lockfile import read_lock

# A base image on a closed local port: the digest lookup fails at once (a warning,
# the tag is recorded) and never reaches Docker Hub.
UNREACHABLE_BASE = "127.0.0.1:9/mlenv-test/base:1"


@pytest.fixture(params=["local", "oci"])
def registry_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "registry")
    addr = request.getfixturevalue("test_registry")
    return f"oci://{addr}/mlenv-rt-{uuid.uuid4().hex[:10]}"


def write_spec(d: Path, name: str, index: str, deps: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        textwrap.dedent(f"""\
        [environment]
        name = "{name}"
        python = "3.11"
        platforms = ["linux-64"]

        [pypi]
        index-url = "{index}"
        dependencies = {json.dumps(deps)}

        [variables]
        STAGE = "{"one" if deps == ["fixalpha==1.0.0"] else "two"}"

        [image]
        base = "{UNREACHABLE_BASE}"
        """)
    )


def test_round_trip(tmp_path, registry_url, pypi_server):
    work = tmp_path / "work"
    env = {"MLENV_REGISTRY": registry_url}
    write_spec(work, "roundtrip", pypi_server, ["fixalpha==1.0.0"])
    mlenv("lock", cwd=work, env=env, check=True)
    spec1, lock1 = (work / "mlenv.toml").read_bytes(), (work / "mlenv.lock").read_bytes()
    out = mlenv("register", "--no-image", "--description", "first", cwd=work, env=env, check=True)
    assert out.stdout.startswith("registered roundtrip@1 (")
    again = mlenv("register", "--no-image", cwd=work, env=env, check=True)
    assert "already registered as roundtrip@1" in again.stdout

    write_spec(work, "roundtrip", pypi_server, ["fixbeta"])
    mlenv("lock", cwd=work, env=env, check=True)
    pins = {p.name: p.version for p in read_lock(work / "mlenv.lock").packages}
    assert pins == {"fixalpha": "1.1.0", "fixbeta": "1.0.0"}
    out = mlenv("register", "--no-image", cwd=work, env=env, check=True)
    assert out.stdout.startswith("registered roundtrip@2 (")

    d = json.loads(mlenv("diff", "roundtrip@1", "roundtrip@2", "--json", cwd=tmp_path, env=env, check=True).stdout)
    plat = d["platforms"]["linux-64"]
    assert plat["upgraded"] == [{"manager": "pypi", "name": "fixalpha", "from": "1.0.0", "to": "1.1.0"}]
    assert [(p["name"], p["version"]) for p in plat["added"]] == [("fixbeta", "1.0.0")]
    assert plat["removed"] == [] and d["variables"]["changed"] == {"STAGE": ["one", "two"]}

    versions = json.loads(mlenv("versions", "roundtrip", "--json", cwd=tmp_path, env=env, check=True).stdout)
    assert [(v["version"], v["description"]) for v in versions["versions"]] == [(1, "first"), (2, "")]

    empty = tmp_path / "restored"
    empty.mkdir()
    mlenv("restore", "roundtrip@1", "--into", str(empty), cwd=tmp_path, env=env, check=True)
    assert (empty / "mlenv.toml").read_bytes() == spec1
    assert (empty / "mlenv.lock").read_bytes() == lock1
    assert sorted(p.name for p in empty.iterdir()) == ["mlenv.lock", "mlenv.toml"]
    check = mlenv("-C", str(empty), "lock", "--check", cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stderr
    # by short hash and by label
    short = versions["versions"][1]["short_hash"]
    mlenv("label", "roundtrip@2", "prod", cwd=tmp_path, env=env, check=True)
    for ref in (f"roundtrip@{short}", "roundtrip@prod", "roundtrip"):
        data = json.loads(mlenv("show", ref, "--json", cwd=tmp_path, env=env, check=True).stdout)
        assert data["version"] == 2 and data["platforms"]["linux-64"]["pypi"] == 2


def test_restore_with_prefix_installs_and_imports(tmp_path, registry_url, pypi_server):
    work = tmp_path / "work"
    env = {"MLENV_REGISTRY": registry_url}
    write_spec(work, "prefixed", pypi_server, ["fixbeta"])
    mlenv("lock", cwd=work, env=env, check=True)
    mlenv("register", "--no-image", cwd=work, env=env, check=True)
    prefix = tmp_path / "prefix"
    mlenv(
        "restore",
        "prefixed@1",
        "--into",
        str(tmp_path / "r"),
        "--prefix",
        str(prefix),
        cwd=tmp_path,
        env=env,
        check=True,
    )
    python = prefix / "bin" / "python"
    assert python.exists(), sorted(p.name for p in prefix.iterdir())
    import subprocess

    proc = subprocess.run(
        [str(python), "-c", "import fixalpha, fixbeta; print(fixalpha.__version__)"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1.1.0"


# --- Docker: image record, --pull, --from-image, gc ---------------------------------------


def _build(client, base_image: str, tag: str, labels: dict, files: dict[str, bytes] | None = None):
    dockerfile = f"FROM {base_image}\n"
    if files:
        dockerfile += "COPY " + " ".join(files) + " /opt/mlenv/\n"
    dockerfile += "".join(f'LABEL "{k}"="{v}"\n' for k, v in labels.items())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **(files or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, network_mode="host", rm=True)
    return image


@pytest.mark.docker
def test_register_records_built_image_and_restore_pulls_it(tmp_path, docker_client, base_image, test_registry):
    name = f"imgrec-{uuid.uuid4().hex[:8]}"
    _, _, content_hash = make_env(tmp_path / "w", name=name)
    repo = f"{test_registry}/mlenv-regtest/{name}"
    tag = content_hash.split(":")[1][:12]
    image = _build(
        docker_client, base_image, f"{repo}:{tag}", {"org.mlenv.content-hash": content_hash, "org.mlenv.name": name}
    )
    digest = None
    try:
        docker_client.images.push(repo, tag=tag)
        image.reload()
        digest = image.attrs["RepoDigests"][0].split("@")[1]
        env = {"MLENV_REGISTRY": str(tmp_path / "registry")}
        out = mlenv("register", cwd=tmp_path / "w", env=env, check=True)
        assert f"image {repo}:{tag}" in out.stdout
        v = json.loads(mlenv("versions", name, "--json", cwd=tmp_path, env=env, check=True).stdout)["versions"][0]
        assert (v["image"], v["image_digest"]) == (f"{repo}:{tag}", digest)
        docker_client.images.remove(image.id, force=True)
        out = mlenv(
            "restore", f"{name}@1", "--into", str(tmp_path / "r"), "--pull", "--json", cwd=tmp_path, env=env, check=True
        )
        assert json.loads(out.stdout)["pulled"] == f"{repo}@{digest}"
        pulled = docker_client.images.get(f"{repo}@{digest}")
        assert pulled.labels["org.mlenv.content-hash"] == content_hash
    finally:
        for ref in (f"{repo}:{tag}", f"{repo}@{digest}" if digest else None):
            if ref:
                try:
                    docker_client.images.remove(ref, force=True)
                except Exception:
                    pass


@pytest.mark.docker
def test_restore_from_image(tmp_path, docker_client, base_image):
    name = f"fromimg-{uuid.uuid4().hex[:8]}"
    spec, lock, content_hash = make_env(tmp_path / "w", name=name)
    good = f"mlenv-regtest/{name}:good"
    bad = f"mlenv-regtest/{name}:bad"
    _build(
        docker_client,
        base_image,
        good,
        {"org.mlenv.content-hash": content_hash, "org.mlenv.name": name},
        {"mlenv.toml": spec, "mlenv.lock": lock},
    )
    _build(
        docker_client,
        base_image,
        bad,
        {"org.mlenv.content-hash": "sha256:" + "0" * 64, "org.mlenv.name": name},
        {"mlenv.toml": spec, "mlenv.lock": lock},
    )
    try:

        def ours() -> set[str]:  # containers of the images this test built (others may share the daemon and base)
            return {c.id for ref in (good, bad)
                    for c in docker_client.containers.list(all=True, filters={"ancestor": ref})}  # fmt: skip

        before = ours()
        out = tmp_path / "out"
        mlenv("restore", "--from-image", good, "--into", str(out), cwd=tmp_path, check=True)
        assert (out / "mlenv.toml").read_bytes() == spec and (out / "mlenv.lock").read_bytes() == lock
        proc = mlenv("restore", "--from-image", bad, "--into", str(tmp_path / "out2"), cwd=tmp_path)
        assert proc.returncode != 0 and "the image label says" in proc.stderr
        assert not (tmp_path / "out2").exists()
        proc = mlenv("restore", "--from-image", base_image, "--into", str(tmp_path / "out3"), cwd=tmp_path)
        assert proc.returncode != 0 and "was not built by mlenv" in proc.stderr
        assert ours() == before  # no container left behind
    finally:
        for ref in (good, bad):
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:
                pass


@pytest.mark.docker
def test_gc_removes_only_unreferenced_images(tmp_path, docker_client, base_image):
    name = f"gc-{uuid.uuid4().hex[:8]}"
    env = {"MLENV_REGISTRY": str(tmp_path / "registry")}
    _, _, registered = make_env(tmp_path / "a", name=name, variables={"V": "registered"})
    mlenv("register", "--no-image", cwd=tmp_path / "a", env=env, check=True)
    _, _, current = make_env(tmp_path / "b", name=name, variables={"V": "current"})  # ./mlenv.lock of the gc run
    _, _, orphan = make_env(tmp_path / "c", name=name, variables={"V": "orphan"})
    tags = {}
    for kind, h in (("registered", registered), ("current", current), ("orphan", orphan)):
        tags[kind] = f"mlenv-regtest/{name}:{kind}"
        _build(docker_client, base_image, tags[kind], {"org.mlenv.content-hash": h, "org.mlenv.name": name})
    try:
        dry = json.loads(mlenv("gc", "--name", name, "--json", cwd=tmp_path / "b", env=env, check=True).stdout)
        assert dry["dry_run"] and [i["tags"] for i in dry["unreferenced"]] == [[tags["orphan"]]]
        assert dry["kept"] == 2
        text = mlenv("gc", "--name", name, cwd=tmp_path / "b", env=env, check=True)
        assert f"would remove {tags['orphan']}" in text.stdout and "--yes" in text.stderr
        docker_client.images.get(tags["orphan"])  # still there after the dry run
        mlenv("gc", "--name", name, "--yes", cwd=tmp_path / "b", env=env, check=True)
        remaining = {
            t for img in docker_client.images.list(filters={"label": f"org.mlenv.name={name}"}) for t in img.tags
        }
        assert remaining == {tags["registered"], tags["current"]}
    finally:
        for ref in tags.values():
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:
                pass


# --- the read commands' rendering and an error's, on the local backend (moved here from
# test_registry_local.py, which checks the same behaviour through the API in-process) --------------


def test_read_commands_render_tables_text_and_json(tmp_path):
    """--json is exactly the API result's to_json(); the tables and text show its fields."""
    from mlenv.api import registry as api

    reg = str(tmp_path / "registry")
    env = {"MLENV_REGISTRY": reg}
    make_env(tmp_path / "a", variables={"A": "1"}, packages={"fixalpha": "1.0.0", "gone": "1.0"})
    api.register(tmp_path / "a", registry=reg, image=False)
    make_env(tmp_path / "a", variables={"A": "2", "B": "x"}, packages={"fixalpha": "2.0.0", "fixbeta": "1.0.0"})
    api.register(tmp_path / "a", registry=reg, image=False)
    assert mlenv("label", "demo@1", "prod", cwd=tmp_path, env=env, check=True).stdout == "demo@prod -> demo@1\n"

    def as_json(*args):
        return json.loads(mlenv(*args, "--json", cwd=tmp_path, env=env, check=True).stdout)

    assert as_json("list") == api.environments(registry=reg).to_json()
    vs = as_json("versions", "demo")
    assert vs == api.versions("demo", registry=reg).to_json()
    assert [(v["version"], v["labels"]) for v in vs["versions"]] == [(1, ["prod"]), (2, [])]
    table = mlenv("versions", "demo", cwd=tmp_path, env=env, check=True).stdout.splitlines()
    assert table[0].split() == ["VERSION", "HASH", "CREATED", "LABELS", "IMAGE", "DIGEST", "ARCHIVED"]
    assert table[1].split()[0:2] == ["1", vs["versions"][0]["short_hash"]] and "prod" in table[1]

    show = as_json("show", "demo@prod")
    assert show == api.show("demo@prod", registry=reg).to_json()
    assert show["platforms"]["linux-64"]["pypi"] == 2 and show["variables"] == {"A": "1"}
    text = mlenv("show", "demo@1", cwd=tmp_path, env=env, check=True).stdout
    assert "fixalpha==1.0.0" in text and "A=1" in text and text.startswith(f"demo@1  ({show['content_hash']})")

    assert as_json("diff", "demo@1", "demo@2") == api.diff("demo@1", "demo@2", registry=reg).to_json()
    human = mlenv("diff", "demo@1", "demo@2", cwd=tmp_path, env=env, check=True).stdout
    assert "↑ fixalpha 1.0.0 -> 2.0.0" in human and "+ fixbeta" in human and "- gone" in human

    mlenv("archive", "demo@2", cwd=tmp_path, env=env, check=True)
    assert [v["version"] for v in as_json("versions", "demo")["versions"]] == [1]
    mlenv("archive", "demo", cwd=tmp_path, env=env, check=True)
    assert as_json("list")["environments"] == []
    assert "demo" in mlenv("list", "--all", cwd=tmp_path, env=env, check=True).stdout
    mlenv("unarchive", "demo", cwd=tmp_path, env=env, check=True)
    mlenv("unarchive", "demo@2", cwd=tmp_path, env=env, check=True)
    assert as_json("show", "demo")["version"] == 2
    hist = as_json("label", "demo", "prod", "--history")
    assert [h["version"] for h in hist["history"]] == [1]


def test_registry_errors_render_as_one_line_with_hint_and_exit_code(tmp_path):
    """An MlenvError from the registry commands is printed as `error: <message>` and
    `  hint: <hint>` and nothing else (no traceback), with its exit code."""
    from mlenv.api import registry as api
    from mlenv.errors import MlenvError
    from mlenv.registry.local import LocalRegistry

    reg = tmp_path / "registry"
    env = {"MLENV_REGISTRY": str(reg)}
    local = LocalRegistry(reg)
    local.register("env", b"a", b"a", "sha256:abcd" + "1" * 60)
    local.register("env", b"b", b"b", "sha256:abcd" + "2" * 60)
    local.close()
    stale = tmp_path / "stale"
    make_env(stale, variables={"A": "1"})
    (stale / "mlenv.toml").write_text((stale / "mlenv.toml").read_text().replace('A = "1"', 'A = "2"'))
    cases = [
        (["show", "env@abcd"], lambda: api.show("env@abcd", registry=str(reg))),  # with a hint
        (["show", "nope@1"], lambda: api.show("nope@1", registry=str(reg))),  # without
        (["-C", str(stale), "register"], lambda: api.register(stale, registry=str(reg))),
    ]
    for args, call in cases:
        with pytest.raises(MlenvError) as e:
            call()
        proc = mlenv(*args, cwd=tmp_path, env=env)
        assert proc.returncode == e.value.exit_code != 0, args
        assert proc.stderr == f"error: {e.value}\n" and proc.stdout == "", args
        assert len(proc.stderr.splitlines()) == (2 if e.value.hint else 1), args
