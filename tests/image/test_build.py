"""`mlenv.build` / `mlenv.images` / `mlenv.verify(image=...)` against a real Docker
Engine and the local OCI registry, called in-process (the console script's cache-hit
fast path and the rendered output stay CLI tests). Built images are shared through
module-scoped fixtures to keep the number of builds small."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from image_api import env_vars, verified
from refusals import one_line

import mlenv
from mlenv.errors import MlenvError
from mlenv.lockfile import read_lock

pytestmark = pytest.mark.docker
HOST_CA = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
BUILDER = os.environ.get("MLENV_BUILDER") or "buildkit"  # see _dockerfile_builders


@pytest.fixture(autouse=True)
def _dockerfile_builders(monkeypatch):
    """These tests are about the Dockerfile builders (BuildKit, classic): `auto` would pick
    the daemonless builder for most of these locks (tests/image/test_daemonless.py covers it).
    Each test names its CA bundle itself."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)
    monkeypatch.setenv("MLENV_BUILDER", BUILDER)


@pytest.fixture(autouse=True)
def _buildkit_cli(request):
    """A test run with builder=buildkit needs a docker CLI that drives BuildKit (CI has
    Debian's docker.io): skipped without one, a failure when MLENV_REQUIRE_DOCKER=1."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("builder") == "buildkit":
        from plugin_docker import _unavailable

        from mlenv.image.buildkit import find_cli

        if find_cli() is None:
            _unavailable("no docker CLI on PATH builds with BuildKit")


def without_scripts(dockerfile: str) -> str:
    """The Dockerfile with the embedded runtime scripts (mlenv/runtime/bootstrap.py and
    merge.py, the program of every install and merge step) cut out: what is left are
    the steps' arguments, which must carry no credential, CA or index."""
    from mlenv.image.dockerfile import runtime_script

    for name in ("bootstrap.py", "merge.py"):
        dockerfile = dockerfile.replace(json.dumps(runtime_script(name))[1:-1], "<" + name + ">")
    return dockerfile


def cli(*args, cwd, env=None):
    """The `mlenv` command, for the tests whose subject is the CLI (with the builder the
    in-process tests use)."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLENV_CA_BUNDLE"}
    full_env.setdefault("MLENV_BUILDER", BUILDER)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True, env=full_env
    )


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def project(directory: Path, base: str, body: str, name: str, *, python: str | None = None, steps=()) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    env = f'[environment]\nname = "{name}"\ndescription = "test image {name}"\nplatforms = ["linux-64"]\n'
    if python:
        env += f'python = "{python}"\n'
    image = f'\n[image]\nbase = "{base}"\npython = "/usr/bin/python3"\n'
    if steps:
        image += f"steps = {json.dumps(list(steps))}\n"
    (directory / "mlenv.toml").write_text(env + textwrap.dedent(body) + image)
    return directory


def layers(client, ref: str) -> list[str]:
    return client.api.inspect_image(ref)["RootFS"]["Layers"]


def remove_image(client, ref: str) -> None:
    try:
        client.api.remove_image(ref, force=True)
    except Exception:
        pass


# --- a conda image from the fixture channel (file:// artifacts carried in the context) ---


@pytest.fixture(scope="module")
def conda_image(tmp_path_factory, docker_client, base_image_remote, conda_channel):
    d = project(
        tmp_path_factory.mktemp("conda-img"),
        base_image_remote,
        f"""
        [conda]
        channels = ["{conda_channel}"]
        dependencies = ["mlenv-hello"]
        [variables]
        MLENV_TEST_RUN = "{uuid.uuid4().hex}"
        GREETING = "hello world"
        """,
        "build-conda",
    )
    with env_vars(MLENV_BUILDER=BUILDER):  # module scope: before the autouse fixtures
        mlenv.lock(d)
        result = mlenv.build(d)
    yield d, result
    remove_image(docker_client, result.image)


def test_conda_image_content_labels_and_self_description(conda_image, docker_client):
    d, result = conda_image
    lock = read_lock(d / "mlenv.lock")
    assert result.action == "built"
    assert result.image == f"mlenv/build-conda:{lock.short_hash}"
    labels = docker_client.api.inspect_image(result.image)["Config"]["Labels"]
    assert labels["org.mlenv.content-hash"] == lock.content_hash
    assert labels["org.mlenv.name"] == "build-conda"
    assert labels["org.opencontainers.image.title"] == "build-conda"
    assert labels["org.opencontainers.image.version"] == lock.short_hash
    script = (
        "ls /opt/mlenv/env/conda-meta/mlenv-hello-*.json && cat /opt/mlenv/env/share/mlenv-hello/hello.txt"
        ' && cat /opt/mlenv/mlenv.lock && echo "$GREETING" && ls /opt /tmp'
    )
    out = docker_client.containers.run(result.image, ["sh", "-c", script], network_mode="none", remove=True).decode()
    assert "/opt/mlenv/env/conda-meta/mlenv-hello-1.0.0-0.json" in out
    assert "hello" in out and lock.content_hash in out and "hello world" in out
    assert "mlenv-builder" not in out and "mlenv-build" not in out  # build tooling never reaches the image
    spec = docker_client.containers.run(
        result.image, ["cat", "/opt/mlenv/mlenv.toml"], network_mode="none", remove=True
    )
    assert spec.decode() == (d / "mlenv.toml").read_text()
    verified(result.image, d)


def test_conda_image_with_the_classic_builder(conda_image, docker_client):
    """The same conda lock through the classic builder (one stage, the env step in place):
    the same labels, conda records and metadata, and `verify --image` agrees."""
    d, bk = conda_image
    result = mlenv.build(d, builder="classic", force=True, repository="mlenv-classic")
    try:
        assert result.builder == "classic" and result.image == bk.image.replace("mlenv/", "mlenv-classic/", 1)
        labels = docker_client.api.inspect_image(result.image)["Config"]["Labels"]
        assert labels == docker_client.api.inspect_image(bk.image)["Config"]["Labels"]
        history = " ".join(h["CreatedBy"] for h in docker_client.api.history(result.image))
        assert "--step env" in history  # installed in place, not copied
        script = "ls /opt/mlenv/env/conda-meta/ && cat /opt/mlenv/env/share/mlenv-hello/hello.txt && ls /tmp"
        out = docker_client.containers.run(result.image, ["sh", "-c", script], network_mode="none", remove=True)
        assert "mlenv-hello-1.0.0-0.json" in out.decode() and "mlenv-build" not in out.decode()
        verified(result.image, d)
    finally:
        remove_image(docker_client, result.image)


def test_cache_hit_is_fast_and_found_by_label_under_any_name(conda_image, docker_client):
    d, result = conda_image
    again = mlenv.build(d)  # how fast: bench/build.py (no timed assertions in tests)
    assert again.action == "reused" and again.where == "local" and again.id == result.id
    # Only another name holds the image: found by label and retagged.
    docker_client.api.tag(result.id, "someone/else", "x")
    docker_client.api.remove_image(result.image)
    again = mlenv.build(d)
    assert again.action == "reused" and again.retagged is True
    assert result.image in docker_client.api.inspect_image(result.id)["RepoTags"]
    docker_client.api.remove_image("someone/else:x")


def test_cache_hit_fast_path_answers_like_the_full_path(conda_image, docker_client, tmp_path):
    """The console script answers a hit without click (mlenv.image.hit) once the full path
    has checked these exact spec and lock bytes; any other bytes go the full way. The subject
    is the console script and what it prints: a CLI test."""
    d, result = conda_image
    script = Path(sys.executable).parent / "mlenv"
    assert "mlenv.cli.entry" in script.read_text()  # the installed console script
    env = {**{k: v for k, v in os.environ.items() if k != "MLENV_CA_BUNDLE"}, "XDG_CACHE_HOME": str(tmp_path / "c")}

    seen: dict[str, set[str]] = {}

    def run(*args, cwd=d):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", str(script), *args], cwd=cwd, capture_output=True, text=True, env=env
        )
        imported = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
        seen["imported"] = imported
        errors = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:"))
        return proc.returncode, proc.stdout, errors, "click" in imported

    code, out, _, full = run("build", "--json")  # no record yet: the full path, which records
    assert code == 0 and full and json.loads(out)["action"] == "reused"
    # the full path's reuse check asks the Engine's unix socket (mlenv.dockerd): no docker SDK, no requests
    assert not {"docker", "requests"} & seen["imported"]
    records = list((tmp_path / "c/mlenv/hits").iterdir())
    assert len(records) == 1 and json.loads(records[0].read_text())["content_hash"] == result.content_hash
    code, fast_out, _, full = run("-C", str(d), "build", "--json")
    assert code == 0 and not full
    fast, slow = json.loads(fast_out), json.loads(out)
    assert {k: v for k, v in fast.items() if k != "seconds"} == {k: v for k, v in slow.items() if k != "seconds"}
    code, text, _, full = run("build")
    assert code == 0 and not full and text == f"reused {result.image} (local image {result.id[7:19]})\n"
    assert text == ok(cli("build", cwd=d)).stdout  # word for word the full path's line
    assert run("build", "-q")[1:] == ("", "", False)
    # options that do not change a hit's answer are understood; others go the full path
    code, out, _, full = run(
        "build", "--json", "--platform", "linux-64", "--builder", "classic", "--ca-bundle", HOST_CA
    )
    assert code == 0 and not full and json.loads(out)["action"] == "reused"
    assert run("build", "--dockerfile-only", str(tmp_path / "df"))[3] and run("build", "--no-cache", "-q")[3]
    # a hit downloads nothing: neither path reads the CA bundle then (a build does: test_missing_ca_file)
    code, out, _, full = run("build", "--ca-bundle", str(tmp_path / "nope.pem"))
    assert code == 0 and not full and out.startswith("reused ")
    assert ok(cli("build", "--ca-bundle", str(tmp_path / "nope.pem"), cwd=d)).stdout == out
    code, _, err, full = run("build", "--builder", "kaniko")
    assert code == 2 and full

    lock_file, spec_file = d / "mlenv.lock", d / "mlenv.toml"
    lock_text, spec_text = lock_file.read_text(), spec_file.read_text()
    try:
        # a tampered lock (a version changed, the hash kept): other bytes, so the full path
        # runs and refuses it
        tampered = lock_text.replace('version = "', 'version = "9', 1)
        assert tampered != lock_text
        lock_file.write_text(tampered)
        code, out, err, full = run("build")
        assert code != 0 and full and "reused" not in out and "content hash" in err, err
        lock_file.write_text(lock_text)
        # a spec edited since the lock: stale, said by the full path
        spec_file.write_text(spec_text.replace('GREETING = "hello world"', 'GREETING = "hello moon"'))
        code, out, err, full = run("build")
        assert code != 0 and full and "stale" in err
        spec_file.write_text(spec_text)
        # the tag now names another image (no content-hash label): not a hit for the fast path
        other = docker_client.api.inspect_image(base := read_lock(lock_file).image["reference"])["Id"]
        docker_client.api.tag(result.id, "mlenv-test/keep", "fastpath")
        docker_client.api.remove_image(result.image)
        repo, tag = result.image.rsplit(":", 1)
        docker_client.api.tag(other, repo, tag)
        code, out, err, full = run("build", "--json")
        assert full, (base, out)
    finally:
        lock_file.write_text(lock_text)
        spec_file.write_text(spec_text)
        remove_image(docker_client, result.image)
        docker_client.api.tag(result.id, *result.image.rsplit(":", 1))
        remove_image(docker_client, "mlenv-test/keep:fastpath")


def test_images_lists_mlenv_images(conda_image):
    d, result = conda_image
    rows = mlenv.images()
    row = next(r for r in rows if r["content_hash"] == read_lock(d / "mlenv.lock").content_hash)
    assert row["name"] == "build-conda" and result.image in row["tags"] and row["size"] > 0
    assert [r for r in mlenv.images("build-conda") if r["content_hash"] == row["content_hash"]] == [row]
    assert all(r["name"] == "build-conda" for r in mlenv.images("build-conda"))


def test_images_table_and_json_through_the_cli(conda_image):
    """What `mlenv images` prints (the subject: its JSON rows and its table)."""
    d, result = conda_image
    rows = json.loads(ok(cli("images", "--json", cwd=d)).stdout)
    row = next(r for r in rows if r["content_hash"] == read_lock(d / "mlenv.lock").content_hash)
    assert row["name"] == "build-conda" and result.image in row["tags"] and row["size"] > 0
    text = ok(cli("images", cwd=d)).stdout
    assert "build-conda" in text and row["short_hash"] in text


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_dockerfile_only_renders_the_context(conda_image, tmp_path, builder):
    d, _ = conda_image
    out = tmp_path / "ctx"
    rendered = mlenv.build(d, dockerfile_only=out, ca_bundle=HOST_CA, builder=builder)
    assert rendered.action == "rendered" and rendered.builder == builder
    text = without_scripts((out / "Dockerfile").read_text())
    context = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "served" not in p.parts)
    if builder == "classic":
        # one stage: no builder stage, no COPY --from; the context is the Dockerfile + metadata
        assert text.count("FROM ") == 1 and "COPY --from" not in text and " AS " not in text
        assert context == ["Dockerfile", "meta/mlenv.lock", "meta/mlenv.toml"]
    else:
        # the env is installed in a builder stage and copied onto the system stage
        assert re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M) == [
            (read_lock(d / "mlenv.lock").image["reference"], "system"),
            ("system", "env"),
            ("system", "image"),
        ]
        final = text.split("\nFROM system AS image\n", 1)[1]
        assert "<bootstrap.py>" not in final and "--mount=type=bind,from=env,source=/opt/mlenv/env,target=/tmp" in final
        assert context == ["Dockerfile", "etc/hosts", "etc/resolv.conf", "meta/mlenv.lock", "meta/mlenv.toml"]
        assert (out / "etc/hosts").read_bytes() == b""
    assert "http://127.0.0.1:47291" in text and "<bootstrap.py>" in text
    # every artifact is on the host: no step downloads, so the CA bundle is not served or named
    assert "--ca-bundle" not in text and "SSL_CERT_FILE" not in text and not (out / "served/net.pem").exists()
    lock = read_lock(d / "mlenv.lock")
    served = sorted(p.name for p in (out / "served/a").iterdir())
    assert served == sorted(p.sha256 for p in lock.for_platform("linux-64", "conda"))
    # the env step's cache key names its install plan, and the plan names its artifacts
    plans = sorted((out / "served/plan").iterdir())
    assert len(plans) == 1 and plans[0].name in text
    assert hashlib.sha256(plans[0].read_bytes()).hexdigest() == plans[0].name
    assert sorted(a["sha256"] for a in json.loads(plans[0].read_text())["conda"]) == served
    tars = sorted((out / "served/tools").iterdir())
    assert len(tars) == 2 and all(t.name in text for t in tars)  # installer + uv, py-rattler


def test_builder_choice(pypi_project, tmp_path, monkeypatch):
    d = pypi_project(["fixalpha==1.1.0"], name="build-builder")
    with monkeypatch.context() as mp:
        mp.setenv("PATH", str(tmp_path))  # no docker CLI: BuildKit cannot be driven
        with pytest.raises(MlenvError) as e:
            mlenv.build(d, builder="buildkit")
        assert "the buildkit builder cannot run here: no docker CLI on PATH can build with BuildKit" in str(e.value)
        out = tmp_path / "ctx"
        mp.setenv("MLENV_BUILDER", "auto")  # dockerfile_only: auto picks a builder that writes one
        rendered = mlenv.build(d, dockerfile_only=out)
        assert rendered.builder == "classic" and " AS " not in (out / "Dockerfile").read_text()
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, builder="kaniko")
    assert e.value.exit_code == 2 and "kaniko" in one_line(e)


# --- PyPI images from the fixture index: layers, registry, failures -----------------


@pytest.fixture(scope="module")
def pypi_project(tmp_path_factory, base_image_remote, pypi_server):
    def make(deps, name="build-pypi", steps=()):
        d = project(
            tmp_path_factory.mktemp(name),
            base_image_remote,
            f"""
            [pypi]
            index-url = "{pypi_server}"
            dependencies = {json.dumps(deps)}
            [variables]
            MLENV_TEST_RUN = "{uuid.uuid4().hex}"
            """,
            name,
            python="3.11",
            steps=steps,
        )
        with env_vars():  # module scope: the autouse fixtures may not have run yet
            mlenv.lock(d)
        return d

    return make


def _layer_steps(client, ref: str) -> list[str]:
    """The Dockerfile step of each filesystem layer, oldest first (aligned with RootFS.Layers)."""
    # a COPY always makes a layer, even an empty one (BuildKit's /etc stubs)
    hist = [h for h in reversed(client.api.history(ref)) if h["Size"] > 0 or "COPY " in h["CreatedBy"][:30]]
    assert len(hist) == len(layers(client, ref))
    return [h["CreatedBy"] for h in hist]


GROUPS_OF_ONE = {"MLENV_BUILD_GROUP_MIN_BYTES": "1"}  # fixture wheels are tiny: one group each


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_one_pypi_change_rebuilds_only_that_group_layer(pypi_project, docker_client, builder, monkeypatch):
    d = pypi_project(["fixalpha==1.0.0", "fixnum"], name=f"build-groups-{builder}")
    for name, value in {**GROUPS_OF_ONE, "MLENV_BUILDER": builder}.items():
        monkeypatch.setenv(name, value)
    first = mlenv.build(d)
    toml = d / "mlenv.toml"
    toml.write_text(toml.read_text().replace("fixalpha==1.0.0", "fixalpha==1.1.0"))
    mlenv.lock(d)
    second = mlenv.build(d)
    try:
        assert first.image != second.image and second.action == "built"
        assert first.builder == second.builder == builder
        a, b = layers(docker_client, first.image), layers(docker_client, second.image)
        steps = _layer_steps(docker_client, second.image)
        assert len(a) == len(b) == len(steps)
        # the groups in Dockerfile order (history shows no stage names)
        ctx = d / "ctx"
        mlenv.build(d, dockerfile_only=ctx)
        order = [g for g in re.findall(r'"--step", "(\S+)"\]', (ctx / "Dockerfile").read_text()) if g != "env"]
        assert sorted(order) == ["fixalpha", "fixnum", "numpy"]
        if builder == "classic":  # a group's install step is its layer
            groups = [i for i, st in enumerate(steps) if "--step " in st and "--step env" not in st]
        else:  # a group's builder stage is copied into its layer by the final stage
            groups = [i for i, st in enumerate(steps) if re.search(r"/opt/mlenv/pypi 1700000000 \S+", st)]
            assert [re.search(r"/opt/mlenv/pypi 1700000000 (\S+)", steps[i]).group(1) for i in groups] == order
        assert len(groups) == 3, steps
        fixalpha = groups[order.index("fixalpha")]
        changed = [i for i in range(len(a)) if a[i] != b[i]]
        # base, env and the groups before fixalpha's are cache hits; the layers of the
        # groups after it are written again (classic: their install steps re-run; BuildKit:
        # their copies re-run) but are byte-identical (fixed mtimes, fixed paths): only
        # fixalpha's layer and the metadata change
        assert changed == sorted([fixalpha, len(a) - 1]), (changed, steps)
        if builder == "buildkit":
            # the other groups' builder stages and the env stage did not run again
            log = Path(second.log).read_text()
            ran = {
                m.group(2)
                for m in re.finditer(r"^#(\d+) \[(g-\S+|env) \d+/\d+\] RUN", log, re.M)
                if not re.search(rf"^#{m.group(1)} CACHED$", log, re.M)
            }
            assert ran == {"g-fixalpha"}, ran
        # one logical site-packages over the groups: fixnum imports numpy from another group
        code = (
            "import fixnum, numpy, fixalpha, importlib.metadata as m, os; "
            "print(m.version('fixalpha'), os.path.dirname(numpy.__file__), os.path.dirname(fixnum.__file__))"
        )
        out = docker_client.containers.run(second.image, ["python", "-c", code], network_mode="none", remove=True)
        version, numpy_dir, fixnum_dir = out.decode().split()
        assert version == "1.1.0"
        assert numpy_dir.startswith("/opt/mlenv/pypi/numpy/") and fixnum_dir.startswith("/opt/mlenv/pypi/fixnum/")
        verified(second.image, d)
        # the first image does not match the new lock
        stale = mlenv.verify(image=first.image, spec=d)
        assert not stale.ok and "pypi: fixalpha is 1.0.0, mlenv.lock says 1.1.0" in [str(x) for x in stale.differences]
    finally:
        remove_image(docker_client, first.image)
        remove_image(docker_client, second.image)


def test_shared_artifacts_are_downloaded_once(pypi_project, docker_client, pypi_server, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty artifact cache for both builds
    one = pypi_project(["fixbeta"], name="build-share-a")
    two = pypi_project(["fixalpha==1.1.0", "fixnum"], name="build-share-b")
    alpha = next(p for p in read_lock(two / "mlenv.lock").packages if p.name == "fixalpha").url.rsplit("/", 1)[-1]
    refs = []
    try:
        before = len(pypi_server.requests)
        refs.append(mlenv.build(one).image)
        assert any(alpha in r for r in pypi_server.requests[before:])
        before = len(pypi_server.requests)
        refs.append(mlenv.build(two).image)
        fetched = pypi_server.requests[before:]
        assert any("fixnum" in r for r in fetched) and not any(alpha in r for r in fetched), fetched
        cached = {p.name for p in (tmp_path / "cache" / "mlenv" / "artifacts" / "sha256").iterdir()}
        lock_shas = {p.sha256 for d in (one, two) for p in read_lock(d / "mlenv.lock").packages}
        assert cached == lock_shas
    finally:
        for ref in refs:
            remove_image(docker_client, ref)


def test_no_credential_or_ca_reaches_any_stage(
    tmp_path, docker_client, base_image_remote, pypi_auth_server, monkeypatch
):
    index = pypi_auth_server.url.replace("://", "://${IDX_USER}:${IDX_TOKEN}@")
    d = project(
        tmp_path / "auth",
        base_image_remote,
        f"""
        [pypi]
        index-url = "{index}"
        dependencies = ["fixbeta"]
        [variables]
        MLENV_TEST_RUN = "{uuid.uuid4().hex}"
        """,
        "build-auth",
        python="3.11",
    )
    env = {
        "IDX_USER": pypi_auth_server.username,
        "IDX_TOKEN": pypi_auth_server.password,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **GROUPS_OF_ONE,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    mlenv.lock(d)
    secret = pypi_auth_server.password.encode()
    ca_pem = Path(HOST_CA).read_bytes()
    ca_cert = ca_pem.split(b"-----BEGIN CERTIFICATE-----")[-1][:200]
    # without credentials, the host-side download is refused: one clear message
    with monkeypatch.context() as mp:
        mp.setenv("IDX_USER", "")
        mp.setenv("IDX_TOKEN", "")
        with pytest.raises(MlenvError) as e:
            mlenv.build(d)
    assert "authentication" in str(e.value)
    # the build context: every file, the Dockerfile included
    ctx = tmp_path / "ctx"
    mlenv.build(d, dockerfile_only=ctx, ca_bundle=HOST_CA)
    files = [p for p in ctx.rglob("*") if p.is_file()]
    assert len(list((ctx / "served/a").iterdir())) == 2 and not (ctx / "served/net.pem").exists()
    assert [p for p in files if secret in p.read_bytes() or ca_cert in p.read_bytes()] == []
    dockerfile = without_scripts((ctx / "Dockerfile").read_text())
    assert "\nARG " not in dockerfile and "MLENV_INDEX" not in dockerfile and "--ca-bundle" not in dockerfile
    index_host = pypi_auth_server.url.split("://", 1)[1].split("/", 1)[0]
    assert index_host not in dockerfile  # no index URL: nothing is fetched in any stage
    result = mlenv.build(d, ca_bundle=HOST_CA)
    try:
        history = json.dumps(docker_client.api.history(result.image))
        for bad in (pypi_auth_server.password, pypi_auth_server.username, "ca-bundle", "SSL_CERT_FILE", "MLENV_INDEX"):
            assert bad not in history
        assert result.log is not None
        log = Path(result.log).read_bytes()
        assert secret not in log and ca_cert not in log
        config = json.dumps(docker_client.api.inspect_image(result.image)["Config"])
        assert pypi_auth_server.password not in config
        out = docker_client.containers.run(
            result.image, ["python", "-c", "import fixbeta, fixalpha; print('ok')"], network_mode="none", remove=True
        )
        assert out.decode().strip() == "ok"
    finally:
        remove_image(docker_client, result.image)


def test_push_then_reuse_from_registry(pypi_project, docker_client, test_registry):
    d = pypi_project(["fixalpha==1.1.0"], name="build-push")
    repo = f"{test_registry}/mlenv-test-{uuid.uuid4().hex[:8]}"
    first = mlenv.build(d, repository=repo, push=True)
    assert first.action == "built" and first.pushed and first.pushed.startswith("sha256:")
    docker_client.api.remove_image(first.id, force=True)
    again = mlenv.build(d, repository=repo)
    assert again.action == "reused" and again.where == "registry" and again.digest == first.pushed
    assert docker_client.api.images(filters={"label": f"org.mlenv.content-hash={first.content_hash}"}) == []


def test_failing_step_prints_step_and_log(pypi_project, docker_client):
    d = pypi_project(["fixalpha==1.1.0"], name="build-fail", steps=["RUN echo about-to-fail && false"])
    with pytest.raises(MlenvError) as e:
        mlenv.build(d)
    said = str(e.value)
    assert e.value.exit_code != 0
    assert "build failed at step" in said and "RUN echo about-to-fail && false" in said
    assert "about-to-fail" in said.split("last log lines:")[1]
    log = Path(said.split("full log: ")[1].split()[0])
    assert log.is_file() and "about-to-fail" in log.read_text()


def test_stale_lock_is_refused(pypi_project):
    d = pypi_project(["fixalpha==1.1.0"], name="build-stale")
    toml = d / "mlenv.toml"
    toml.write_text(toml.read_text().replace("fixalpha==1.1.0", "fixalpha==2.0.0"))
    with pytest.raises(MlenvError) as e:
        mlenv.build(d)
    assert "stale" in one_line(e) and "mlenv lock" in str(e.value)


def test_a_build_error_is_one_line_a_hint_and_its_exit_code_on_the_terminal(pypi_project):
    """The CLI's side of every refusal above: `mlenv build` prints the MlenvError the API
    raises as `error: MESSAGE` and its `hint:`, exits with its exit code, no traceback."""
    d = pypi_project(["fixalpha==1.1.0"], name="build-stale-cli")
    toml = d / "mlenv.toml"
    toml.write_text(toml.read_text().replace("fixalpha==1.1.0", "fixalpha==2.0.0"))
    with pytest.raises(MlenvError) as e:
        mlenv.build(d)
    assert e.value.hint  # the terminal shows a hint line
    proc = cli("build", "-q", cwd=d)
    assert proc.returncode == e.value.exit_code != 0 and proc.stdout == ""
    assert proc.stderr == f"error: {e.value}\n" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[1].startswith("  hint: ")


# --- bad inputs --------------------------------------------------------------------------


def test_no_daemon_names_docker_host(pypi_project, tmp_path, monkeypatch):
    d = pypi_project(["fixalpha==1.1.0"], name="build-nodaemon")
    sock = f"unix://{tmp_path}/nonexistent.sock"
    monkeypatch.setenv("DOCKER_HOST", sock)
    with pytest.raises(MlenvError) as e:
        mlenv.build(d)
    first = one_line(e)
    assert first.startswith("cannot reach the Docker daemon") and f"DOCKER_HOST={sock}" in first


def test_missing_ca_file(pypi_project, tmp_path):
    d = pypi_project(["fixalpha==1.1.0"], name="build-noca")
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, ca_bundle=str(tmp_path / "nope.pem"))
    assert "CA bundle" in one_line(e) and "nope.pem: no such file" in str(e.value)


def test_missing_base_image(tmp_path, test_registry, docker_client):
    d = project(tmp_path / "p", f"{test_registry}/mlenv-test/does-not-exist:1", "", "build-nobase")
    mlenv.lock(d)
    with pytest.raises(MlenvError) as e:
        mlenv.build(d)
    said = str(e.value)
    assert "base image" in said and "does-not-exist" in said and "not found" in said


# --- end to end with real PyPI packages ------------------------------------------------


@pytest.mark.network
def test_real_pypi_image_end_to_end(tmp_path, docker_client, base_image_remote, monkeypatch):
    d = project(
        tmp_path / "ml",
        base_image_remote,
        f"""
        [pypi]
        dependencies = ["scikit-learn==1.5.2", "pandas==2.2.3"]
        [variables]
        MLENV_TEST_RUN = "{uuid.uuid4().hex}"
        """,
        "build-ml",
        python="3.11",
    )
    mlenv.lock(d)
    lock = read_lock(d / "mlenv.lock")
    ref = f"mlenv/build-ml:{lock.short_hash}"
    try:
        # Without the proxy's CA, mlenv's host-side download from PyPI fails: a clear failure.
        empty = tmp_path / "empty"
        empty.mkdir()
        no_ca = {
            "SSL_CERT_FILE": str(empty / "none.pem"),
            "SSL_CERT_DIR": str(empty),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        with monkeypatch.context() as mp:
            for name, value in no_ca.items():
                mp.setenv(name, value)
            with pytest.raises(MlenvError) as e:
                mlenv.build(d)
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) and "--ca-bundle" in str(e.value)

        result = mlenv.build(d, ca_bundle=HOST_CA)
        assert result.action == "built" and result.image == ref
        want = {p.name: p.version for p in lock.for_platform("linux-64", "pypi")}
        code = (
            "import json, importlib.metadata as m, sklearn, pandas, numpy, scipy; "
            f"print(json.dumps({{n: m.version(n) for n in {sorted(want)!r}}}))"
        )
        out = docker_client.containers.run(ref, ["python", "-c", code], network_mode="none", remove=True)
        got = {k.lower().replace("_", "-"): v for k, v in json.loads(out.decode()).items()}
        assert got == want
        verified(ref, d)

        # The CA bundle is not in the final image, nor in its history.
        history = json.dumps(docker_client.api.history(ref))
        assert "ca-bundle" not in history and "SSL_CERT_FILE" not in history and "mlenv-builder" not in history
        found = docker_client.containers.run(
            ref,
            ["sh", "-c", "find / -xdev -name 'ca-bundle.pem' 2>/dev/null; ls /opt"],
            network_mode="none",
            remove=True,
        ).decode()
        assert "ca-bundle.pem" not in found and "mlenv-builder" not in found

        again = mlenv.build(d, ca_bundle=HOST_CA)
        assert again.action == "reused"
    finally:
        remove_image(docker_client, ref)


@pytest.mark.network
@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_sdist_is_built_in_its_group_step_and_the_ca_stays_out(tmp_path, docker_client, base_image_remote, builder):
    """docopt 0.6.2 is published as an sdist only: its group step builds it, fetching the
    build backend from PyPI through the proxy with the CA bundle, which reaches that
    step's process only."""
    d = project(
        tmp_path / "sdist",
        base_image_remote,
        f"""
        [pypi]
        dependencies = ["docopt==0.6.2"]
        [variables]
        MLENV_TEST_RUN = "{uuid.uuid4().hex}"
        """,
        f"build-sdist-{builder}",
        python="3.11",
    )
    mlenv.lock(d)
    (pkg,) = read_lock(d / "mlenv.lock").for_platform("linux-64", "pypi")
    assert pkg.name == "docopt" and pkg.url.endswith(".tar.gz")
    ctx = tmp_path / "ctx"
    mlenv.build(d, dockerfile_only=ctx, ca_bundle=HOST_CA, builder=builder)
    assert (ctx / "served/net.pem").read_bytes() == Path(HOST_CA).read_bytes()  # served to the build only
    assert '"net+ca"' in (ctx / "Dockerfile").read_text()
    result = mlenv.build(d, ca_bundle=HOST_CA, builder=builder)
    try:
        assert result.builder == builder
        code = "import docopt, importlib.metadata as m; print(docopt.__version__, m.version('docopt'))"
        out = docker_client.containers.run(result.image, ["python", "-c", code], network_mode="none", remove=True)
        assert out.decode().split() == ["0.6.2", "0.6.2"]
        verified(result.image, d)
        ca_cert = Path(HOST_CA).read_text().split("-----BEGIN CERTIFICATE-----")[-1][:120]
        found = docker_client.containers.run(
            result.image,
            ["sh", "-c", f"ls /tmp; grep -rlF '{ca_cert[:60].strip()}' /opt /tmp /root 2>/dev/null; true"],
            network_mode="none",
            remove=True,
        ).decode()
        assert found.strip() == "", found  # no scratch directory, no copy of the CA
        history = json.dumps(docker_client.api.history(result.image))
        assert ca_cert[:60] not in history  # the bootstrap names /net.pem; the CA's bytes are nowhere
    finally:
        remove_image(docker_client, result.image)


@pytest.mark.network
@pytest.mark.parametrize("kind", ["conda", "pypi"])
def test_target_tool_wheels_when_this_hosts_tools_cannot_run(
    kind, tmp_path, docker_client, base_image_remote, conda_channel, pypi_server, monkeypatch
):
    """A non-x86 or non-Linux host cannot put its own uv / py-rattler into the image:
    the host fetches the target's wheels from PyPI and serves them; install steps unzip
    them and need neither pip nor the network. MLENV_BUILD_TOOLS=pypi takes that path
    on this x86_64 host."""
    if kind == "conda":
        body = f'[conda]\nchannels = ["{conda_channel}"]\ndependencies = ["mlenv-hello"]\n'
        d = project(tmp_path / kind, base_image_remote, body, "build-wheels-conda")
    else:
        body = f'[pypi]\nindex-url = "{pypi_server}"\ndependencies = ["fixbeta"]\n'
        d = project(tmp_path / kind, base_image_remote, body, "build-wheels-pypi", python="3.11")
    mlenv.lock(d)
    monkeypatch.setenv("MLENV_BUILD_TOOLS", "pypi")
    ctx = tmp_path / "ctx"
    mlenv.build(d, dockerfile_only=ctx, ca_bundle=HOST_CA)
    text = without_scripts((ctx / "Dockerfile").read_text())
    wheels = re.findall(r"whl=([0-9a-f]{64})", text)
    assert len(set(wheels)) == (2 if kind == "conda" else 1)  # uv (+ py-rattler)
    assert all((ctx / "served/a" / sha).is_file() for sha in wheels)
    assert (
        not re.search(r'"[0-9a-f]{64}", "net', text) and not (ctx / "served/net.pem").exists()
    )  # no step reaches the network
    assert "/bin/uv" not in {str(p) for p in (ctx / "served/tools").iterdir()}
    result = mlenv.build(d, ca_bundle=HOST_CA)
    try:
        assert result.action == "built"
        verified(result.image, d)
        script = "ls /opt/mlenv/env/conda-meta/ /opt/mlenv/pypi/*/lib/python3.11/site-packages/ 2>/dev/null; ls /tmp"
        out = docker_client.containers.run(
            result.image, ["sh", "-c", script], network_mode="none", remove=True
        ).decode()
        assert ("mlenv-hello-1.0.0-0.json" if kind == "conda" else "fixbeta") in out
        assert "mlenv-build" not in out and "uv-" not in out and "rattler" not in out
    finally:
        remove_image(docker_client, result.image)


def test_pypi_groups_put_the_specs_own_requirements_last():
    """A change re-runs every step after it, so transitive dependencies (rarely
    edited) come first and the pins the spec names itself come last."""
    from mlenv.image.context import pypi_groups
    from mlenv.lockfile import Package

    def pkg(name, size):
        import hashlib

        sha = hashlib.sha256(name.encode()).hexdigest()
        return Package("pypi", "linux-64", name, "1.0", f"https://x/{name}-1.0-py3-none-any.whl", sha, {"size": size})

    pkgs = [
        pkg("scipy", 35),
        pkg("numpy", 16),
        pkg("scikit-learn", 13),
        pkg("pandas", 12),
        pkg("joblib", 1),
        pkg("six", 1),
    ]
    groups = pypi_groups(pkgs, {}, min_bytes=10, direct=frozenset({"scikit-learn", "pandas"}))
    order = [g.gid for g in groups]
    assert order[:2] == ["scipy", "numpy"]  # transitive, largest first
    assert order[-2:] == ["scikit-learn", "pandas"]  # the spec's own pins, last
    small = next(g for g in groups if g.gid.startswith("group-"))
    assert [p.name for p in small.packages] == ["joblib", "six"]
    # group ids depend only on their own artifacts, not on the order
    again = pypi_groups(list(reversed(pkgs)), {}, min_bytes=10)
    assert {g.gid for g in again} == set(order)
