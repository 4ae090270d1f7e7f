"""User settings (mlenv.settings): ca-bundle, registry and builder from
<config dir>/mlenv/config.toml (MLENV_CONFIG here), below options and env vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOST_CA = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"


def mlenv(*args, cwd, env):
    drop = ("MLENV_CA_BUNDLE", "MLENV_REGISTRY", "MLENV_BUILDER")
    full = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True, env={**full, **env}
    )


def project(d: Path, index: str, deps: str = '["fixbeta"]') -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        '[environment]\nname = "settingsdemo"\npython = "3.11"\nplatforms = ["linux-64"]\n'
        + (f'[pypi]\nindex-url = "{index}"\n' if index else "[pypi]\n")
        + f"dependencies = {deps}\n"
        '[image]\nbase = "python:3.11-slim"\npython = "/usr/bin/python3"\n'
    )
    return d


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    return path, {"MLENV_CONFIG": str(path), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_builder_and_registry_settings_and_their_precedence(tmp_path, config, pypi_server):
    path, env = config
    d = project(tmp_path / "p", pypi_server)
    assert mlenv("lock", "-q", cwd=d, env=env).returncode == 0
    path.write_text(f'builder = "classic"\nregistry = "{tmp_path / "team-registry"}"\n')
    out = mlenv("build", "--json", "--dockerfile-only", str(tmp_path / "ctx"), cwd=d, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["builder"] == "classic" and " AS " not in (tmp_path / "ctx/Dockerfile").read_text()
    # the registry setting: register and list go to that directory
    reg = mlenv("register", "--no-image", "--json", cwd=d, env=env)
    assert reg.returncode == 0, reg.stderr
    assert (tmp_path / "team-registry").is_dir()
    listed = json.loads(mlenv("versions", "settingsdemo", "--json", cwd=d, env=env).stdout)
    assert listed["registry"] == str(tmp_path / "team-registry") and len(listed["versions"]) == 1
    # an option wins over the file: another registry has nothing
    other = mlenv("versions", "settingsdemo", "--json", "--registry", str(tmp_path / "other"), cwd=d, env=env)
    assert other.returncode != 0 and "settingsdemo" in other.stderr
    # so does the environment variable
    proc = mlenv(
        "build",
        "--dockerfile-only",
        str(tmp_path / "ctx2"),
        cwd=d,
        env={**env, "MLENV_BUILDER": "buildkit", "PATH": str(tmp_path)},
    )  # no docker CLI: buildkit was asked for and cannot be had
    assert proc.returncode != 0 and "the buildkit builder cannot run here" in proc.stderr


def test_ca_bundle_setting_is_relative_to_the_file_and_checked(tmp_path, config, pypi_server):
    path, env = config
    d = project(tmp_path / "p", pypi_server)
    assert mlenv("lock", "-q", cwd=d, env=env).returncode == 0
    path.write_text('ca-bundle = "certs/corp.pem"\n')
    proc = mlenv("install", "--prefix", str(tmp_path / "env"), cwd=d, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"CA bundle {path.parent / 'certs/corp.pem'}: no such file" in proc.stderr


def test_bad_settings_file_names_file_and_line(tmp_path, config, pypi_server):
    path, env = config
    d = project(tmp_path / "p", pypi_server)
    assert mlenv("lock", "-q", cwd=d, env=env).returncode == 0
    path.write_text('# team settings\nregistry = "oci://127.0.0.1:5000/ml"\ncabundle = "/x.pem"\n')
    for args in (("install", "--prefix", str(tmp_path / "env")), ("lock", "--upgrade")):
        proc = mlenv(*args, cwd=d, env=env)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert f"{path}:3: unknown setting 'cabundle'" in proc.stderr and "ca-bundle" in proc.stderr
    path.write_text('builder = "no such; builder"\n')
    proc = mlenv("build", "--dockerfile-only", str(tmp_path / "ctx"), cwd=d, env=env)
    assert proc.returncode != 0 and f"{path}:1: builder must be a builder's name" in proc.stderr
    path.write_text('builder = "kaniko"\n')  # a name: which builders exist is the builder registry's to say
    proc = mlenv("build", "--dockerfile-only", str(tmp_path / "ctx"), cwd=d, env=env)
    assert proc.returncode != 0 and "unknown builder 'kaniko'" in proc.stderr and "daemonless" in proc.stderr
    assert "Traceback" not in proc.stderr
    path.write_text("registry = [\n")
    proc = mlenv("versions", "x", cwd=d, env=env)
    assert proc.returncode != 0 and "not valid TOML" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.network
def test_ca_bundle_setting_is_what_downloads_trust(tmp_path, config):
    """Real PyPI through this machine's TLS-intercepting proxy: with SSL_CERT_FILE and the
    system store out of the way, the setting alone decides whether downloads verify."""
    path, env = config
    d = project(tmp_path / "p", "", '["six==1.16.0"]')
    assert mlenv("lock", "-q", cwd=d, env=env).returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    no_system = {**env, "SSL_CERT_FILE": str(empty / "none.pem"), "SSL_CERT_DIR": str(empty)}
    # a valid PEM that does not sign the proxy's certificates: refused
    wrong = tmp_path / "conf" / "wrong.pem"
    wrong.write_text(Path(HOST_CA).read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    path.write_text('ca-bundle = "wrong.pem"\n')
    proc = mlenv("install", "--prefix", str(tmp_path / "env1"), cwd=d, env=no_system)
    assert proc.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in proc.stderr, proc.stderr
    path.write_text(f'ca-bundle = "{HOST_CA}"\n')
    proc = mlenv("install", "--prefix", str(tmp_path / "env2"), cwd=d, env=no_system)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "env2").glob("lib/python3*/site-packages/six.py"))
