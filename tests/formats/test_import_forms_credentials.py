"""Importers and literal credentials (issue 13 review): a requirement line's literal
userinfo never reaches mlenv.toml, a note or an error; `${VAR}` userinfo is kept. Also the
git / URL / path forms of an environment.yml `pip:` list, a pylock `directory` entry, and the
fallback error when an import gives a spec mlenv refuses. No network: nothing is locked.

The imports run in-process (`mlenv.init`): the notes are checked as the API returns them,
before the CLI's scrubber, so a secret in a note fails here even where the CLI would mask it."""

from __future__ import annotations

import json
import os
import textwrap
import tomllib
from pathlib import Path

import pytest
from refusals import one_line

import mlenv
from mlenv.errors import SpecError

SECRET, TOKEN = "Pw-s3cr3t-91f2", "Tok-0a7be5c4d2"
CREDENTIALED = {
    "url": f"a @ https://alice:{SECRET}@files.example.org/a-1.0-py3-none-any.whl",
    "git": f"tools @ git+https://{TOKEN}@git.example.org/team/tools.git@v1#subdirectory=tools",
}
KEPT = "b @ https://${FILES_USER}:${FILES_TOKEN}@files.example.org/b-1.0-py3-none-any.whl"


@pytest.fixture(autouse=True)
def _no_mlenv_settings(monkeypatch):
    """No MLENV_* setting of the caller's environment reaches the import."""
    for key in [k for k in os.environ if k.startswith("MLENV_")]:
        monkeypatch.delenv(key)


def imported(cwd: Path, source: str) -> tuple[dict, str, str]:
    """(the written spec, its text, its notes one a line and the result's message: what
    `mlenv init --from source --name imp` prints) of a successful import into cwd."""
    result = mlenv.init(cwd / "mlenv.toml", from_file=cwd / source, name="imp")
    text = (cwd / "mlenv.toml").read_text()
    output = "".join(f"note: {n}\n" for n in result.notes) + result.message() + "\n"
    return tomllib.loads(text), text, output


def no_secret(*texts: str) -> None:
    for t in texts:
        assert SECRET not in t and TOKEN not in t and "alice" not in t


def credential_notes(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("note:") and "literal credential" in ln]


def write_requirements(d: Path) -> str:
    (d / "requirements.txt").write_text("\n".join([CREDENTIALED["url"], f"git+https://{TOKEN}@git.example.org/r.git@v2#egg=r",
                                                   CREDENTIALED["git"], KEPT]) + "\n")  # fmt: skip
    return "requirements.txt"


def write_environment_yml(d: Path) -> str:
    (d / "environment.yml").write_text(
        textwrap.dedent(f"""\
        name: research
        channels: [conda-forge]
        dependencies:
          - python=3.11
          - pip
          - pip:
            - "{CREDENTIALED["url"]}"
            - "{CREDENTIALED["git"]}"
            - "{KEPT}"
        """)
    )
    return "environment.yml"


def write_azureml(d: Path) -> str:
    (d / "env.yml").write_text(
        textwrap.dedent(f"""\
        $schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
        name: fraud
        image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
        conda_file:
          channels: [conda-forge]
          dependencies:
            - python=3.11
            - pip
            - pip: ["{CREDENTIALED["url"]}", "{CREDENTIALED["git"]}", "{KEPT}"]
        """)
    )
    return "env.yml"


def write_pyproject(d: Path) -> str:
    deps = [CREDENTIALED["url"], CREDENTIALED["git"], KEPT]
    (d / "pyproject.toml").write_text(f'[project]\nname = "app"\nversion = "1"\ndependencies = {json.dumps(deps)}\n')
    return "pyproject.toml"


def write_pylock(d: Path) -> str:
    (d / "pylock.toml").write_text(
        textwrap.dedent(f"""\
        lock-version = "1.0"
        requires-python = ">=3.11"
        created-by = "uv"

        [[packages]]
        name = "a"
        version = "1.0"
        archive = {{ url = "https://alice:{SECRET}@files.example.org/a-1.0-py3-none-any.whl", hashes = {{ sha256 = "{"ab" * 32}" }} }}

        [[packages]]
        name = "tools"
        vcs = {{ type = "git", url = "https://{TOKEN}@git.example.org/team/tools.git", commit-id = "{"c" * 40}", subdirectory = "tools" }}

        [[packages]]
        name = "b"
        version = "1.0"
        archive = {{ url = "https://${{FILES_USER}}:${{FILES_TOKEN}}@files.example.org/b-1.0-py3-none-any.whl" }}
        """)
    )
    return "pylock.toml"


@pytest.mark.parametrize(
    "write", [write_requirements, write_environment_yml, write_azureml, write_pyproject, write_pylock],
    ids=lambda f: f.__name__[len("write_"):],
)  # fmt: skip
def test_every_importer_drops_literal_credentials_and_keeps_var_references(tmp_path, write):
    source = write(tmp_path)
    spec, text, output = imported(tmp_path, source)
    no_secret(text, output)
    deps = spec["pypi"]["dependencies"]
    # the credential-free URL is carried (netrc or a ${VAR} edit makes it usable), the ${VAR} form as written
    assert any(d.startswith("a @ https://files.example.org/a-1.0-py3-none-any.whl") for d in deps), deps
    assert any(d.startswith("tools @ git+https://git.example.org/team/tools.git@") for d in deps), deps
    assert any(d.startswith(KEPT) for d in deps), deps
    notes = credential_notes(output)
    assert len(notes) >= 2 and all(f"{source}:" in n for n in notes), output
    assert not any("FILES_TOKEN" in n for n in notes)  # the ${VAR} line is no credential


def test_lines_not_carried_never_quote_the_secret(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        f"x @ https://alice:{SECRET}@files.example.org/${{DIR}}/x-1.0-py3-none-any.whl\n"
        f"git+https://{TOKEN}@git.example.org/norepo.git\n"
        f"--trusted-host https://alice:{SECRET}@files.example.org\n"
        f"--find-links https://alice:{SECRET}@files.example.org/links/\n"
    )
    spec, text, output = imported(tmp_path, "requirements.txt")
    no_secret(text, output)
    assert spec["pypi"].get("dependencies", []) == []
    assert spec["pypi"]["find-links"] == ["https://files.example.org/links/"]
    assert "requirements.txt:1:" in output and "${VAR} reference outside the user:password@ part" in output
    assert "requirements.txt:2:" in output and "without a package name" in output


def test_dockerfile_steps_lose_literal_credentials(tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM python:3.11-slim\nRUN pip install --pre {CREDENTIALED['git'][8:]}\n")
    (tmp_path / "env.yml").write_text("name: dock\nbuild:\n  path: .\n")
    spec, text, output = imported(tmp_path, "env.yml")
    no_secret(text, output)
    assert any("git+https://git.example.org/team/tools.git" in s for s in spec["image"]["steps"]), spec
    assert credential_notes(output)


def test_environment_yml_pip_list_carries_git_url_and_path_forms(tmp_path):
    lib = tmp_path / "libs" / "features"
    lib.mkdir(parents=True)
    (lib / "pyproject.toml").write_text('[project]\nname = "features"\nversion = "0.1"\n')
    (tmp_path / "environment.yml").write_text(
        textwrap.dedent(
            """\
        name: research
        channels: [conda-forge]
        dependencies:
          - python=3.11
          - numpy
          - pip
          - pip:
            - git+https://git.example.org/team/tools.git@v1.0#egg=teamtools&subdirectory=tools
            - https://files.example.org/urlpkg-1.0-py3-none-any.whl#sha256=%s
            - -e ./libs/features
            - fixalpha>=1
        """
            % ("ab" * 32)
        )  # fmt: skip
    )
    spec, _, output = imported(tmp_path, "environment.yml")
    assert spec["pypi"]["dependencies"] == [
        "teamtools @ git+https://git.example.org/team/tools.git@v1.0#subdirectory=tools",
        f"urlpkg @ https://files.example.org/urlpkg-1.0-py3-none-any.whl#sha256={'ab' * 32}",
        "features @ ./libs/features",
        "fixalpha>=1",
    ]
    assert "environment.yml:" in output and "editable" in output


def test_pylock_directory_entry_is_a_path_requirement(tmp_path):
    lib = tmp_path / "libs" / "features"
    lib.mkdir(parents=True)
    (lib / "pyproject.toml").write_text('[project]\nname = "features"\nversion = "0.1"\n')
    (tmp_path / "pylock.toml").write_text(
        textwrap.dedent("""\
        lock-version = "1.0"
        requires-python = ">=3.11"
        created-by = "uv"

        [[packages]]
        name = "features"
        directory = { path = "libs/features", editable = true }

        [[packages]]
        name = "outside"
        directory = { path = "../elsewhere" }
        """)
    )
    (tmp_path.parent / "elsewhere").mkdir(exist_ok=True)
    spec, _, output = imported(tmp_path, "pylock.toml")
    assert spec["pypi"]["dependencies"] == ["features @ ./libs/features"]
    assert "editable; installed as a regular package" in output
    assert "outside the project" in output


def test_an_import_mlenv_refuses_is_one_error_about_the_imported_file(tmp_path):
    # a directory named like a wheel: the importer carries it as a directory, the spec reads an archive
    odd = tmp_path / "dist" / "odd-1.0-py3-none-any.whl"
    odd.mkdir(parents=True)
    (odd / "pyproject.toml").write_text('[project]\nname = "odd"\nversion = "1.0"\n')
    (tmp_path / "requirements.txt").write_text("./dist/odd-1.0-py3-none-any.whl\n")
    with pytest.raises(SpecError) as e:
        mlenv.init(tmp_path / "mlenv.toml", from_file=tmp_path / "requirements.txt")
    err = one_line(e, code=2)
    assert "requirements.txt: the import gives a spec mlenv refuses" in err
    assert "nothing was written" in err
    assert "mlenv.toml:" not in err  # never a file:line of a file that was not written
    assert not (tmp_path / "mlenv.toml").exists()


def test_the_fallback_check_refuses_a_literal_credential_without_quoting_it(tmp_path):
    from mlenv.api.spec import _check_imported

    text = (
        '[environment]\nname = "imp"\npython = "3.11"\n[pypi]\n'
        f'dependencies = ["{CREDENTIALED["git"]}", "{CREDENTIALED["url"]}"]\n'
    )
    with pytest.raises(SpecError) as exc:
        _check_imported(text, tmp_path / "mlenv.toml", Path("requirements.txt"))
    one_line(exc, code=2)
    message = exc.value.message + (exc.value.hint or "")
    assert message.startswith("requirements.txt: the import gives a spec mlenv refuses")
    assert "literal credential" in message
    no_secret(message)


def test_carry_never_returns_a_literal_secret_property(tmp_path):
    """Any git or archive line with literal userinfo: neither the carried requirement nor a
    note holds the secret; `${VAR}` userinfo survives unchanged."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mlenv.formats.directreqs import carry

    secret = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~%!$&'()*+,;=", min_size=6,
                     max_size=30).filter(lambda s: "${" not in s and not s.startswith("$"))  # fmt: skip
    shapes = st.sampled_from([
        "a @ https://{ui}@h.example/p/a-1.0-py3-none-any.whl{frag}",
        "https://{ui}@h.example/a-1.0.tar.gz{frag}",
        "git+https://{ui}@h.example/r.git@v1#egg=r",
        "r @ git+https://{ui}@h.example/r.git@main#subdirectory=s",
        "r @ git+https://{ui}@h.example/r.git ; python_version >= '3.8'",
    ])  # fmt: skip

    @settings(max_examples=200, deadline=None)
    @given(shape=shapes, user=st.sampled_from(["", "u", "${U}"]), value=secret,
           frag=st.sampled_from(["", "#sha256=" + "ab" * 32]))  # fmt: skip
    def check(shape, user, value, frag):
        ui = f"{user}:{value}" if user else value
        line = shape.format(ui=ui, frag=frag)
        requirement, notes = carry(line, base_dir=tmp_path, project=tmp_path)
        for text in [requirement or "", *notes]:
            assert value not in text
        assert any("literal credential" in n for n in notes)
        kept, kept_notes = carry(shape.format(ui="${U}:${T}", frag=frag), base_dir=tmp_path, project=tmp_path)
        assert kept is not None and "${U}:${T}@" in kept and not kept_notes

    check()


def test_a_url_urllib_refuses_is_a_note_not_a_traceback(tmp_path):
    """Found by the fuzzer: an unclosed IPv6 bracket makes urllib raise ValueError."""
    from mlenv.formats.importers import import_file

    req = tmp_path / "requirements.txt"
    req.write_text("https://[::1/x\nfoo @ https://[::1/y.whl\n")
    text, notes = import_file(req, name="x", default_name="x", project=tmp_path)
    assert sum("not a valid URL" in n for n in notes) == 2
    assert not [line for line in text.splitlines() if "[::1" in line and not line.lstrip().startswith("#")]
