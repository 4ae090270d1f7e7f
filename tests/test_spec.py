"""mlenv.toml: validation messages (file:line, did-you-mean), the spec hash,
and tomlkit edits that keep formatting (the API in-process; `mlenv(...)` runs the
command line for the tests whose subject it is)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refusals import mlenv_error

import mlenv as mlenv_api
from mlenv.errors import SpecError
from mlenv.spec import parse_spec

BASE = textwrap.dedent(
    """\
    [environment]
    name = "demo"
    python = "3.11"
    platforms = ["linux-64"]

    [pypi]
    dependencies = ["pandas>=2", "requests"]
    """
)


def mlenv(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def parse(text: str, name="mlenv.toml"):
    return parse_spec(textwrap.dedent(text), Path(name))


def error_of(text: str, *, full: bool = False) -> str:
    with pytest.raises(SpecError) as info:
        spec = parse(text)
        if full:
            spec.validate_requirements()
    return str(info.value)


def test_minimal_spec_defaults():
    spec = parse(BASE)
    assert spec.name == "demo"
    assert spec.platforms == ["linux-64"]
    assert spec.base_image == "python:3.11-slim-bookworm"
    assert not spec.has_conda


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '[environment]\nname = "x"\npyhton = "3.11"\n',
            "mlenv.toml:3: unknown key `pyhton` in [environment] (did you mean `python`?)",
        ),
        ('[enviroment]\nname = "x"\n', "mlenv.toml:1: unknown table [enviroment] (did you mean `environment`?)"),
        (
            '[environment]\nname = "x"\npython = "3.11"\nplatforms = [\n  "linux-64",\n  "linux-65",\n]\n',
            "mlenv.toml:6: unknown platform 'linux-65' (did you mean `linux-64`?)",
        ),
        ('[environment]\nname = "Bad Name"\npython = "3.11"\n', "mlenv.toml:2: invalid environment name 'Bad Name'"),
        ('[environment]\nname = "x"\npython = "three"\n', "mlenv.toml:3: invalid python version 'three'"),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[variables]\nOMP = 4\n',
            "mlenv.toml:5: variable OMP must be a string",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[system]\ncuda = "twelve"\n',
            "mlenv.toml:5: invalid version 'twelve'",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[conda]\ndependencies = ["numpy"]\n',
            "mlenv.toml:4: [conda] needs at least one channel",
        ),
        ('[environment]\nname = "x"\n[pypi]\ndependencies = ["pandas"]\n', "PyPI packages need [environment] python"),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[pypi]\nindex-url = "ftp://x"\n',
            "mlenv.toml:5: index-url 'ftp://x' has the scheme 'ftp'",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[image]\napt-packages = ["ok", "Not OK"]\n',
            "mlenv.toml:5: invalid Debian package name 'Not OK'",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[image]\npython = "python3"\n',
            "mlenv.toml:5: [image] python must be an absolute",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[pypi]\ndependencies = "pandas"\n',
            "mlenv.toml:5: [pypi] dependencies must be a list of strings",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[pypi]\ndependencies = [\n "pandas",\n 3,\n]\n',
            "mlenv.toml:5: [pypi] dependencies must be a list of strings",
        ),
        (
            '[environment]\nname = "x"\npython = "3.11"\n[environment.extra]\n',
            "mlenv.toml:4: unknown key `extra` in [environment]",
        ),
        ('[environment]\nname = "x"\npython = = "3.11"\n', "mlenv.toml:3: invalid TOML"),
    ],
)
def test_structural_errors_name_file_and_line(text, expected):
    assert expected in error_of(text)


def test_invalid_pep508_is_located():
    text = '[environment]\nname = "x"\npython = "3.11"\n[pypi]\ndependencies = [\n  "pandas>=2",\n  "numpy>>1",\n]\n'
    msg = error_of(text, full=True)
    assert msg.startswith("mlenv.toml:7: invalid PyPI requirement 'numpy>>1'")


def test_invalid_matchspec_is_located():
    text = '[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["conda-forge"]\ndependencies = ["numpy >=>1"]\n'
    msg = error_of(text, full=True)
    assert msg.startswith("mlenv.toml:6: invalid conda MatchSpec 'numpy >=>1'")


def test_python_contradicting_conda_pin():
    text = '[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["c"]\ndependencies = ["python 3.12.*"]\n'
    msg = error_of(text, full=True)
    assert "mlenv.toml:6: conda pins 'python 3.12.*'" in msg
    assert "mlenv.toml:3" in msg  # points at both places


def test_python_agreeing_with_conda_pin_is_fine():
    parse(
        '[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["c"]\ndependencies = ["python >=3.11,<3.12"]\n'
    ).validate_requirements()


def test_python_is_added_to_conda_specs():
    spec = parse('[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["c"]\ndependencies = ["numpy"]\n')
    assert spec.conda_specs() == ["python 3.11.*", "numpy"]
    assert spec.conda_provides_python()


def test_unsupported_direct_requirements_rejected():
    # direct URLs, git and local paths are supported (tests/solve/test_depforms.py); these forms are not
    for dep, words in [("pkg @ ftp://example.org/pkg.whl", "unsupported URL scheme"),
                       ("pkg @ https://example.org/pkg", "does not name a wheel or source archive"),
                       ("pkg @ git+ssh://git@example.org/r.git", "ssh is not supported"),
                       ("pkg @ hg+https://example.org/r", "only git"),
                       ("pkg @ /srv/pkg", "absolute path"),
                       ("pkg @ file:///srv/pkg", "relative to mlenv.toml")]:  # fmt: skip
        text = f'[environment]\nname = "x"\npython = "3.11"\n[pypi]\ndependencies = ["{dep}"]\n'
        assert words in error_of(text, full=True), dep


# --- the spec hash ----------------------------------------------------------------

VARIANT_A = """\
[environment]
name = "a"
description = "first"
python = "3.11"
platforms = ["linux-64", "osx-arm64"]

[pypi]
dependencies = ["pandas>=2", "requests", "scikit-learn==1.5.2"]

[variables]
A = "1"
B = "2"
"""

VARIANT_B = """\
# comments do not count
[variables]
B = "2"   # nor order
A = "1"

[pypi]
dependencies = [
  "scikit-learn==1.5.2",
  "requests",
  "pandas>=2",
]

[environment]
platforms = ["osx-arm64", "linux-64"]
python = "3.11"
name = "b"
description = "second"
"""


def test_spec_hash_ignores_name_description_order_and_comments():
    assert parse(VARIANT_A).spec_hash() == parse(VARIANT_B).spec_hash()


def test_spec_hash_ignores_index_credentials():
    # Literal credentials are refused (test_security_parsers); references are stripped.
    a = parse(BASE + 'index-url = "https://${IDX_USER}:${OLD_TOKEN}@pypi.example.org/simple"\n')
    b = parse(BASE + 'index-url = "https://__token__:${NEW_TOKEN}@pypi.example.org/simple"\n')
    assert a.spec_hash() == b.spec_hash()
    assert "OLD_TOKEN" not in str(a.normalized())


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace('"requests"', '"requests<3"'),
        lambda t: t.replace('python = "3.11"', 'python = "3.12"'),
        lambda t: t.replace('B = "2"', 'B = "3"'),
        lambda t: t.replace('platforms = ["linux-64", "osx-arm64"]', 'platforms = ["linux-64"]'),
        lambda t: t + '\n[image]\nbase = "python:3.12-slim"\n',
        lambda t: t + '\n[system]\ncuda = "12.4"\n',
    ],
)
def test_spec_hash_changes_with_meaning(change):
    assert parse(change(VARIANT_A)).spec_hash() != parse(VARIANT_A).spec_hash()


DEPS = st.lists(
    st.sampled_from(["pandas>=2", "numpy<2", "requests", "scikit-learn==1.5.2", "boto3", "rich>=13"]),
    min_size=1,
    max_size=6,
    unique=True,
)
VARS = st.dictionaries(
    st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True), st.text("abc123 ", max_size=5), max_size=4
)


def _render(name, deps, variables, comment, table_order):
    tables = {
        "environment": f'[environment]\nname = "{name}"\npython = "3.11"\n',
        "pypi": "[pypi]\ndependencies = [\n" + "".join(f'  "{d}",{comment}\n' for d in deps) + "]\n",
        "variables": "[variables]\n" + "".join(f'{k} = "{v}"{comment}\n' for k, v in variables.items()),
    }
    return "\n".join(tables[t] for t in table_order)


@settings(max_examples=60, deadline=None)
@given(
    DEPS,
    VARS,
    st.randoms(use_true_random=False),
    st.sampled_from(["", "  # note", " # ✓ ünïcode"]),
    st.permutations(["environment", "pypi", "variables"]),
)
def test_property_reordering_and_comments_never_change_the_spec_hash(deps, variables, rnd, comment, order):
    original = parse(_render("one", deps, variables, "", ["environment", "pypi", "variables"]))
    shuffled_deps = list(deps)
    rnd.shuffle(shuffled_deps)
    shuffled_vars = dict(sorted(variables.items(), key=lambda _: rnd.random()))
    other = parse(_render("two", shuffled_deps, shuffled_vars, comment, order))
    assert other.spec_hash() == original.spec_hash()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_property_random_text_never_tracebacks(text):
    try:
        parse(text).validate_requirements()
    except SpecError as exc:
        assert str(exc).startswith("mlenv.toml:")


TOKENS = [
    "[environment]",
    "[pypi]",
    "[conda]",
    "[image]",
    "[system]",
    "[variables]",
    'name = "x"',
    'python = "3.11"',
    'dependencies = ["numpy >=>1"]',
    'dependencies = ["pandas>=2", 3]',
    "channels = []",
    'cuda = "12"',
    'platforms = ["linux-64"]',
    'base = ""',
    "apt-packages = [1]",
    'python = "/usr/bin/python3"',
    "x = 1",
    "= =",
    '"unterminated',
    'dependencies = ["pkg @ http://x/y.whl"]',
    'OMP = "4"',
    "[[pypi]]",
    "[environment.sub]",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=12))
def test_property_malformed_specs_give_located_errors(lines):
    text = "\n".join(lines) + "\n"
    try:
        parse(text).validate_requirements()
    except SpecError as exc:
        assert str(exc).startswith("mlenv.toml:")
        assert "Traceback" not in str(exc)


# --- init / add / remove (the API), and what the CLI makes of an error -----------------


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    """The subject is the command line: a SpecError is one `error:` line, exit 2, no traceback."""
    (tmp_path / "mlenv.toml").write_text('[environment]\nname = "x"\npyhton = "3.11"\n')
    proc = mlenv("lock", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert "mlenv.toml:3: unknown key `pyhton`" in proc.stderr


def test_cli_init_add_errors_are_one_line_with_hint(tmp_path):
    """init / add / remove on the command line: options parsed, an error is one `error:` line
    plus its `hint:`, exit 2, no traceback."""
    proc = mlenv("init", "--name", "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert parse_spec((tmp_path / "mlenv.toml").read_text(), tmp_path / "mlenv.toml").name == "demo"
    proc = mlenv("init", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == ["error: mlenv.toml already exists"]
    assert "hint: pass --force to overwrite it" in proc.stderr
    proc = mlenv("add", "--conda", "numpy 1.26.*", cwd=tmp_path)
    assert proc.returncode == 2 and "no [conda] table" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_spec_says_how_to_start(tmp_path):
    with mlenv_error(SpecError) as e:
        mlenv_api.lock(tmp_path)
    assert "mlenv.toml: no such file" in str(e.value) and "mlenv init" in str(e.value)


def test_init_add_remove_keep_comments_and_order(tmp_path):
    path = tmp_path / "mlenv.toml"
    assert mlenv_api.init(path, name="demo").path == path
    text = path.read_text()
    assert "# mlenv.toml: the environment, declared." in text
    parse_spec(text, path)  # the starter spec is valid

    path.write_text(text.replace("dependencies = [\n]", 'dependencies = [\n    "requests",  # keep me\n]'))
    mlenv_api.add(["pandas>=2", "numpy<2"], spec=tmp_path)
    edited = mlenv_api.add(["pandas>=2.1"], spec=tmp_path)  # replaces in place
    assert edited.changes == ["Updated pandas in [pypi]: pandas>=2.1"]
    mlenv_api.remove(["numpy"], spec=tmp_path)
    edited_text = path.read_text()
    assert '"requests",  # keep me' in edited_text
    assert "pandas>=2.1" in edited_text and 'pandas>=2"' not in edited_text and "numpy" not in edited_text
    # everything outside the dependency list is byte-identical
    before_head = text.split("dependencies = [")[0]
    assert edited_text.startswith(before_head)
    spec = parse_spec(edited_text, path)
    assert spec.pypi_dependencies == ["requests", "pandas>=2.1"]


def test_add_invalid_leaves_file_untouched(tmp_path):
    mlenv_api.init(tmp_path / "mlenv.toml", name="demo")
    before = (tmp_path / "mlenv.toml").read_bytes()
    with mlenv_error(SpecError) as e:
        mlenv_api.add(["pandas>>2"], spec=tmp_path)
    assert "invalid PyPI requirement 'pandas>>2'" in str(e.value)
    with mlenv_error(SpecError) as e:
        mlenv_api.remove(["nothere"], spec=tmp_path)
    assert "'nothere' is not a dependency" in str(e.value)
    assert (tmp_path / "mlenv.toml").read_bytes() == before


def test_add_conda_needs_conda_table(tmp_path):
    mlenv_api.init(tmp_path / "mlenv.toml", name="demo")
    with mlenv_error(SpecError) as e:
        mlenv_api.add(["numpy 1.26.*"], conda=True, spec=tmp_path)
    assert "no [conda] table" in str(e.value)


def test_init_refuses_to_overwrite(tmp_path):
    mlenv_api.init(tmp_path / "mlenv.toml")
    with mlenv_error(SpecError) as e:
        mlenv_api.init(tmp_path / "mlenv.toml")
    assert "already exists" in str(e.value) and "--force" in str(e.value)
