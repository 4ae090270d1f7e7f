"""install / verify on the host (no Docker): a lock built from the fixture conda channel
and the fixture PyPI index, installed into a tmp prefix, through the API in-process;
one test runs `mlenv install` / `mlenv verify` to check what the CLI prints and exits with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_run import mlenv as cli
from refusals import one_line

import mlenv
from mlenv.errors import InstallError, MlenvError
from mlenv.lockfile import read_lock

# A base image the lock cannot pin (connection refused at once): these tests build nothing.
UNRESOLVABLE = "127.0.0.1:9/mlenv-test/none:1"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mlenv.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def pypi_project(tmp_path_factory, pypi_server):
    d = tmp_path_factory.mktemp("pypi-proj")
    write(
        d,
        f"""
        [environment]
        name = "inst-pypi"
        python = "{sys.version_info.major}.{sys.version_info.minor}"
        platforms = ["linux-64", "osx-arm64"]
        [pypi]
        index-url = "{pypi_server}"
        dependencies = ["fixbeta"]
        [image]
        base = "{UNRESOLVABLE}"
    """,
    )
    mlenv.lock(d)
    return d


@pytest.fixture(scope="module")
def conda_project(tmp_path_factory, conda_channel):
    d = tmp_path_factory.mktemp("conda-proj")
    write(
        d,
        f"""
        [environment]
        name = "inst-conda"
        platforms = ["linux-64"]
        [conda]
        channels = ["{conda_channel}"]
        dependencies = ["mlenv-hello"]
        [image]
        base = "mlenv-test/debian-python:bookworm"
    """,
    )
    mlenv.lock(d, offline=True)
    return d


def _differences(verified) -> set[tuple[str, str]]:
    return {(d.name, d.kind) for d in verified.differences}


def test_install_pypi_into_venv_then_verify_clean(pypi_project, tmp_path):
    prefix = tmp_path / "env"
    installed = mlenv.install(prefix, spec=pypi_project, python=BASE_PYTHON)
    assert (installed.result.pypi, installed.result.platform) == (2, "linux-64")
    out = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('fixalpha'), m.version('fixbeta'))",
        ],
        capture_output=True,
        text=True,
    )
    lock = read_lock(pypi_project / "mlenv.lock")
    want = {p.name: p.version for p in lock.for_platform("linux-64", "pypi")}
    assert out.stdout.split() == [want["fixalpha"], want["fixbeta"]]
    clean = mlenv.verify(prefix=prefix, spec=pypi_project)
    assert clean.ok and clean.differences == [] and clean.lock.content_hash == lock.content_hash

    # A removed file and a removed distribution are both reported.
    site = next(prefix.glob("lib/python*/site-packages"))
    (site / "fixbeta" / "__init__.py").unlink()
    shutil.rmtree(next(site.glob("fixalpha-*.dist-info")))
    damaged = mlenv.verify(prefix=prefix, spec=pypi_project)
    assert not damaged.ok
    assert _differences(damaged) == {("fixalpha", "missing"), ("fixbeta", "files")}

    # Re-installing repairs the prefix, and an extra distribution is removed.
    mlenv.install(prefix, spec=pypi_project, python=BASE_PYTHON)
    assert mlenv.verify(prefix=prefix, spec=pypi_project).ok


def test_verify_reports_extra_and_wrong_version(pypi_project, tmp_path, pypi_server):
    prefix = tmp_path / "env"
    mlenv.install(prefix, spec=pypi_project, python=BASE_PYTHON)
    from mlenv.uvtool import uv_binary

    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run(
        [
            uv_binary(),
            "pip",
            "install",
            "--python",
            str(prefix / "bin/python"),
            "--no-deps",
            "--index-url",
            pypi_server,
            "fixalpha==1.0.0",
            "fixconflict",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    verified = mlenv.verify(prefix=prefix, spec=pypi_project)
    assert not verified.ok
    lines = [str(d) for d in verified.differences]
    assert "pypi: fixalpha is 1.0.0, mlenv.lock says 1.1.0" in lines
    assert any(line.startswith("pypi: extra fixconflict") for line in lines)


def test_install_conda_packages_verified_and_linked(conda_project, tmp_path):
    prefix = tmp_path / "env"
    mlenv.install(prefix, spec=conda_project)
    assert (prefix / "share/mlenv-hello/hello.txt").read_text().strip()
    assert sorted(p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json")) == [
        "libfix",
        "libfix-data",
        "mlenv-hello",
    ]
    assert not (prefix / "CACHEDIR.TAG").exists()
    assert mlenv.verify(prefix=prefix, spec=conda_project).ok
    (prefix / "share/mlenv-hello/hello.txt").unlink()
    lines = [str(d) for d in mlenv.verify(prefix=prefix, spec=conda_project).differences]
    assert any(line.startswith("conda: mlenv-hello") and "hello.txt" in line for line in lines), lines
    (prefix / "conda-meta" / next(p.name for p in (prefix / "conda-meta").glob("libfix-data-*.json"))).unlink()
    lines = [str(d) for d in mlenv.verify(prefix=prefix, spec=conda_project).differences]
    assert "conda: missing libfix-data 1.0.0" in lines


def _reseal_with(project: Path, dest: Path, manager: str, name: str) -> Path:
    lock = read_lock(project / "mlenv.lock")
    for p in lock.packages:
        if p.manager == manager and p.name == name:
            p.sha256 = "0" * 64
    lock.seal()  # a consistent lock whose artifact hash is wrong
    dest.mkdir(parents=True, exist_ok=True)
    lock.write(dest / "mlenv.lock")
    return dest / "mlenv.lock"


@pytest.mark.parametrize("manager,name", [("pypi", "fixalpha"), ("conda", "libfix")])
def test_tampered_sha256_fails_clearly(pypi_project, conda_project, tmp_path, manager, name):
    project = pypi_project if manager == "pypi" else conda_project
    lock_file = _reseal_with(project, tmp_path / "tampered", manager, name)
    prefix = tmp_path / "env"
    with pytest.raises(InstallError) as e:
        mlenv.install(prefix, lock=lock_file, python=BASE_PYTHON)
    one_line(e)
    message = e.value.message
    assert message.startswith("sha256 mismatch for") and name in message and "0" * 64 in message


def test_platform_the_lock_lacks_is_a_clear_error(conda_project, tmp_path):
    with pytest.raises(MlenvError) as e:
        mlenv.install(tmp_path / "env", spec=conda_project, platform="osx-arm64")
    assert "no packages for platform osx-arm64 (it has: linux-64)" in one_line(e)


def _fake_python_310(tmp_path: Path) -> Path:
    other = tmp_path / "python3.10"  # answers the version probe like a Python 3.10 would
    other.write_text("#!/bin/sh\necho 3.10\n")
    other.chmod(0o755)
    return other


def test_wrong_interpreter_version_is_refused(pypi_project, tmp_path):
    with pytest.raises(MlenvError) as e:
        mlenv.install(tmp_path / "env", spec=pypi_project, python=str(_fake_python_310(tmp_path)))
    assert "is Python 3.10 but mlenv.lock was solved for Python 3.11" in one_line(e)
    assert not (tmp_path / "env" / "pyvenv.cfg").exists()


def test_credentials_come_from_the_environment_and_are_not_written(tmp_path, pypi_auth_server, monkeypatch):
    d = tmp_path / "proj"
    index = pypi_auth_server.url.replace("://", "://${IDX_USER}:${IDX_TOKEN}@")
    write(
        d,
        f"""
        [environment]
        name = "inst-auth"
        python = "{sys.version_info.major}.{sys.version_info.minor}"
        [pypi]
        index-url = "{index}"
        dependencies = ["fixalpha==1.1.0"]
        [image]
        base = "{UNRESOLVABLE}"
    """,
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty artifact cache

    def credentials(user: str, token: str) -> None:
        monkeypatch.setenv("IDX_USER", user)
        monkeypatch.setenv("IDX_TOKEN", token)

    credentials(pypi_auth_server.username, pypi_auth_server.password)
    mlenv.lock(d)
    assert pypi_auth_server.password not in (d / "mlenv.lock").read_text()
    prefix = tmp_path / "env"
    credentials("", "")
    with pytest.raises(MlenvError) as e:
        mlenv.install(prefix, spec=d, python=BASE_PYTHON)
    text = one_line(e)
    assert "authentication" in text and "MLENV_INDEX_URL" in text
    credentials(pypi_auth_server.username, pypi_auth_server.password)
    mlenv.install(prefix, spec=d, python=BASE_PYTHON)
    assert mlenv.verify(prefix=prefix, spec=d).ok
    leaked = [p for p in prefix.rglob("*") if p.is_file() and pypi_auth_server.password.encode() in p.read_bytes()]
    assert leaked == []
    artifacts = list((tmp_path / "cache" / "mlenv" / "artifacts" / "sha256").iterdir())
    lock = read_lock(d / "mlenv.lock")
    assert [a.name for a in artifacts] == [p.sha256 for p in lock.for_platform("linux-64", "pypi")]
    assert all(pypi_auth_server.password.encode() not in a.read_bytes() for a in artifacts)


def test_second_install_uses_the_artifact_cache_offline(tmp_path, pypi_server, monkeypatch):
    d = tmp_path / "proj"
    write(
        d,
        f"""
        [environment]
        name = "inst-cache"
        python = "{sys.version_info.major}.{sys.version_info.minor}"
        [pypi]
        index-url = "{pypi_server}"
        dependencies = ["fixbeta"]
        [image]
        base = "{UNRESOLVABLE}"
    """,
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlenv.lock(d)
    files = [p.url.rsplit("/", 1)[-1] for p in read_lock(d / "mlenv.lock").for_platform("linux-64", "pypi")]
    before = len(pypi_server.requests)
    mlenv.install(tmp_path / "a", spec=d, python=BASE_PYTHON)
    fetched = pypi_server.requests[before:]
    assert all(any(f in r for r in fetched) for f in files), fetched
    before = len(pypi_server.requests)
    mlenv.install(tmp_path / "b", spec=d, python=BASE_PYTHON)
    assert pypi_server.requests[before:] == []  # every artifact came from the cache
    assert mlenv.verify(prefix=tmp_path / "b", spec=d).ok


# --- the CLI: what `mlenv install` / `mlenv verify` print and exit with ------------------------------


def test_cli_install_and_verify_print_json_differences_and_exit_codes(pypi_project, tmp_path):
    """--json is the API result's to_json(); verify prints one line per difference and exits 1
    on any; an install error is `error: <message>` (and its hint) and nothing else."""
    prefix = tmp_path / "env"
    proc = cli("install", "--prefix", str(prefix), "--python", BASE_PYTHON, "--json", cwd=pypi_project, check=True)
    summary = json.loads(proc.stdout)
    lock = read_lock(pypi_project / "mlenv.lock")
    assert (summary["pypi"], summary["platform"], summary["content_hash"]) == (2, "linux-64", lock.content_hash)
    assert summary["prefix"] == str(prefix)
    proc = cli("verify", "--prefix", str(prefix), cwd=pypi_project, check=True)
    assert proc.stdout == f"{prefix} matches mlenv.lock {lock.short_hash}\n"

    site = next(prefix.glob("lib/python*/site-packages"))
    shutil.rmtree(next(site.glob("fixalpha-*.dist-info")))
    expected = mlenv.verify(prefix=prefix, spec=pypi_project)
    proc = cli("verify", "--prefix", str(prefix), cwd=pypi_project)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [str(d) for d in expected.differences] == ["pypi: missing fixalpha 1.1.0"]
    assert "1 difference(s) from the lock" in proc.stderr
    proc = cli("verify", "--prefix", str(prefix), "--json", cwd=pypi_project)
    assert proc.returncode == 1 and json.loads(proc.stdout) == expected.to_json()

    python310 = _fake_python_310(tmp_path)
    with pytest.raises(MlenvError) as e:
        mlenv.install(tmp_path / "env2", spec=pypi_project, python=str(python310))
    proc = cli("install", "--prefix", str(tmp_path / "env2"), "--python", str(python310), cwd=pypi_project)
    assert proc.returncode == e.value.exit_code != 0
    # after the progress lines: the message and its hint, and nothing else
    assert proc.stderr.endswith(f"\nerror: {e.value}\n") and "Traceback" not in proc.stderr


def test_runtime_imports_only_the_stdlib_and_itself():
    """mlenv.runtime is shipped whole into build steps: importing every module of it
    pulls in nothing of mlenv outside it and nothing outside the standard library."""
    code = (
        "import sys, pkgutil, importlib, mlenv.runtime as r\n"
        "for m in pkgutil.iter_modules(r.__path__): importlib.import_module('mlenv.runtime.' + m.name)\n"
        "mine = sorted(m for m in sys.modules if m.startswith('mlenv') and m != 'mlenv' and not m.startswith('mlenv.runtime'))\n"
        "std = set(sys.stdlib_module_names)\n"
        "other = sorted(m for m in sys.modules if m.split('.')[0] not in std and not m.startswith('mlenv') and m.split('.')[0] not in ('_distutils_hack', '__main__') and not m.startswith('__editable__'))\n"
        "print(mine, other)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []", out.stdout
