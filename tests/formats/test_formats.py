"""`mlenv init --from` and `mlenv export`: every format checked by its real peer
(uv installs requirements.txt and pylock.toml, conda-lock's own parsers read
environment.yml and conda-lock.yml and render @EXPLICIT, azure-ai-ml loads the
Azure ML YAML), and round trips (export, import, lock again: same content hash).

The subject is what the importers and exporters make, so the API is called in-process
(`mlenv.init`, `mlenv.lock`, `mlenv.export`); the CLI tests at the end prove only how
`init` and `export` render a refusal and where `export -o` writes its text."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_run import mlenv as mlenv_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from refusals import cli_refused, one_line

import mlenv
from mlenv.errors import MlenvError
from mlenv.lockfile import read_lock

ROOT = Path(__file__).resolve().parents[2]


def uv() -> str:
    from mlenv.uvtool import uv_binary

    return uv_binary()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def pypi_project(directory: Path, index: str, *, variables=True, deps=("fixbeta", "fixnum")) -> Path:
    body = f'''
        [environment]
        name = "demo"
        description = "a demo"
        python = "3.11"

        [pypi]
        index-url = "{index}"
        dependencies = {json.dumps(list(deps))}
    '''
    if variables:
        body += '\n        [variables]\n        OMP_NUM_THREADS = "4"\n'
    write(directory / "mlenv.toml", body)
    mlenv.lock(directory)
    return directory


def conda_project(directory: Path, channel: str, index: str) -> Path:
    write(
        directory / "mlenv.toml",
        f'''
        [environment]
        name = "condademo"
        python = "3.11"

        [conda]
        channels = ["{channel}"]
        dependencies = ["numpy 1.26.*", "mlenv-hello"]

        [pypi]
        index-url = "{index}"
        dependencies = ["fixalpha==1.0.0"]

        [variables]
        MLENV_DEMO = "yes"
    ''',
    )
    mlenv.lock(directory)
    return directory


def export(directory: Path, fmt: str, platform: str | None = None) -> str:
    return mlenv.export(fmt, spec=directory, platform=platform).text


def reimport_and_lock(src_file: Path, workdir: Path, name="demo"):
    """(the lock of `src_file` imported into workdir and locked, the import's notes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    imported = mlenv.init(workdir / "mlenv.toml", from_file=src_file, name=name)
    mlenv.lock(workdir)
    return read_lock(workdir / "mlenv.lock"), imported.notes


@pytest.fixture(scope="module")
def pypi_env(tmp_path_factory, pypi_server):
    return pypi_project(tmp_path_factory.mktemp("pypi-env"), pypi_server)


@pytest.fixture(scope="module")
def conda_env(tmp_path_factory, conda_channel, pypi_server):
    return conda_project(tmp_path_factory.mktemp("conda-env"), conda_channel, pypi_server)


# --- export: requirements.txt, checked by uv installing it ---------------------------------


def _venv(path: Path) -> Path:
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(path)], check=True)
    return path / "bin" / "python"


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [uv(), "pip", "freeze", "--python", str(python)], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def test_requirements_export_installs_with_hashes(pypi_env, tmp_path):
    text = export(pypi_env, "requirements")
    lock = read_lock(pypi_env / "mlenv.lock")
    for pkg in lock.for_platform("linux-64"):
        assert f"{pkg.name}=={pkg.version}" in text and f"--hash=sha256:{pkg.sha256}" in text
    assert "--index-url http://127.0.0.1:" in text
    req = write(tmp_path / "requirements.txt", text)
    python = _venv(tmp_path / "venv")
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", str(python), "--require-hashes", "--no-deps", "-r", str(req)],
        check=True,
    )
    assert _installed(python) == {p.name: p.version for p in lock.for_platform("linux-64")}
    # A wrong hash is refused by the installer: the hashes are real.
    bad = write(tmp_path / "bad.txt", text.replace(lock.for_platform("linux-64")[0].sha256, "0" * 64))
    proc = subprocess.run(
        [
            uv(),
            "pip",
            "install",
            "-q",
            "--python",
            str(_venv(tmp_path / "venv2")),
            "--require-hashes",
            "--no-deps",
            "-r",
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "hash" in proc.stderr.lower()


def test_requirements_export_per_platform(tmp_path, pypi_server):
    write(
        tmp_path / "mlenv.toml",
        f'''
        [environment]
        name = "plat"
        python = "3.11"
        platforms = ["linux-64", "osx-arm64"]
        [pypi]
        index-url = "{pypi_server}"
        dependencies = ["fixplat"]
    ''',
    )
    mlenv.lock(tmp_path)
    linux = export(tmp_path, "requirements", "linux-64")
    mac = export(tmp_path, "requirements", "osx-arm64")
    lock = read_lock(tmp_path / "mlenv.lock")
    assert lock.for_platform("linux-64")[0].sha256 in linux and lock.for_platform("osx-arm64")[0].sha256 in mac
    assert lock.for_platform("osx-arm64")[0].sha256 not in linux
    with pytest.raises(MlenvError) as e:
        export(tmp_path, "requirements", "win-64")
    assert "no such platform" in one_line(e, code=2)


# --- export: pylock.toml, checked by uv installing from it -------------------------------------


def test_pylock_export_installs_with_uv(pypi_env, tmp_path):
    text = export(pypi_env, "pylock")
    import tomllib

    data = tomllib.loads(text)
    assert data["lock-version"] == "1.0" and data["created-by"] == "mlenv"
    lock = read_lock(pypi_env / "mlenv.lock")
    got = {p["name"]: p["version"] for p in data["packages"]}
    assert got == {p.name: p.version for p in lock.for_platform("linux-64")}
    pylock = write(tmp_path / "pylock.toml", text)
    python = _venv(tmp_path / "venv")
    subprocess.run([uv(), "pip", "install", "-q", "--python", str(python), "-r", str(pylock)], check=True)
    assert _installed(python) == got
    # uv verifies the hashes it reads from pylock.toml
    wrong = write(tmp_path / "wrong" / "pylock.toml", text.replace(lock.for_platform("linux-64")[0].sha256, "1" * 64))
    proc = subprocess.run(
        [uv(), "pip", "install", "-q", "--python", str(_venv(tmp_path / "venv2")), "-r", str(wrong)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "hash" in proc.stderr.lower()


# --- export: environment.yml, read by conda-lock's environment.yml parser -------------------------


def test_environment_yml_export_parsed_by_conda_lock(conda_env, tmp_path):
    from conda_lock.src_parser.environment_yaml import parse_environment_file

    text = export(conda_env, "environment-yml")
    assert "- --index-url http://127.0.0.1:" in text  # conda passes pip-section options through to pip
    # conda-lock's parser (unlike conda) takes only requirements in the pip section; it has its own
    # `pip-repositories` key instead. Everything else goes through it unchanged.
    path = write(tmp_path / "environment.yml", "\n".join(ln for ln in text.splitlines() if "--index-url" not in ln))
    mapping = tmp_path / "pypi-mapping.json"  # conda-lock's PyPI->conda name map; none of ours are mapped
    mapping.write_text("{}")
    spec = parse_environment_file(path, ["linux-64"], mapping_url=str(mapping))
    deps = {d.name: d for d in spec.dependencies["linux-64"]}
    lock = read_lock(conda_env / "mlenv.lock")
    for pkg in lock.for_platform("linux-64", "conda"):
        assert deps[pkg.name].manager == "conda"
        assert deps[pkg.name].version in (pkg.version, f"=={pkg.version}", f"{pkg.version}")
        assert deps[pkg.name].build == pkg.get("build")
    assert deps["fixalpha"].manager == "pip" and "1.0.0" in deps["fixalpha"].version
    import yaml

    assert yaml.safe_load(text)["variables"] == {"MLENV_DEMO": "yes"}


# --- export: conda-lock.yml, read by conda-lock's own lockfile parser ---------------------------


def test_conda_lock_export_parsed_by_conda_lock(conda_env, tmp_path):
    from conda_lock.lockfile import parse_conda_lock_file

    path = write(tmp_path / "conda-lock.yml", export(conda_env, "conda-lock"))
    parsed = parse_conda_lock_file(path)
    lock = read_lock(conda_env / "mlenv.lock")
    got = {(p.manager, p.name, p.version, p.url, p.hash.sha256) for p in parsed.package}
    want = {("conda" if p.manager == "conda" else "pip", p.name, p.version, p.url, p.sha256) for p in lock.packages}
    assert got == want
    md5 = {p.name: p.hash.md5 for p in parsed.package if p.manager == "conda"}
    assert all(md5[p.name] == p.get("md5") for p in lock.packages if p.manager == "conda")
    assert parsed.metadata.platforms == ["linux-64"]
    assert parsed.metadata.content_hash["linux-64"] == lock.content_hash.split(":")[1]
    hello = next(p for p in parsed.package if p.name == "mlenv-hello")
    assert "libfix-data" in hello.dependencies


def test_conda_explicit_matches_conda_lock_rendering(conda_env, tmp_path):
    """conda-lock renders @EXPLICIT from a lockfile; mlenv's export lists the same URLs and md5s."""
    from conda_lock.conda_lock import render_lockfile_for_platform
    from conda_lock.lockfile import parse_conda_lock_file

    ours = export(conda_env, "conda-explicit")
    assert "@EXPLICIT" in ours.splitlines()
    path = write(tmp_path / "conda-lock.yml", export(conda_env, "conda-lock"))
    theirs = render_lockfile_for_platform(
        lockfile=parse_conda_lock_file(path),
        include_dev_dependencies=True,
        extras=set(),
        kind="explicit",
        platform="linux-64",
    )
    url_lines = lambda lines: sorted(ln for ln in lines if "://" in ln and not ln.startswith("#"))  # noqa: E731
    theirs_conda = [ln for ln in url_lines(theirs) if not ln.startswith("# pip")]
    assert url_lines(ours.splitlines()) == theirs_conda
    lock = read_lock(conda_env / "mlenv.lock")
    for pkg in lock.for_platform("linux-64", "conda"):
        assert f"{pkg.url}#{pkg.get('md5')}" in ours


def test_conda_explicit_needs_conda_packages(pypi_env):
    with pytest.raises(MlenvError) as e:
        export(pypi_env, "conda-explicit")
    assert "no conda packages" in one_line(e, code=2)


# --- export: Azure ML YAML, loaded by azure-ai-ml ----------------------------------------------------


def test_azureml_export_loads_with_azure_ai_ml(pypi_env, tmp_path):
    pytest.importorskip("azure.ai.ml")
    from azure.ai.ml import load_environment

    path = write(tmp_path / "env.yml", export(pypi_env, "azureml"))
    env = load_environment(source=path)
    lock = read_lock(pypi_env / "mlenv.lock")
    assert env.name == "demo" and env.description == "a demo"
    assert env.image == lock.image["reference"]
    assert env.tags["mlenv.content-hash"] == lock.content_hash
    pip = next(d for d in env.conda_file["dependencies"] if isinstance(d, dict))["pip"]
    assert {f"{p.name}=={p.version}" for p in lock.for_platform("linux-64")} <= set(pip)
    assert "python=3.11" in env.conda_file["dependencies"]
    rest = env._to_rest_object()  # what the SDK would send
    assert "fixbeta==1.0.0" in rest.properties.conda_file and rest.properties.image == env.image
    assert json.loads(env.tags["mlenv.variables"]) == {"OMP_NUM_THREADS": "4"}


# --- export: apt packages (Dockerfile pins, Azure ML tags) -----------------------------------------------


APT_PINS = {"curl": "7.88.1-10+deb12u15", "libcurl4": "7.88.1-10+deb12u15", "libgomp1": "12.2.0-14+deb12u1"}


def apt_spec_and_lock(tmp_path: Path):
    """A spec asking for libgomp1 and curl, and a lock pinning their closure (written by hand:
    tests/apt/test_apt.py does the same with a real lock from deb.debian.org)."""
    from mlenv.lockfile import Lock, Package
    from mlenv.spec import load_spec

    ref = "127.0.0.1:5000/b@sha256:" + "e" * 64
    spec_path = write(
        tmp_path / "mlenv.toml",
        f"""
        [environment]
        name = "aptdemo"
        python = "3.11"
        platforms = ["linux-64"]

        [image]
        base = "{ref}"
        apt-packages = ["libgomp1", "curl"]
    """,
    )
    pkgs = [
        Package("apt", "linux-64", name, version,
                f"http://deb.debian.org/debian/pool/main/x/{name}/{name}_{version}_amd64.deb", f"{n}" * 64,
                {"architecture": "amd64", "size": 1000 + n})
        for n, (name, version) in enumerate(sorted(APT_PINS.items()), start=1)
    ]  # fmt: skip
    lock = Lock(
        spec_hash="sha256:" + "0" * 64,
        python="3.11",
        platforms={"linux-64": {"python": "3.11"}},
        packages=pkgs,
        image={"base": ref, "reference": ref, "digest": "sha256:" + "e" * 64,
               "apt-packages": ["libgomp1", "curl"], "steps": []},
        inputs={"apt-packages": ["curl", "libgomp1"], "apt-base": ref, "apt-platforms": ["linux-64"]},
    ).seal()  # fmt: skip
    return load_spec(spec_path), lock


def test_dockerfile_export_pins_every_locked_deb(tmp_path):
    from mlenv.formats.exporters import dockerfile

    spec, lock = apt_spec_and_lock(tmp_path)
    lines = dockerfile(spec, lock).text.splitlines()
    at = lines.index("RUN apt-get update \\")
    pins = " ".join(f"{n}={v}" for n, v in sorted(APT_PINS.items()))  # the whole closure, not only the requests
    assert lines[at - 1] == f"FROM {lock.image['reference']}"
    assert lines[at + 1] == f" && apt-get install -y --no-install-recommends {pins} \\"
    assert lines[at + 2] == " && rm -rf /var/lib/apt/lists/*"
    # a lock from before apt pinning (no apt entries): the requested names, unpinned
    lock.packages = []
    assert " && apt-get install -y --no-install-recommends curl libgomp1 \\" in dockerfile(spec, lock).text


def test_apt_only_spec_without_python_exports_no_python_none(tmp_path):
    import yaml

    from mlenv.formats.exporters import environment_dict

    spec, lock = apt_spec_and_lock(tmp_path)
    spec.python, lock.python, lock.platforms = None, None, {"linux-64": {}}
    data = environment_dict(spec, lock, "linux-64", [])
    assert "None" not in yaml.safe_dump(data) and data["dependencies"] == []


def test_azureml_export_keeps_apt_requests_and_pins_in_tags(tmp_path):
    import yaml

    from mlenv.formats.exporters import azureml

    spec, lock = apt_spec_and_lock(tmp_path)
    out = azureml(spec, lock)
    tags = yaml.safe_load(out.text)["tags"]
    assert tags["mlenv.apt-packages"] == "curl libgomp1"  # the spec's request set: what the import reads back
    assert tags["mlenv.apt-pins"] == " ".join(f"{n}={v}" for n, v in sorted(APT_PINS.items()))
    assert any("mlenv.apt-pins" in n for n in out.notes)
    assert not any("environment.yml cannot hold" in n for n in out.notes)
    if importlib.util.find_spec("azure.ai.ml"):  # the SDK keeps the tags as they are
        from azure.ai.ml import load_environment

        env = load_environment(source=write(tmp_path / "env.yml", out.text))
        assert env.tags["mlenv.apt-packages"] == tags["mlenv.apt-packages"]
        assert env.tags["mlenv.apt-pins"] == tags["mlenv.apt-pins"]


def test_azureml_export_then_import_gives_back_the_apt_requests(tmp_path):
    from mlenv.formats.exporters import azureml

    spec, lock = apt_spec_and_lock(tmp_path)
    src = write(tmp_path / "x" / "env.yml", azureml(spec, lock).text)
    notes, text = _init(tmp_path, src)
    err = "\n".join(notes)
    got = _spec(text)
    assert sorted(got["image"]["apt-packages"]) == ["curl", "libgomp1"]
    assert got["image"]["base"] == lock.image["reference"] and got["environment"]["python"] == "3.11"
    assert "tag mlenv.apt-pins" in err  # the pins are re-resolved by `mlenv lock`: said, not silent


def test_import_azureml_apt_tag_is_validated(tmp_path):
    src = write(
        tmp_path / "env.yml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
        name: apttags
        image: debian:bookworm
        tags:
          mlenv.python: "3.11"
          mlenv.apt-packages: "curl libgomp1=12.2.0-14 Bad_Name $(rm) curl"
    """,
    )
    notes, text = _init(tmp_path, src)
    assert _spec(text)["image"]["apt-packages"] == ["curl", "libgomp1=12.2.0-14"]
    notes = [n for n in notes if "mlenv.apt-packages" in n]
    assert len(notes) == 2 and "Bad_Name" in notes[0] and "$(rm)" in notes[1] and "env.yml:6" in notes[0]
    # not text: one note, nothing carried
    src.write_text(src.read_text().replace('"curl libgomp1=12.2.0-14 Bad_Name $(rm) curl"', "[curl]"))
    notes, text = _init(tmp_path, src)
    err = "\n".join(notes)
    assert "apt-packages" not in _spec(text).get("image", {})
    assert "tag mlenv.apt-packages ['curl'] is not text; not carried over" in err


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=3)))
def test_apt_tag_parser_keeps_only_what_the_spec_accepts(value):
    from mlenv.formats.importers import Draft, _apt_tag
    from mlenv.spec import APT_RE

    d = Draft(name="x", source="Azure ML environment", origin=Path("env.yml"))
    _apt_tag(d, "env.yml:3", value)
    assert all(APT_RE.match(t) for t in d.apt) and len(d.apt) == len(set(d.apt))
    assert len(d.notes) <= 6 and all(n.startswith("env.yml:3: tag mlenv.apt-packages") for n in d.notes)


# --- export: Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_export_is_standalone(pypi_env):
    text = export(pypi_env, "dockerfile")
    lock = read_lock(pypi_env / "mlenv.lock")
    assert text.splitlines()[2] == f"FROM {lock.image['reference']}"
    assert "--require-hashes" in text and 'OMP_NUM_THREADS="4"' in text
    for pkg in lock.for_platform("linux-64"):
        assert f"{pkg.name}=={pkg.version} --hash=sha256:{pkg.sha256}" in text
    assert lock.content_hash in text


@pytest.mark.docker
def test_dockerfile_export_builds_with_plain_docker(tmp_path, pypi_server, docker_client, base_image_remote):
    """The standalone export is for people leaving mlenv: a plain `docker build` of it
    (no mlenv, no context) installs exactly the locked set."""
    d = pypi_project(tmp_path / "p", pypi_server)
    toml = d / "mlenv.toml"
    toml.write_text(toml.read_text() + f'\n[image]\nbase = "{base_image_remote}"\npython = "/usr/bin/python3"\n')
    mlenv.lock(d)
    lock = read_lock(d / "mlenv.lock")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    mlenv.export("dockerfile", spec=d, output=ctx / "Dockerfile")
    tag = f"mlenv-test/export:{lock.short_hash}"
    proc = subprocess.run(
        ["docker", "build", "--network", "host", "-q", "-t", tag, str(ctx)],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    try:
        code = (
            "import json, importlib.metadata as m, os; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}), os.environ['OMP_NUM_THREADS'])"
        )
        out = docker_client.containers.run(tag, ["python", "-c", code], network_mode="none", remove=True).decode()
        dists, omp = out.rsplit(" ", 1)
        got = {k: v for k, v in json.loads(dists).items() if k not in ("pip", "setuptools")}
        assert got == {p.name: p.version for p in lock.for_platform("linux-64", "pypi")} and omp.strip() == "4"
        labels = docker_client.api.inspect_image(tag)["Config"]["Labels"]
        assert labels["org.mlenv.content-hash"] == lock.content_hash
    finally:
        docker_client.api.remove_image(tag, force=True)


def _stale_copy(project: Path, into: Path) -> Path:
    """project's spec and lock copied into `into`, then the spec changed: the lock is stale."""
    into.mkdir()
    for name in ("mlenv.toml", "mlenv.lock"):
        (into / name).write_text((project / name).read_text())
    spec = into / "mlenv.toml"
    spec.write_text(spec.read_text().replace('["fixbeta", "fixnum"]', '["fixbeta", "fixnum", "fixconflict"]'))
    return into


def test_export_writes_atomically_to_file_and_refuses_stale_lock(pypi_env, tmp_path):
    out = tmp_path / "out" / "requirements.txt"
    result = mlenv.export("requirements", spec=pypi_env, output=out)
    assert out.read_text() == result.text == export(pypi_env, "requirements")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    stale = _stale_copy(pypi_env, tmp_path / "stale")
    with pytest.raises(MlenvError) as e:
        mlenv.export("requirements", spec=stale, output=stale / "r.txt")
    assert "not current" in one_line(e, code=2) and not (stale / "r.txt").exists()


# --- round trips: export, import, lock: same content hash ------------------------------------------------


def test_round_trip_requirements(tmp_path, pypi_server):
    src = pypi_project(tmp_path / "src", pypi_server, variables=False)
    before = read_lock(src / "mlenv.lock")
    req = write(tmp_path / "requirements.txt", export(src, "requirements"))
    after, _ = reimport_and_lock(req, tmp_path / "dst")
    assert after.content_hash == before.content_hash


def test_round_trip_pylock(tmp_path, pypi_server):
    src = pypi_project(tmp_path / "src", pypi_server, variables=False)
    before = read_lock(src / "mlenv.lock")
    path = write(tmp_path / "x" / "pylock.toml", export(src, "pylock"))
    after, _ = reimport_and_lock(path, tmp_path / "dst")
    assert after.content_hash == before.content_hash


def test_round_trip_environment_yml_pypi_only_with_variables(pypi_env, tmp_path):
    before = read_lock(pypi_env / "mlenv.lock")
    path = write(tmp_path / "environment.yml", export(pypi_env, "environment-yml"))
    after, notes = reimport_and_lock(path, tmp_path / "dst")
    assert after.content_hash == before.content_hash
    assert any("imported as a PyPI environment" in n for n in notes)


def test_round_trip_environment_yml_conda(conda_env, tmp_path):
    before = read_lock(conda_env / "mlenv.lock")
    path = write(tmp_path / "environment.yml", export(conda_env, "environment-yml"))
    after, _ = reimport_and_lock(path, tmp_path / "dst", name="condademo")
    assert after.content_hash == before.content_hash
    spec = (tmp_path / "dst" / "mlenv.toml").read_text()
    assert "[conda]" in spec and "mlenv-hello ==1.0.0 " in spec


def test_round_trip_azureml(pypi_env, tmp_path):
    before = read_lock(pypi_env / "mlenv.lock")
    path = write(tmp_path / "env.yml", export(pypi_env, "azureml"))
    after, _ = reimport_and_lock(path, tmp_path / "dst")
    assert after.content_hash == before.content_hash


# --- import: requirements.txt -----------------------------------------------------------------------------


def _init(tmp_path, src: Path) -> tuple[list[str], str]:
    """(the notes, the written mlenv.toml) of importing src into tmp_path/work as `imported`."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    result = mlenv.init(work / "mlenv.toml", from_file=src, name="imported", force=True)
    assert result.path == work / "mlenv.toml"
    return result.notes, result.path.read_text()


def _spec(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def test_import_requirements_includes_constraints_indexes_hashes_markers(tmp_path):
    write(
        tmp_path / "src" / "base.txt",
        """
        numpy>=1.26  # the base
        requests[socks]>=2 ; python_version >= "3.8"
    """,
    )
    write(
        tmp_path / "src" / "constraints.txt",
        """
        numpy==1.26.4
        urllib3<2
    """,
    )
    req = write(
        tmp_path / "src" / "requirements.txt",
        """
        --index-url https://${PYPI_USER}:${PYPI_TOKEN}@pypi.example.com/simple
        --extra-index-url https://extra.example.com/simple
        -r base.txt
        -c constraints.txt
        pandas==2.2.2 \\
            --hash=sha256:aaaa \\
            --hash=sha256:bbbb
        -e ./src/mypkg
        git+https://github.com/org/repo.git@main#egg=repo
        mylib @ git+https://github.com/org/mylib.git
        ./vendor/thing-1.0.tar.gz
        --find-links ./wheels
    """,
    )
    notes, text = _init(tmp_path, req)
    spec = _spec(text)
    deps = spec["pypi"]["dependencies"]
    assert "numpy>=1.26" in deps and spec["pypi"]["constraints"] == [
        "numpy==1.26.4",
        "urllib3<2",
    ]  # -c: [pypi] constraints
    assert 'requests[socks]>=2 ; python_version >= "3.8"' in deps and "pandas==2.2.2" in deps
    # git requirements are carried (issue 13); the local paths here lie outside the new project
    assert (
        "repo @ git+https://github.com/org/repo.git@main" in deps
        and "mylib @ git+https://github.com/org/mylib.git" in deps
    )
    assert spec["pypi"]["index-url"] == "https://${PYPI_USER}:${PYPI_TOKEN}@pypi.example.com/simple"
    assert spec["pypi"]["extra-index-urls"] == ["https://extra.example.com/simple"]
    lines = set(notes)
    assert any("requirements.txt:8:" in ln and "editable" in ln for ln in lines)
    assert any("requirements.txt:11:" in ln and "local" in ln for ln in lines)
    assert any("requirements.txt:12:" in ln and "find-links" in ln for ln in lines)
    assert any("2 --hash option(s)" in ln for ln in lines)
    assert any("assumed 3.11" in ln for ln in lines)
    assert "# Not carried over" in text  # also recorded in the spec itself


def test_import_requirements_missing_include_is_one_clear_error(tmp_path):
    req = write(tmp_path / "requirements.txt", "-r nope.txt\n")
    with pytest.raises(MlenvError) as e:
        _init(tmp_path, req)
    assert "requirements.txt:1: -r nope.txt: no such file" in one_line(e, code=2)
    assert not (tmp_path / "work" / "mlenv.toml").exists()


# --- import: environment.yml ------------------------------------------------------------------------------


def test_import_environment_yml_conda_and_pip(tmp_path):
    write(tmp_path / "src" / "more.txt", "scipy>=1.11\n")
    env = write(
        tmp_path / "src" / "environment.yml",
        """
        name: research
        channels:
          - conda-forge
          - defaults
        dependencies:
          - python=3.11
          - numpy=1.26
          - cudatoolkit>=11.8
          - pip
          - pip:
            - --extra-index-url https://extra.example.com/simple
            - -r more.txt
            - torch==2.4.0
            - -e .
        variables:
          OMP_NUM_THREADS: 4
    """,
    )
    notes, text = _init(tmp_path, env)
    err = "\n".join(notes)
    spec = _spec(text)
    assert spec["environment"]["python"] == "3.11"
    assert spec["conda"]["channels"] == ["conda-forge", "https://repo.anaconda.com/pkgs/main"]
    assert spec["conda"]["dependencies"] == ["python=3.11", "numpy=1.26", "cudatoolkit>=11.8"]
    assert spec["pypi"]["dependencies"] == ["scipy>=1.11", "torch==2.4.0"]
    assert spec["pypi"]["extra-index-urls"] == ["https://extra.example.com/simple"]
    assert spec["variables"] == {"OMP_NUM_THREADS": "4"}
    assert "environment.yml:14:" in err and "editable" in err
    assert "environment.yml:4:" in err and "defaults" in err


def test_import_environment_yml_bad_yaml_points_at_line(tmp_path):
    env = write(tmp_path / "environment.yml", "dependencies:\n  - numpy\n  bad: [\n")
    with pytest.raises(MlenvError) as e:
        _init(tmp_path, env)
    err = one_line(e, code=2)
    assert "environment.yml:" in err and "invalid YAML" in err


# --- import: Azure ML environment YAML ----------------------------------------------------------------------


def test_import_azureml_image_and_conda_file(tmp_path):
    write(
        tmp_path / "src" / "conda.yml",
        """
        channels: [conda-forge]
        dependencies:
          - python=3.10
          - pip
          - pip:
            - scikit-learn==1.5.2
            - azureml-mlflow
    """,
    )
    env = write(
        tmp_path / "src" / "env.yml",
        """
        $schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
        name: sklearn-train
        version: 7
        description: Training
        image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
        conda_file: conda.yml
        inference_config:
          liveness_route: {port: 5001, path: /}
    """,
    )
    notes, text = _init(tmp_path, env)
    err = "\n".join(notes)
    spec = _spec(text)
    assert spec["image"]["base"] == "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    assert spec["environment"]["python"] == "3.10" and spec["environment"]["description"] == "Training"
    assert spec["pypi"]["dependencies"] == ["scikit-learn==1.5.2", "azureml-mlflow"]
    assert "env.yml:3:" in err and "version 7" in err
    assert "env.yml:7:" in err and "inference_config" in err


def test_import_azureml_build_context_dockerfile(tmp_path):
    write(
        tmp_path / "src" / "ctx" / "Dockerfile",
        """
        FROM mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04@sha256:"""
        + "a" * 64
        + """
        ENV OMP_NUM_THREADS=2 MODE="train"
        RUN apt-get update && apt-get install -y libgomp1 graphviz
        RUN pip install xgboost==2.1.1 pandas
        COPY requirements.txt /tmp/
        RUN useradd -m ml
    """,
    )
    env = write(
        tmp_path / "src" / "env.yml",
        """
        name: xgb
        build:
          path: ctx
    """,
    )
    notes, text = _init(tmp_path, env)
    err = "\n".join(notes)
    spec = _spec(text)
    assert spec["image"]["base"].endswith("@sha256:" + "a" * 64)
    assert spec["variables"] == {"OMP_NUM_THREADS": "2", "MODE": "train"}
    assert spec["image"]["apt-packages"] == ["libgomp1", "graphviz"]
    assert spec["pypi"]["dependencies"] == ["xgboost==2.1.1", "pandas"]
    assert spec["image"]["steps"] == ["RUN useradd -m ml"]
    assert "Dockerfile:5:" in err and "build context" in err
    assert "Dockerfile:6:" in err


# --- import: pyproject.toml ------------------------------------------------------------------------------


def test_import_pyproject(tmp_path):
    src = write(
        tmp_path / "src" / "pyproject.toml",
        """
        [project]
        name = "fraud-model"
        description = "Fraud model"
        requires-python = ">=3.10,<3.13"
        dependencies = [
          "scikit-learn>=1.5",
          "pandas>=2 ; python_version >= '3.10'",
          "localdep @ file:///opt/localdep",
        ]

        [project.optional-dependencies]
        dev = ["pytest"]
    """,
    )
    notes, text = _init(tmp_path, src)
    err = "\n".join(notes)
    spec = _spec(text)
    assert spec["environment"]["python"] == "3.11"
    assert spec["pypi"]["dependencies"] == ["scikit-learn>=1.5", "pandas>=2 ; python_version >= '3.10'"]
    assert "pyproject.toml:8:" in err and "localdep" in err
    assert "pyproject.toml:12:" in err and "[dev]" in err


def test_imported_pyproject_locks(tmp_path, pypi_server):
    src = write(
        tmp_path / "src" / "pyproject.toml",
        f"""
        [project]
        name = "x"
        requires-python = ">=3.11"
        dependencies = ["fixbeta"]

        [[tool.uv.index]]
        url = "{pypi_server}"
        default = true
    """,
    )
    work = tmp_path / "work"
    work.mkdir()
    mlenv.init(work / "mlenv.toml", from_file=src)
    mlenv.lock(work)
    lock = read_lock(work / "mlenv.lock")
    assert {p.name: p.version for p in lock.packages} == {"fixalpha": "1.1.0", "fixbeta": "1.0.0"}


# --- the CLI: how init and export render (the rest of this file calls the API) ---------------------------


def test_import_of_an_unknown_file_kind_is_refused(tmp_path):
    """`mlenv init --from` of a file of no known kind: one error line, exit 2, no traceback,
    nothing written (the CLI test of the init family: every other refusal above is in-process)."""
    odd = tmp_path / "hostname"
    odd.write_text("myhost\n")
    line = cli_refused(mlenv_cli("init", "--from", str(odd), cwd=tmp_path), code=2)
    assert "cannot tell which format" in line
    assert not (tmp_path / "mlenv.toml").exists()


def test_export_cli_writes_only_the_file_and_renders_a_refusal_in_one_line(pypi_env, tmp_path):
    """`mlenv export -o FILE` prints nothing on stdout (the text goes to FILE, the note of
    where to stderr); a refused export (a stale lock) is one error line, exit 2, no
    traceback, and no file (the CLI test of the export family)."""
    out = tmp_path / "out" / "requirements.txt"
    proc = mlenv_cli("export", "--format", "requirements", "-o", str(out), cwd=pypi_env, check=True)
    assert proc.stdout == "" and f"Wrote {out} (requirements)" in proc.stderr
    assert out.read_text() == export(pypi_env, "requirements")
    stale = _stale_copy(pypi_env, tmp_path / "stale")
    proc = mlenv_cli("export", "--format", "requirements", "-o", str(stale / "r.txt"), cwd=stale)
    assert "not current" in cli_refused(proc, code=2) and not (stale / "r.txt").exists()
