"""`mlenv install` / `mlenv verify` on the host (no Docker): a lock built from the
fixture conda channel and the fixture PyPI index, installed into a tmp prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlenv.lockfile import read_lock

# A base image the lock cannot pin (connection refused at once): these tests build nothing.
UNRESOLVABLE = "127.0.0.1:9/mlenv-test/none:1"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def mlenv(*args, cwd, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True, env=full_env
    )


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


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
    ok(mlenv("lock", cwd=d))
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
    ok(mlenv("lock", "--offline", cwd=d))
    return d


def test_install_pypi_into_venv_then_verify_clean(pypi_project, tmp_path):
    prefix = tmp_path / "env"
    proc = ok(mlenv("install", "--prefix", str(prefix), "--python", BASE_PYTHON, "--json", cwd=pypi_project))
    summary = json.loads(proc.stdout)
    assert summary["pypi"] == 2 and summary["platform"] == "linux-64"
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
    proc = ok(mlenv("verify", "--prefix", str(prefix), cwd=pypi_project))
    assert "matches" in proc.stdout

    # A removed file and a removed distribution are both reported; exit 1.
    site = next(prefix.glob("lib/python*/site-packages"))
    (site / "fixbeta" / "__init__.py").unlink()
    shutil.rmtree(next(site.glob("fixalpha-*.dist-info")))
    proc = mlenv("verify", "--prefix", str(prefix), "--json", cwd=pypi_project)
    assert proc.returncode == 1
    diffs = {(d["name"], d["kind"]) for d in json.loads(proc.stdout)["differences"]}
    assert diffs == {("fixalpha", "missing"), ("fixbeta", "files")}

    # Re-installing repairs the prefix, and an extra distribution is removed.
    ok(mlenv("install", "--prefix", str(prefix), "--python", BASE_PYTHON, cwd=pypi_project))
    ok(mlenv("verify", "--prefix", str(prefix), cwd=pypi_project))


def test_verify_reports_extra_and_wrong_version(pypi_project, tmp_path, pypi_server):
    prefix = tmp_path / "env"
    ok(mlenv("install", "--prefix", str(prefix), "--python", BASE_PYTHON, cwd=pypi_project))
    from mlenv.solve.pypi import uv_binary

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
    proc = mlenv("verify", "--prefix", str(prefix), cwd=pypi_project)
    assert proc.returncode == 1
    assert "pypi: fixalpha is 1.0.0, mlenv.lock says 1.1.0" in proc.stdout
    assert "pypi: extra fixconflict" in proc.stdout


def test_install_conda_packages_verified_and_linked(conda_project, tmp_path):
    prefix = tmp_path / "env"
    ok(mlenv("install", "--prefix", str(prefix), cwd=conda_project))
    assert (prefix / "share/mlenv-hello/hello.txt").read_text().strip()
    assert sorted(p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json")) == [
        "libfix",
        "libfix-data",
        "mlenv-hello",
    ]
    assert not (prefix / "CACHEDIR.TAG").exists()
    ok(mlenv("verify", "--prefix", str(prefix), cwd=conda_project))
    (prefix / "share/mlenv-hello/hello.txt").unlink()
    proc = mlenv("verify", "--prefix", str(prefix), cwd=conda_project)
    assert proc.returncode == 1 and "conda: mlenv-hello" in proc.stdout and "hello.txt" in proc.stdout
    (prefix / "conda-meta" / next(p.name for p in (prefix / "conda-meta").glob("libfix-data-*.json"))).unlink()
    proc = mlenv("verify", "--prefix", str(prefix), cwd=conda_project)
    assert "conda: missing libfix-data 1.0.0" in proc.stdout


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
    proc = mlenv("install", "--lock", str(lock_file), "--prefix", str(prefix), "--python", BASE_PYTHON, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    first = next(ln for ln in proc.stderr.splitlines() if ln.startswith("error:"))
    assert first.startswith("error: sha256 mismatch for") and name in first and "0" * 64 in first


def test_platform_the_lock_lacks_is_a_clear_error(conda_project, tmp_path):
    proc = mlenv("install", "--prefix", str(tmp_path / "env"), "--platform", "osx-arm64", cwd=conda_project)
    assert proc.returncode != 0
    assert "no packages for platform osx-arm64 (it has: linux-64)" in proc.stderr


def test_wrong_interpreter_version_is_refused(pypi_project, tmp_path):
    other = tmp_path / "python3.10"  # answers the version probe like a Python 3.10 would
    other.write_text("#!/bin/sh\necho 3.10\n")
    other.chmod(0o755)
    proc = mlenv("install", "--prefix", str(tmp_path / "env"), "--python", other, cwd=pypi_project)
    assert proc.returncode != 0 and "is Python 3.10 but mlenv.lock was solved for Python 3.11" in proc.stderr
    assert not (tmp_path / "env" / "pyvenv.cfg").exists()


def test_credentials_come_from_the_environment_and_are_not_written(tmp_path, pypi_auth_server):
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
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # an empty artifact cache
    creds = {"IDX_USER": pypi_auth_server.username, "IDX_TOKEN": pypi_auth_server.password, **cache}
    ok(mlenv("lock", cwd=d, env=creds))
    assert pypi_auth_server.password not in (d / "mlenv.lock").read_text()
    prefix = tmp_path / "env"
    proc = mlenv(
        "install",
        "--prefix",
        str(prefix),
        "--python",
        BASE_PYTHON,
        cwd=d,
        env={"IDX_USER": "", "IDX_TOKEN": "", **cache},
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "authentication" in proc.stderr and "MLENV_INDEX_URL" in proc.stderr
    ok(mlenv("install", "--prefix", str(prefix), "--python", BASE_PYTHON, cwd=d, env=creds))
    ok(mlenv("verify", "--prefix", str(prefix), cwd=d, env=creds))
    leaked = [p for p in prefix.rglob("*") if p.is_file() and pypi_auth_server.password.encode() in p.read_bytes()]
    assert leaked == []
    artifacts = list((tmp_path / "cache" / "mlenv" / "artifacts" / "sha256").iterdir())
    lock = read_lock(d / "mlenv.lock")
    assert [a.name for a in artifacts] == [p.sha256 for p in lock.for_platform("linux-64", "pypi")]
    assert all(pypi_auth_server.password.encode() not in a.read_bytes() for a in artifacts)


def test_second_install_uses_the_artifact_cache_offline(tmp_path, pypi_server):
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
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ok(mlenv("lock", cwd=d, env=cache))
    files = [p.url.rsplit("/", 1)[-1] for p in read_lock(d / "mlenv.lock").for_platform("linux-64", "pypi")]
    before = len(pypi_server.requests)
    ok(mlenv("install", "--prefix", str(tmp_path / "a"), "--python", BASE_PYTHON, cwd=d, env=cache))
    fetched = pypi_server.requests[before:]
    assert all(any(f in r for r in fetched) for f in files), fetched
    before = len(pypi_server.requests)
    ok(mlenv("install", "--prefix", str(tmp_path / "b"), "--python", BASE_PYTHON, cwd=d, env=cache))
    assert pypi_server.requests[before:] == []  # every artifact came from the cache
    ok(mlenv("verify", "--prefix", str(tmp_path / "b"), cwd=d))


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
