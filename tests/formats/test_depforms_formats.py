"""Issue 13, formats: git, URL, find-links, local and constraint forms are carried by the
importers and written back by the exporters wherever the target format can hold them;
checked with the real servers of plugin_sources.py and the real peers (uv, conda-lock).

What is carried and written is the library's behaviour: the API is called in-process
(`mlenv.init`, `mlenv.lock`, `mlenv.export`); a refusal is a `pytest.raises` with its one-line
message (tests/formats/test_formats.py has the CLI tests of init and export)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest
from refusals import one_line

import mlenv
from mlenv.errors import MlenvError
from mlenv.lockfile import read_lock


@pytest.fixture(autouse=True)
def _no_ca_bundle(monkeypatch):
    """The local git and wheel servers speak plain http: no CA bundle from the caller's environment."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)


def notes_of(result) -> str:
    """An import's or export's notes, one a line (what the CLI prints on stderr)."""
    return "\n".join(result.notes)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def uv() -> str:
    from mlenv.uvtool import uv_binary

    return uv_binary()


def venv(path: Path) -> Path:
    subprocess.run([uv(), "venv", "-q", "--python", "/usr/bin/python3", str(path)], check=True)
    return path / "bin" / "python"


@pytest.fixture
def locked_forms(make_project, git_tools, wheel_site):
    d = make_project(
        [git_tools.requirement(), "features @ ./libs/features", f"urlpkg @ {wheel_site.wheel_url}", "flpkg"],
        extra=f'find-links = ["{wheel_site.find_links}"]\n',
    )
    mlenv.lock(d)
    return d


def test_requirements_export_installs_with_uv_and_checks_hashes(locked_forms, git_tools, wheel_site, tmp_path):
    d = locked_forms
    lock = read_lock(d / "mlenv.lock")
    result = mlenv.export("requirements", spec=d, output=d / "requirements.txt")
    text = (d / "requirements.txt").read_text()
    commit = git_tools.commit
    assert f"teamtools @ git+{git_tools.repo_url}@{commit}#subdirectory=tools\n" in text
    assert "features @ ./libs/features\n" in text
    assert f"urlpkg @ {wheel_site.wheel_url} \\\n    --hash=sha256:{wheel_site.wheel_sha256}" in text
    assert f"--find-links {wheel_site.find_links}" in text and "uv pip install --no-deps" in text
    assert "without --hash" in notes_of(result)
    python = venv(tmp_path / "v")
    ok(subprocess.run([uv(), "pip", "install", "--python", str(python), "--no-deps", "-r", "requirements.txt"],
                      cwd=d, capture_output=True, text=True))  # fmt: skip
    out = subprocess.run([str(python), "-c", "import teamtools, features, urlpkg, flpkg; print(flpkg.__version__)"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "2.0.0"
    # a wrong hash on the URL line is refused by uv
    bad = text.replace(wheel_site.wheel_sha256, "0" * 64)
    (d / "bad.txt").write_text(bad)
    proc = subprocess.run([uv(), "pip", "install", "--python", str(venv(tmp_path / "v2")), "--no-deps", "-r", "bad.txt"],
                          cwd=d, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0 and "hash" in proc.stderr.lower()
    # the round trip: import the export, lock, same environment
    other = tmp_path / "again"
    other.mkdir()
    import shutil

    shutil.copytree(d / "libs", other / "libs")
    shutil.copy(d / "requirements.txt", other / "requirements.txt")
    mlenv.init(other / "mlenv.toml", from_file=other / "requirements.txt", name="again")
    t = other / "mlenv.toml"  # the export's header carries the base image; the test base needs its interpreter
    t.write_text(t.read_text() + '\n[image]\npython = "/usr/bin/python3"\n' if "[image]" not in t.read_text() else
                 t.read_text().replace("[image]\n", '[image]\npython = "/usr/bin/python3"\n'))  # fmt: skip
    mlenv.lock(other)
    assert read_lock(other / "mlenv.lock").content_hash == lock.content_hash


def test_pylock_export_carries_vcs_directory_and_archive(locked_forms, git_tools, wheel_site, tmp_path):
    d = locked_forms
    mlenv.export("pylock", spec=d, output=d / "pylock.toml")
    data = tomllib.loads((d / "pylock.toml").read_text())
    by_name = {p["name"]: p for p in data["packages"]}
    vcs = by_name["teamtools"]["vcs"]
    assert vcs == {"type": "git", "url": git_tools.repo_url, "requested-revision": "v1.0",
                   "commit-id": git_tools.commit, "subdirectory": "tools"}  # fmt: skip
    assert by_name["features"]["directory"] == {"path": "libs/features"}
    assert by_name["urlpkg"]["archive"]["url"] == wheel_site.wheel_url
    assert by_name["urlpkg"]["archive"]["hashes"] == {"sha256": wheel_site.wheel_sha256}
    python = venv(tmp_path / "v")
    ok(subprocess.run([uv(), "pip", "install", "--python", str(python), "-r", "pylock.toml"], cwd=d,
                      capture_output=True, text=True))  # fmt: skip
    out = subprocess.run([str(python), "-c", "import teamtools, features, urlpkg, flpkg"], capture_output=True)
    assert out.returncode == 0, out.stderr
    # imported back: the git entry pinned to its commit, the directory and the archive as they were
    other = d / "imported"
    other.mkdir()
    mlenv.init(other / "mlenv.toml", from_file=d / "pylock.toml", name="imported")
    deps = tomllib.loads((other / "mlenv.toml").read_text())["pypi"]["dependencies"]
    assert f"teamtools @ git+{git_tools.repo_url}@{git_tools.commit}#subdirectory=tools" in deps
    assert f"urlpkg @ {wheel_site.wheel_url}#sha256={wheel_site.wheel_sha256}" in deps


def test_environment_yml_export_has_the_forms_in_its_pip_section(locked_forms, git_tools, wheel_site, tmp_path):
    from conda_lock.src_parser.environment_yaml import parse_environment_file

    d = locked_forms
    mlenv.export("environment-yml", spec=d, output=d / "environment.yml")
    import yaml

    data = yaml.safe_load((d / "environment.yml").read_text())
    pip = next(x["pip"] for x in data["dependencies"] if isinstance(x, dict))
    assert f"--find-links {wheel_site.find_links}" in pip
    assert f"teamtools @ git+{git_tools.repo_url}@{git_tools.commit}#subdirectory=tools" in pip
    assert "features @ ./libs/features" in pip and f"urlpkg @ {wheel_site.wheel_url}" in pip
    # conda-lock's own parser (which takes requirements only in the pip section, no options) accepts the rest
    path = tmp_path / "environment.yml"
    path.write_text("\n".join(ln for ln in (d / "environment.yml").read_text().splitlines() if "- --" not in ln))
    mapping = tmp_path / "pypi-mapping.json"
    mapping.write_text("{}")
    parsed = parse_environment_file(path, ["linux-64"], mapping_url=str(mapping))
    names = {dep.name for dep in parsed.dependencies["linux-64"]}
    assert {"teamtools", "features", "urlpkg", "flpkg"} <= names


def test_dockerfile_export_holds_urls_but_not_built_packages(make_project, wheel_site, locked_forms):
    d = make_project([f"urlpkg @ {wheel_site.wheel_url}", "flpkg"], name="df",
                     extra=f'find-links = ["{wheel_site.find_links}"]\n')  # fmt: skip
    mlenv.lock(d)
    text = mlenv.export("dockerfile", spec=d).text
    assert f"urlpkg @ {wheel_site.wheel_url} --hash=sha256:{wheel_site.wheel_sha256}" in text
    assert f"--find-links {wheel_site.find_links}" in text
    with pytest.raises(MlenvError) as e:
        mlenv.export("dockerfile", spec=locked_forms)
    err = one_line(e, code=2)
    assert "cannot install the packages mlenv built from git or a local path" in err and "features, teamtools" in err


# --- imports ------------------------------------------------------------------------------------


def test_import_requirements_with_every_form_locks(tmp_path, git_tools, wheel_site, pypi_server):
    from plugin_sources import package_files

    d = tmp_path / "proj"
    for rel, text in package_files("features", "0.1.0", deps=["fixalpha>=1"]).items():
        (d / "libs" / "features" / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / "libs" / "features" / rel).write_text(text)
    (d / "constraints.txt").write_text("fixalpha<2\n")
    (d / "requirements.txt").write_text(
        textwrap.dedent(f"""\
        --index-url {pypi_server}
        --find-links {wheel_site.find_links}
        -c constraints.txt
        -e ./libs/features
        git+{git_tools.repo_url}@v1.0#egg=teamtools&subdirectory=tools
        {wheel_site.wheel_url}
        flpkg
        """)
    )
    result = mlenv.init(d / "mlenv.toml", from_file=d / "requirements.txt", name="imp")
    spec = tomllib.loads((d / "mlenv.toml").read_text())
    assert spec["pypi"]["dependencies"] == [
        "features @ ./libs/features", f"teamtools @ git+{git_tools.repo_url}@v1.0#subdirectory=tools",
        f"urlpkg @ {wheel_site.wheel_url}", "flpkg"]  # fmt: skip
    assert spec["pypi"]["find-links"] == [wheel_site.find_links] and spec["pypi"]["constraints"] == ["fixalpha<2"]
    assert "requirements.txt:4:" in notes_of(result) and "editable" in notes_of(result)
    t = d / "mlenv.toml"
    registry = os.environ.get("MLENV_TEST_REGISTRY")
    base = f"{registry}/mlenv-test/debian-python:bookworm" if registry else "mlenv-test/debian-python:bookworm"
    t.write_text(t.read_text() + f'\n[image]\nbase = "{base}"\npython = "/usr/bin/python3"\n')
    mlenv.lock(d)
    assert {p.name for p in read_lock(d / "mlenv.lock").packages} == {"features", "teamtools", "urlpkg", "flpkg",
                                                                        "fixalpha"}  # fmt: skip


def test_import_pyproject_project_extras_and_groups(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    (d / "pyproject.toml").write_text(
        textwrap.dedent("""\
        [build-system]
        requires = ["uv_build>=0.8,<0.30"]
        build-backend = "uv_build"

        [project]
        name = "train"
        version = "0.1.0"
        requires-python = ">=3.11"
        dependencies = ["fixalpha>=1"]

        [project.optional-dependencies]
        gpu = ["fixbeta"]
        docs = ["fixnum"]

        [dependency-groups]
        lint = ["fixplat"]
        dev = ["fixconflict", {include-group = "lint"}]
        """)
    )
    (d / "src" / "train").mkdir(parents=True)
    (d / "src" / "train" / "__init__.py").write_text("")
    result = mlenv.init(d / "mlenv.toml", from_file=d / "pyproject.toml", extras=["gpu"], groups=["dev"])
    spec = tomllib.loads((d / "mlenv.toml").read_text())
    assert spec["environment"]["name"] == "train"
    assert spec["pypi"]["dependencies"] == ["train[gpu] @ .", "fixconflict", "fixplat"]
    assert "[docs]" in notes_of(result) and "--extra docs" in notes_of(result)
    # without --extra/--group: the project alone, the rest named as opt-in
    mlenv.init(d / "mlenv.toml", from_file=d / "pyproject.toml", force=True)
    spec = tomllib.loads((d / "mlenv.toml").read_text())
    assert spec["pypi"]["dependencies"] == ["train @ ."]
    with pytest.raises(MlenvError) as e:
        mlenv.init(d / "mlenv.toml", from_file=d / "pyproject.toml", force=True, extras=["nope"])
    err = one_line(e, code=2)
    assert "no optional dependencies 'nope'" in err and "gpu" in err


def test_import_pyproject_without_build_system_keeps_dependencies(tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\ndependencies = ["fixalpha"]\n')
    result = mlenv.init(d / "mlenv.toml", from_file=d / "pyproject.toml")
    assert tomllib.loads((d / "mlenv.toml").read_text())["pypi"]["dependencies"] == ["fixalpha"]
    assert "no [build-system]" in notes_of(result)


def test_import_azureml_uses_its_own_name(tmp_path):
    (tmp_path / "env.yml").write_text(
        textwrap.dedent("""\
        $schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
        name: Fraud Train
        image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
        conda_file:
          channels: [conda-forge]
          dependencies: [python=3.10, pip, {pip: [scikit-learn]}]
        """)
    )
    work = tmp_path / "some-dir"
    work.mkdir()
    result = mlenv.init(work / "mlenv.toml", from_file=tmp_path / "env.yml")
    assert tomllib.loads((work / "mlenv.toml").read_text())["environment"]["name"] == "fraud-train"
    assert "became fraud-train" in notes_of(result)
    mlenv.init(work / "mlenv.toml", from_file=tmp_path / "env.yml", name="mine", force=True)
    assert tomllib.loads((work / "mlenv.toml").read_text())["environment"]["name"] == "mine"


def test_import_conda_with_pip_but_no_python(tmp_path):
    (tmp_path / "environment.yml").write_text(
        textwrap.dedent("""\
        name: research
        channels: [conda-forge]
        dependencies:
          - numpy
          - pip:
            - torch==2.4.0
        """)
    )
    work = tmp_path / "w"
    work.mkdir()
    result = mlenv.init(work / "mlenv.toml", from_file=tmp_path / "environment.yml")
    spec = tomllib.loads((work / "mlenv.toml").read_text())
    assert spec["environment"]["python"] == "3.11" and spec["environment"]["name"] == "research"
    assert "lists none; python 3.11 assumed" in notes_of(result) and "mlenv.toml:" not in notes_of(result)


def test_import_lines_that_cannot_be_carried_get_a_note(tmp_path):
    (tmp_path / "outside").mkdir()
    work = tmp_path / "w"
    work.mkdir()
    (work / "requirements.txt").write_text(
        textwrap.dedent("""\
        -e ../outside
        hg+https://example.org/repo#egg=x
        git+https://example.org/norepo.git
        ./missing-dir
        """)
    )
    notes = mlenv.init(work / "mlenv.toml", from_file=work / "requirements.txt").notes
    assert any("requirements.txt:1:" in n and "outside the project" in n for n in notes)
    assert any("requirements.txt:2:" in n and "only git" in n for n in notes)
    assert any("requirements.txt:3:" in n and "without a package name" in n for n in notes)
    assert any("requirements.txt:4:" in n and "does not exist" in n for n in notes)
    assert (
        json.loads(json.dumps(tomllib.loads((work / "mlenv.toml").read_text()).get("pypi", {}).get("dependencies", [])))
        == []
    )
