"""The public API: every CLI command is one API call (checked for each command by
intercepting that call), and the notebook story runs in-process against the local
fixture index and registry."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fresh_imports import imported_by, roots

import mlenv
from mlenv.cli.main import COMMANDS, main


class Called(Exception):
    """Raised by the intercepted API function: proves the command reached it."""


# arguments that get each command past its option parsing
SAMPLE_ARGS = {
    "init": ["--file", "{tmp}/x/mlenv.toml"],
    "add": ["pandas"],
    "remove": ["pandas"],
    "lock": [],
    "hash": [],
    "install": ["--prefix", "{tmp}/env"],
    "verify": ["--prefix", "{tmp}/env"],
    "build": [],
    "rebase": ["--from", "127.0.0.1:9/mlenv-test/old:1"],
    "images": [],
    "register": [],
    "list": [],
    "versions": ["demo"],
    "show": ["demo@1"],
    "diff": ["demo@1", "demo@2"],
    "label": ["demo@1", "prod"],
    "archive": ["demo@1"],
    "unarchive": ["demo@1"],
    "restore": ["demo@1"],
    "gc": [],
    "search": ["numpy"],
    "ui": ["--export", "{tmp}/site"],
    "export": ["--format", "requirements"],
    "curated": ["list"],
    "cache": ["info"],
}
# the other API functions some commands call instead, by option or subcommand
OTHER_CALLS = [
    ("lock", ["--check"], "mlenv.api.lock:check"),
    ("label", ["demo", "prod", "--history"], "mlenv.api.registry:label_history"),
    ("curated", ["show", "sklearn-1.5-py311-cpu"], "mlenv.curated:show"),
    ("cache", ["prune"], "mlenv.cache:prune_unused"),
    ("cache", ["clean"], "mlenv.cache:clean_all"),
]


def _intercept(monkeypatch, target: str) -> list:
    module, _, attr = target.partition(":")
    calls: list = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        raise Called(target)

    monkeypatch.setattr(importlib.import_module(module), attr, fake)
    return calls


def test_every_command_is_listed():
    assert set(SAMPLE_ARGS) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_makes_its_one_api_call(command, monkeypatch, tmp_path):
    target = COMMANDS[command][3]
    calls = _intercept(monkeypatch, target)
    monkeypatch.chdir(tmp_path)
    args = [a.format(tmp=tmp_path) for a in SAMPLE_ARGS[command]]
    with pytest.raises(Called):
        main([command, *args])
    assert len(calls) == 1


@pytest.mark.parametrize(("command", "args", "target"), OTHER_CALLS)
def test_options_that_call_another_api_function(command, args, target, monkeypatch, tmp_path):
    calls = _intercept(monkeypatch, target)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Called):
        main([command, *args])
    assert len(calls) == 1


def test_the_api_functions_are_exported_from_mlenv():
    """What the commands call is what `import mlenv` offers (or its curated / cache modules)."""
    for _, _, _, target in COMMANDS.values():
        module, _, attr = target.partition(":")
        func = getattr(importlib.import_module(module), attr)
        if module.startswith("mlenv.api."):
            exported = {"mlenv.api.ui:ui": "web_ui"}.get(target, attr)  # mlenv.ui is the catalog's package
            assert getattr(mlenv, exported) is func, target
        else:
            assert getattr(getattr(mlenv, module.split(".")[1]), attr) is func, target


def test_import_mlenv_is_cheap(tmp_path):
    new, _ = imported_by("import mlenv", tmp_path)
    heavy = {"click", "rich", "requests", "docker", "rattler", "packaging", "tomlkit", "mlenv.api"}
    assert not heavy & (new | roots(new)), sorted(heavy & (new | roots(new)))


def spec_kwargs(index: str) -> dict:
    return {"python": "3.11", "index_url": index, "base": "127.0.0.1:9/mlenv-test/base:1"}


def test_notebook_story_in_process(tmp_path, pypi_server, monkeypatch):
    """create -> add -> save -> lock -> register -> change -> lock -> register -> get v1 -> diff,
    with the same functions the CLI uses, and the HTML reprs Jupyter shows."""
    monkeypatch.chdir(tmp_path)
    registry = str(tmp_path / "registry")
    env = mlenv.Environment.create(
        "nbstory", pypi=["fixalpha==1.0.0"], variables={"OMP_NUM_THREADS": "4"}, **spec_kwargs(pypi_server)
    )
    assert env.path == tmp_path / "nbstory" / "mlenv.toml" and not env.saved
    with pytest.raises(mlenv.MlenvError, match="unsaved changes"):
        env.lock()
    env.add(pypi=["fixnum"])
    assert "fixnum" in env.text and env.spec.pypi_dependencies == ["fixalpha==1.0.0", "fixnum"]
    env.save()
    first = env.lock(progress=lambda m: None)
    assert first.action == "solved" and first.changed and first.lock.content_hash.startswith("sha256:")
    assert {p["name"] for p in first.packages("linux-64")} == {"fixalpha", "fixnum", "numpy"}
    assert "fixalpha==1.0.0" in first.export("requirements")
    assert "<table" in first._repr_html_() and "fixalpha" in first._repr_html_()
    assert env.lock().action == "fresh"
    v1 = env.register(registry, image=False)
    assert v1.created and v1.ref == "nbstory@1"
    env.add(pypi=["fixalpha==1.1.0"]).save()  # replaces the pin in place
    env.lock()
    v2 = env.register(registry, image=False)
    assert v2.ref == "nbstory@2" and not env.register(registry, image=False).created  # idempotent

    old = mlenv.Environment.get("nbstory", version=1, registry=registry, directory=tmp_path / "old")
    assert old.locked.content_hash == first.content_hash and "fixalpha==1.0.0" in old.text
    old.save()
    assert (tmp_path / "old" / "mlenv.lock").read_text() == first.lock.dumps()
    d = env.diff(old)
    assert any("fixalpha 1.0.0 -> 1.1.0" in line for line in d.lines())
    assert "fixalpha" in d._repr_html_()
    listed = mlenv.versions("nbstory", registry=registry)
    assert [v.version for v in listed] == [1, 2] and "<table" in listed._repr_html_()
    same = mlenv.diff("nbstory@1", "nbstory@2", registry=registry)
    assert same.data == d.data


def test_html_reprs_escape_registry_data(tmp_path, pypi_server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = str(tmp_path / "registry")
    env = mlenv.Environment.create("escaped", pypi=["fixalpha==1.0.0"], **spec_kwargs(pypi_server))
    env.save()
    env.lock()
    env.register(registry, description="<script>alert(1)</script>", image=False)
    html = mlenv.versions("escaped", registry=registry)._repr_html_()
    detail = mlenv.show("escaped@1", registry=registry)
    assert "<script>" not in html and "<script>" not in detail._repr_html_()


def test_curated_api():
    entries = mlenv.curated.list()
    names = [e.name for e in entries]
    assert "sklearn-1.5-py311-cpu" in names and "<table" in entries._repr_html_()
    detail = mlenv.curated.show("sklearn-1.5-py311-cpu")
    assert detail.lock is not None and detail.lock.content_hash == detail.entry.content_hash


def test_from_curated_keeps_the_lock_current(tmp_path):
    env = mlenv.Environment.from_curated("sklearn-1.5-py311-cpu", name="my-sklearn", directory=tmp_path / "e")
    env.save()
    assert env.check().ok and env.name == "my-sklearn"


def test_errors_are_the_mlenv_error_types(tmp_path):
    with pytest.raises(mlenv.SpecError):
        mlenv.Environment.create("Bad Name!", directory=tmp_path)
    with pytest.raises(mlenv.MlenvError):
        mlenv.versions("nothing-here", registry=str(tmp_path / "empty"))


def test_all_names_every_lazy_export():
    import mlenv

    assert mlenv.__all__ == ["__version__", *mlenv._EXPORTS]
    assert sorted(dir(mlenv)) == sorted(mlenv.__all__)


def test_every_module_imports_and_every_command_has_help():
    """Each command's module loads (a name moved or removed fails here, not in a user's
    build) and prints its help; every module of the package imports on its own."""
    import pkgutil

    from click.testing import CliRunner

    from mlenv.cli.main import cli

    for name in sorted(COMMANDS):
        result = CliRunner().invoke(cli, [name, "--help"], prog_name="mlenv")
        assert result.exit_code == 0, (name, result.output, result.exception)
        assert "Usage:" in result.output, name
    for info in pkgutil.walk_packages(mlenv.__path__, "mlenv."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def test_from_file_imports_then_saves_a_spec_mlenv_reads(tmp_path, pypi_server):
    """Environment.from_file: another tool's file becomes an unsaved spec (with notes for
    what was not carried), named by the directory; save writes it and it loads back."""
    req = tmp_path / "requirements.txt"
    req.write_text(f"--index-url {pypi_server}\nfixalpha==1.0.0\n--trusted-host example.org\n")
    env = mlenv.Environment.from_file(req, directory=tmp_path / "imported")
    assert not env.saved and env.spec.name == "imported"
    assert env.spec.pypi_dependencies == ["fixalpha==1.0.0"] and env.spec.index_url == pypi_server
    assert any("trusted-host" in n for n in env.notes)
    path = env.save()
    assert path == tmp_path / "imported" / "mlenv.toml"
    from mlenv.spec import load_spec

    assert load_spec(path).pypi_dependencies == ["fixalpha==1.0.0"]
    with pytest.raises(mlenv.MlenvError):
        mlenv.Environment.from_file(tmp_path / "missing.txt")


def test_options_precedence_is_the_same_below_the_cli(tmp_path, monkeypatch):
    """An argument beats the environment variable, which beats the settings file: for the
    API's options and for the CA bundle every download (OCI registries too) verifies with."""
    from mlenv.api.options import resolve
    from mlenv.oci.transport import ca_bundle
    from mlenv.uvtool import uv_env

    config = tmp_path / "config.toml"
    config.write_text('builder = "classic"\nca-bundle = "/settings/ca.pem"\n')
    monkeypatch.setenv("MLENV_CONFIG", str(config))
    for var in ("MLENV_BUILDER", "MLENV_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)
    assert resolve("builder", None) == "classic"
    assert ca_bundle() == "/settings/ca.pem" == uv_env(None)["SSL_CERT_FILE"]  # requests and uv alike
    monkeypatch.setenv("MLENV_BUILDER", "buildkit")
    monkeypatch.setenv("MLENV_CA_BUNDLE", "/env/ca.pem")
    assert resolve("builder", None) == "buildkit" and ca_bundle() == "/env/ca.pem" == uv_env(None)["SSL_CERT_FILE"]
    assert resolve("builder", "daemonless") == "daemonless"
    monkeypatch.setenv("MLENV_CONFIG", str(tmp_path / "none.toml"))  # no settings file
    monkeypatch.delenv("MLENV_CA_BUNDLE")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/requests/ca.pem")
    assert ca_bundle() == "/requests/ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert ca_bundle() is True


def test_notebook_progress_draws_a_bar_and_escapes_messages():
    """In Jupyter, progress=None becomes a bar under the cell: an indeterminate <progress>
    with the step count while running, a full one with ✔ when done; messages are text."""
    from mlenv.api.progress import NotebookProgress

    bar = NotebookProgress("locking <demo>")
    bar("solving <conda> & PyPI")
    running = bar._render("solving <conda> & PyPI")
    assert "<progress" in running and 'value="1"' not in running and "[1]" in running
    assert "&lt;conda&gt; &amp; PyPI" in running and "&lt;demo&gt;" in running and "<conda>" not in running
    done = bar._render_done("locked <x>")
    assert '<progress style="width:8em" value="1" max="1">' in done and "✔" in done and "&lt;x&gt;" in done


def test_a_bare_lock_is_drawn_as_a_table_in_jupyter():
    """mlenv.Lock has no _repr_html_ (it lives below the API); the API registers its
    lock table with IPython, so `env.locked` shows like the results do."""
    from IPython.core.interactiveshell import InteractiveShell

    from mlenv.api.results import register_notebook_formatters
    from mlenv.lockfile import read_lock

    shell = InteractiveShell.instance()
    try:
        assert register_notebook_formatters(shell)
        lock = read_lock(Path(__file__).resolve().parents[2] / "mlenv.lock.example")
        data, _ = shell.display_formatter.format(lock)
        assert lock.short_hash in data["text/html"] and "content hash" in data["text/html"]
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.docker
def test_restore_from_an_image_that_cannot_be_pulled_says_so_in_one_line(tmp_path, docker_client, test_registry):
    missing = f"{test_registry}/mlenv-api-missing/nothing:1"  # the registry answers: no such repository
    with pytest.raises(mlenv.RegistryError) as err:
        mlenv.restore(from_image=missing, into=tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"image {missing} is not local and could not be pulled (")
    assert "could not pull" not in message and "\n" not in message
    assert not (tmp_path / "out").exists()
