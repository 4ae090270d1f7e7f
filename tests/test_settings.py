"""User settings (mlenv.settings): ca-bundle, registry and builder from
<config dir>/mlenv/config.toml (MLENV_CONFIG here), below arguments and env vars.
The precedence is the library's (mlenv.api.options.resolve), tested in-process; one
test runs the command line to prove an option and an env var reach it the same way."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_run import mlenv as run_cli
from refusals import mlenv_error

import mlenv
from mlenv import settings

HOST_CA = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"


def project(d: Path, index: str, deps: str = '["fixbeta"]') -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        '[environment]\nname = "settingsdemo"\npython = "3.11"\nplatforms = ["linux-64"]\n'
        + (f'[pypi]\nindex-url = "{index}"\n' if index else "[pypi]\n")
        + f"dependencies = {deps}\n"
        '[image]\nbase = "python:3.11-slim"\npython = "/usr/bin/python3"\n'
    )
    return d


def write_settings(path: Path, text: str) -> None:
    """Write the settings file. A process reads it once (mlenv.settings keeps what it read
    per path): a test that edits it makes the process read it again, as a new command would."""
    path.write_text(text)
    settings._loaded.clear()


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The settings file (MLENV_CONFIG, absent until written), an empty cache, and none of the
    environment variables that would win over the file."""
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    for var in ("MLENV_CA_BUNDLE", "MLENV_REGISTRY", "MLENV_BUILDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLENV_CONFIG", str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings._loaded.clear()
    yield path
    settings._loaded.clear()


def test_builder_and_registry_settings_and_their_precedence(tmp_path, config, pypi_server, monkeypatch):
    path = config
    d = project(tmp_path / "p", pypi_server)
    mlenv.lock(d)
    write_settings(path, f'builder = "classic"\nregistry = "{tmp_path / "team-registry"}"\n')
    image = mlenv.build(d, dockerfile_only=tmp_path / "ctx")
    assert image.builder == "classic" and " AS " not in (tmp_path / "ctx/Dockerfile").read_text()
    # the registry setting: register and list go to that directory
    reg = mlenv.register(d, image=False)
    assert reg.registry == str(tmp_path / "team-registry") and reg.created
    assert (tmp_path / "team-registry").is_dir()
    listed = mlenv.versions("settingsdemo")
    assert listed.registry == str(tmp_path / "team-registry") and len(listed.versions) == 1
    # an argument wins over the file: another registry has nothing
    with pytest.raises(mlenv.MlenvError) as e:
        mlenv.versions("settingsdemo", registry=str(tmp_path / "other"))
    assert "settingsdemo" in str(e.value)
    # so does the environment variable
    monkeypatch.setenv("MLENV_BUILDER", "buildkit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI: buildkit was asked for and cannot be had
    with mlenv_error() as e:
        mlenv.build(d, dockerfile_only=tmp_path / "ctx2")
    assert "the buildkit builder cannot run here" in str(e.value)
    # and an argument wins over the environment variable
    assert mlenv.build(d, dockerfile_only=tmp_path / "ctx3", builder="classic").builder == "classic"


def test_cli_option_beats_env_var_beats_settings(tmp_path, config, pypi_server):
    """The command line hands its options and the environment to the same rule:
    --registry > MLENV_REGISTRY > the file; --builder > MLENV_BUILDER."""
    path = config
    d = project(tmp_path / "p", pypi_server)
    team, other = tmp_path / "team-registry", tmp_path / "other"
    mlenv.lock(d)
    mlenv.register(d, registry=str(team), image=False)
    write_settings(path, f'registry = "{team}"\n')
    listed = json.loads(run_cli("versions", "settingsdemo", "--json", cwd=d, check=True).stdout)
    assert listed["registry"] == str(team) and len(listed["versions"]) == 1
    proc = run_cli("versions", "settingsdemo", "--json", cwd=d, env={"MLENV_REGISTRY": str(other)})
    assert proc.returncode != 0 and "settingsdemo" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("versions", "settingsdemo", "--json", "--registry", str(team), cwd=d,
                   env={"MLENV_REGISTRY": str(other)}, check=True)  # fmt: skip
    assert json.loads(proc.stdout)["registry"] == str(team)
    proc = run_cli("build", "--json", "--builder", "classic", "--dockerfile-only", str(tmp_path / "ctx"), cwd=d,
                   env={"MLENV_BUILDER": "buildkit", "PATH": str(tmp_path)}, check=True)  # fmt: skip
    assert json.loads(proc.stdout)["builder"] == "classic"


def test_ca_bundle_setting_is_relative_to_the_file_and_checked(tmp_path, config, pypi_server):
    path = config
    d = project(tmp_path / "p", pypi_server)
    mlenv.lock(d)
    write_settings(path, 'ca-bundle = "certs/corp.pem"\n')
    with mlenv_error() as e:
        mlenv.install(tmp_path / "env", spec=d)
    assert f"CA bundle {path.parent / 'certs/corp.pem'}: no such file" in str(e.value)
    assert not (tmp_path / "env").exists()


def test_bad_settings_file_names_file_and_line(tmp_path, config, pypi_server):
    path = config
    d = project(tmp_path / "p", pypi_server)
    mlenv.lock(d)
    write_settings(path, '# team settings\nregistry = "oci://127.0.0.1:5000/ml"\ncabundle = "/x.pem"\n')
    for call in (lambda: mlenv.install(tmp_path / "env", spec=d), lambda: mlenv.lock(d, upgrade=True)):
        with mlenv_error(settings.SettingsError) as e:
            call()
        assert f"{path}:3: unknown setting 'cabundle'" in str(e.value) and "ca-bundle" in str(e.value)
    write_settings(path, 'builder = "no such; builder"\n')
    with mlenv_error(settings.SettingsError) as e:
        mlenv.build(d, dockerfile_only=tmp_path / "ctx")
    assert f"{path}:1: builder must be a builder's name" in str(e.value)
    write_settings(path, 'builder = "kaniko"\n')  # a name: which builders exist is the builder registry's to say
    with mlenv_error() as e:
        mlenv.build(d, dockerfile_only=tmp_path / "ctx")
    assert "unknown builder 'kaniko'" in str(e.value) and "daemonless" in str(e.value)
    write_settings(path, "registry = [\n")
    with mlenv_error(settings.SettingsError) as e:
        mlenv.versions("x")
    assert "not valid TOML" in str(e.value)


@pytest.mark.network
def test_ca_bundle_setting_is_what_downloads_trust(tmp_path, config, monkeypatch):
    """Real PyPI through this machine's TLS-intercepting proxy: with SSL_CERT_FILE and the
    system store out of the way, the setting alone decides whether downloads verify."""
    path = config
    d = project(tmp_path / "p", "", '["six==1.16.0"]')
    mlenv.lock(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(empty / "none.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    # a valid PEM that does not sign the proxy's certificates: refused
    wrong = tmp_path / "conf" / "wrong.pem"
    wrong.write_text(Path(HOST_CA).read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    write_settings(path, 'ca-bundle = "wrong.pem"\n')
    with pytest.raises(mlenv.MlenvError) as e:
        mlenv.install(tmp_path / "env1", spec=d)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value), str(e.value)
    write_settings(path, f'ca-bundle = "{HOST_CA}"\n')
    mlenv.install(tmp_path / "env2", spec=d)
    assert list((tmp_path / "env2").glob("lib/python3*/site-packages/six.py"))
