"""Issue 9, part 2: what a lock may make mlenv read, write and fetch.

- a crafted lock (content hash recomputed, so it is valid) cannot write outside the
  target: every command that uses a lock refuses it with one line and writes nothing;
- every locked URL must come from a source the lock declares (mlenv.sources);
- cached artifacts are hashed again on use;
- a full disk is reported with the file that could not be written;
- the spec+lock pair is written all or none (mlenv.runtime.journal), temporary files of
  dead writers are swept, live writers' are not;
- the one scrubber (mlenv.runtime.secrets).

What is refused, and that nothing is written, is the library's behaviour: the commands
run in-process through the API (`mlenv.install`, `mlenv.check`, `mlenv.register`, ...) and
a refusal is a `pytest.raises` of its one-line message. The CLI runs that stay prove how a
refusal renders (one `error:` line, exit code, no traceback) per command, how the CLI masks
secrets it holds, SIGTERM, and what other processes leave behind.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from refusals import cli_refused, one_line

import mlenv
from mlenv.errors import LockError, MlenvError
from mlenv.lockfile import Lock, Package, read_lock
from mlenv.spec import load_spec

UNRESOLVABLE = "127.0.0.1:9/mlenv-test/none:1"  # a base image the lock cannot pin: refused at once
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def mlenv_cli(*args, cwd, env=None, timeout=300):
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLENV_CA_BUNDLE", "MLENV_REGISTRY")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mlenv.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=full_env, timeout=timeout)  # fmt: skip


def refused(proc) -> str:
    """The one error line of a refused command (no traceback); returns it."""
    return cli_refused(proc, code=proc.returncode if proc.returncode in (1, 2) else 2)


def refusal(call, *args, **kwargs) -> MlenvError:
    """The MlenvError an API call refuses with (its message one line: what `error:` prints)."""
    with pytest.raises(MlenvError) as e:
        call(*args, **kwargs)
    one_line(e)
    return e.value


@pytest.fixture(autouse=True)
def _no_caller_settings(monkeypatch):
    """The caller's CA bundle and registry stay out of these runs (as the CLI runs' env did),
    and the secrets an in-process call remembers for the scrubber are forgotten after the test."""
    from mlenv.runtime import secrets

    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)
    monkeypatch.delenv("MLENV_REGISTRY", raising=False)
    monkeypatch.setattr(secrets, "_remembered", set(secrets._remembered))


def setenv(monkeypatch, env: dict[str, str]) -> None:
    """env for in-process calls; TMPDIR also for this process's tempfile, which caches it."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if "TMPDIR" in env:
        monkeypatch.setattr(tempfile, "tempdir", env["TMPDIR"])


def write_spec(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mlenv.toml").write_text(textwrap.dedent(text))
    return directory


def snapshot(root: Path) -> dict[str, str]:
    """Every file (and symlink) under root -> its sha256 (symlinks: their target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def locked_project(tmp_path_factory, pypi_server):
    """A spec on the fixture index (http://127.0.0.1) and its real lock."""
    d = write_spec(
        tmp_path_factory.mktemp("sec-base"),
        f"""
        [environment]
        name = "sec-io"
        python = "{PY}"
        platforms = ["linux-64"]
        [pypi]
        index-url = "{pypi_server}"
        dependencies = ["fixbeta"]
        [image]
        base = "{UNRESOLVABLE}"
    """,
    )
    mlenv.lock(d)
    return d


def craft(base: Path, dest: Path, mutate) -> Path:
    """dest/mlenv.toml (the base spec) and dest/mlenv.lock: the base lock changed by
    mutate(lock), its content hash recomputed (a valid lock to every reader)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(base / "mlenv.toml", dest / "mlenv.toml")
    lock = read_lock(base / "mlenv.lock")
    mutate(lock)
    lock.seal()
    lock.write(dest / "mlenv.lock")
    return dest


def pypi_pkg(lock: Lock, name: str = "fixalpha") -> Package:
    return next(p for p in lock.packages if p.manager == "pypi" and p.name == name)


# --- 1. a crafted lock writes nothing outside the target ---------------------------------------

TRAVERSALS = {
    "encoded ../../../x": "%2e%2e%2f%2e%2e%2f%2e%2e%2fx",
    "mixed ..%2F": "..%2F..%2F..%2Fx",
    "backslashes": "..%5C..%5C..%5Cx",
    "NUL": "fixalpha-1.1.0-py3-none-any.whl%00.x",
    "absolute path": "%2Fetc%2Fpasswd",
    "very long": "a" * 300 + "-1.1.0-py3-none-any.whl",
}


def _restore_registry(project: Path, registry: Path) -> None:
    """Register the crafted pair the way a hostile registrant could: straight into the
    registry, past `mlenv register`'s checks."""
    from mlenv.registry.local import LocalRegistry

    spec, lock = (project / "mlenv.toml").read_bytes(), (project / "mlenv.lock").read_bytes()
    with LocalRegistry(registry) as reg:
        reg.register("sec-io", spec, lock, read_lock(project / "mlenv.lock").content_hash)


def _crafted_setup(variant: str, locked_project: Path, tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """(work, project, registry, env): a project whose lock names fixalpha's file with
    TRAVERSALS[variant], that pair also registered as sec-io@1 in `registry`."""

    def mutate(lock):
        pkg = pypi_pkg(lock)
        pkg.url = pkg.url.rsplit("/", 1)[0] + "/" + TRAVERSALS[variant]

    work = tmp_path / "a" / "b" / "c"  # `../../../x` from any directory mlenv makes in here lands inside tmp_path
    project = craft(locked_project, work / "proj", mutate)
    registry = tmp_path / "registry"
    _restore_registry(project, registry)
    env = {"XDG_CACHE_HOME": str(work / "cache"), "XDG_DATA_HOME": str(work / "data"), "TMPDIR": str(work / "tmp"),
           "MLENV_REGISTRY": str(tmp_path / "registry2")}  # fmt: skip
    (work / "tmp").mkdir()
    return work, project, registry, env


def _crafted_api_calls(work: Path, project: Path, registry: Path) -> dict:
    """Every command that uses a lock, as the API call it makes."""
    return {
        "install": lambda: mlenv.install(work / "prefix", spec=project, python=BASE_PYTHON),
        "install --lock": lambda: mlenv.install(work / "prefix", lock=project / "mlenv.lock", python=BASE_PYTHON),
        "lock --check": lambda: mlenv.check(project),
        "register": lambda: mlenv.register(project, image=False),
        "build": lambda: mlenv.build(project),
        "export": lambda: mlenv.export("requirements", spec=project),
        "restore --prefix": lambda: mlenv.restore(
            "sec-io@1", registry=str(registry), into=work / "restored", prefix=work / "prefix"
        ),
    }


@pytest.mark.parametrize("variant", list(TRAVERSALS))
def test_crafted_file_name_is_refused_by_every_command(variant, locked_project, tmp_path, monkeypatch):
    work, project, registry, env = _crafted_setup(variant, locked_project, tmp_path)
    setenv(monkeypatch, env)
    before = snapshot(tmp_path)
    for command, call in _crafted_api_calls(work, project, registry).items():
        err = refusal(call)
        assert "fixalpha" in err.message and "not a plain file name" in err.message, (command, err.message)
        assert err.exit_code in (1, 2), command
    assert snapshot(tmp_path) == before  # nothing written anywhere, the target included


CRAFTED_CLI = {
    "install": lambda w, p, r: (["install", "--prefix", w / "prefix", "--python", BASE_PYTHON], p),
    "install --lock": lambda w, p, r: (
        ["install", "--lock", p / "mlenv.lock", "--prefix", w / "prefix", "--python", BASE_PYTHON],
        w / "tmp",
    ),
    "lock --check": lambda w, p, r: (["lock", "--check"], p),
    "register": lambda w, p, r: (["register", "--no-image"], p),
    "build": lambda w, p, r: (["build"], p),
    "export": lambda w, p, r: (["export", "--format", "requirements"], p),
    "restore --prefix": lambda w, p, r: (
        ["restore", "sec-io@1", "--registry", r, "--into", w / "restored", "--prefix", w / "prefix"],
        w / "tmp",
    ),
}


@pytest.mark.parametrize("command", list(CRAFTED_CLI))
def test_crafted_file_name_refusal_renders_as_one_line_per_command(command, locked_project, tmp_path):
    """The CLI of each command family: the refusal above is one `error:` line, exit 1 or 2,
    no traceback, and the process (run from inside tmp_path) writes nothing anywhere."""
    work, project, registry, env = _crafted_setup("encoded ../../../x", locked_project, tmp_path)
    before = snapshot(tmp_path)
    args, cwd = CRAFTED_CLI[command](work, project, registry)
    proc = mlenv_cli(*args, cwd=cwd, env=env)
    line = refused(proc)
    assert "fixalpha" in line and "not a plain file name" in line, line
    assert proc.returncode in (1, 2)
    assert snapshot(tmp_path) == before


def test_lock_replaces_a_crafted_lock(locked_project, tmp_path):
    def mutate(lock):
        pkg = pypi_pkg(lock)
        pkg.url = pkg.url.rsplit("/", 1)[0] + "/%2e%2e%2f%2e%2e%2fx"

    project = craft(locked_project, tmp_path / "proj", mutate)
    warnings = "\n".join(mlenv.lock(project).warnings)
    assert "not a plain file name" in warnings and "solving from scratch and replacing it" in warnings
    assert (project / "mlenv.lock").read_bytes() == (locked_project / "mlenv.lock").read_bytes()


# the lock schema (mlenv.lock_schema) refuses them first; mlenv.runtime.checks is the
# installer's own line of defence (an install plan inside an image: test below)
@pytest.mark.parametrize("field,value,message", [
    ("sha256", "../../../../x", r"(is not|must be) 64 lowercase hex digits"),
    ("name", "fixalpha\n--index-url http://evil.example/simple", r"not a valid package name|name must be a package name"),
    ("version", "1.0/../../x", r"is not a valid version|version must be a version"),
])  # fmt: skip
def test_fields_that_reach_paths_or_commands_are_checked(field, value, message, locked_project, tmp_path,
                                                        monkeypatch):  # fmt: skip
    def mutate(lock):
        setattr(pypi_pkg(lock), field, value)

    project = craft(locked_project, tmp_path / "proj", mutate)
    victim = tmp_path / "x"
    victim.write_text("keep")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    line = refusal(mlenv.install, tmp_path / "prefix", spec=project, python=BASE_PYTHON).message
    assert re.search(message, line), line
    assert victim.read_text() == "keep" and not (tmp_path / "prefix").exists()


def test_conda_fields_that_name_files_are_checked(tmp_path):
    from mlenv.runtime.checks import check_artifact
    from mlenv.runtime.errors import InstallError
    from mlenv.runtime.plan import Artifact

    good = {"build": "h0_0", "subdir": "linux-64"}
    url = "https://conda.anaconda.org/conda-forge/linux-64/libfix-1.0-h0_0.conda"
    check_artifact(Artifact("conda", "libfix", "1.0", url, "a" * 64, good))
    for fields in ({"build": "../../x", "subdir": "linux-64"}, {"build": "h0", "subdir": "../etc"}):
        with pytest.raises(InstallError, match="not a valid"):
            check_artifact(Artifact("conda", "libfix", "1.0", url, "a" * 64, fields))


# --- 2. allowed sources ------------------------------------------------------------------------


def lock_of(url: str, *, manager: str = "pypi", inputs: dict | None = None, index: str | None = None) -> Lock:
    name = "fixalpha" if manager == "pypi" else "libfix"
    extra: dict = {"size": 1}
    if manager == "conda":
        extra.update({"build": "h0_0", "subdir": "linux-64"})
    if index:
        extra["index"] = index
    pkg = Package(manager, "linux-64", name, "1.1.0", url, "a" * 64, extra)
    return Lock(spec_hash="sha256:" + "0" * 64, python="3.11", platforms={"linux-64": {"python": "3.11"}},
                packages=[pkg], inputs=dict(inputs or {})).seal()  # fmt: skip


@pytest.fixture
def local_sources(tmp_path):
    """A file:// conda channel and a file:// PyPI index (files beside simple/), and a
    symlink inside the channel that points out of it."""
    chan = tmp_path / "chan"
    (chan / "noarch").mkdir(parents=True)
    (chan / "noarch" / "libfix-1.1.0-h0_0.tar.bz2").write_bytes(b"x")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (chan / "noarch" / "evil-1.1.0-h0_0.tar.bz2").symlink_to(outside)
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "pypi" / "files").mkdir()
    return tmp_path


PYPI = "https://files.pythonhosted.org/packages/ab/cd/fixalpha-1.1.0-py3-none-any.whl"

ALLOWED = [
    ("PyPI's file host for pypi.org", PYPI, "pypi", {}, "https://pypi.org/simple"),
    ("a recorded index with a trailing slash", PYPI, "pypi", {}, "https://pypi.org/simple/"),
    ("declared http loopback index", "http://127.0.0.1:8080/files/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "http://127.0.0.1:8080/simple"}, None),
    ("https on an index declared as http", "https://127.0.0.1:8080/files/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "http://127.0.0.1:8080/simple"}, None),
    ("an extra index", "https://download.pytorch.org/whl/cpu/fixalpha-1.1.0%2Bcpu-py3-none-any.whl", "pypi",
     {"extra-index-urls": ["https://download.pytorch.org/whl/cpu"]}, "https://download.pytorch.org/whl/cpu"),
    ("a channel name", "https://conda.anaconda.org/conda-forge/linux-64/libfix-1.1.0-h0_0.conda", "conda",
     {"channels": ["conda-forge"]}, None),
    ("a channel URL", "https://repo.prefix.dev/conda-forge/noarch/libfix-1.1.0-h0_0.conda", "conda",
     {"channels": ["https://repo.prefix.dev/conda-forge"]}, None),
    ("a file:// channel", "file://{tmp}/chan/noarch/libfix-1.1.0-h0_0.tar.bz2", "conda",
     {"channels": ["file://{tmp}/chan"]}, None),
    ("a file:// index: files beside simple/", "file://{tmp}/pypi/files/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "file://{tmp}/pypi/simple"}, None),
]  # fmt: skip

REFUSED = [
    ("file:///etc/shadow from an https index", "file:///etc/shadow", "pypi", {}, None, "not from a source"),
    ("file:// outside the channel", "file:///etc/shadow", "conda", {"channels": ["file://{tmp}/chan"]}, None,
     "not from a source"),
    ("a symlink out of the channel", "file://{tmp}/chan/noarch/evil-1.1.0-h0_0.tar.bz2", "conda",
     {"channels": ["file://{tmp}/chan"]}, None, "not from a source"),
    ("a file:// channel at the root", "file:///etc/shadow", "conda", {"channels": ["file:///"]}, None,
     "not from a source"),
    ("a .. segment", "file://{tmp}/chan/noarch/../../outside.txt", "conda", {"channels": ["file://{tmp}/chan"]}, None,
     ". or .. path segment"),
    ("an undeclared loopback server", "http://127.0.0.1:1/fixalpha-1.1.0-py3-none-any.whl", "pypi", {}, None,
     "not from a source"),
    ("link-local, even when declared", "http://169.254.169.254/latest/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "http://169.254.169.254/simple"}, None, "link-local"),
    ("link-local in hex", "http://0xa9.0xfe.0xa9.0xfe/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "http://0xa9.0xfe.0xa9.0xfe/simple"}, None, "link-local"),
    ("link-local as one number", "http://2852039166/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "http://2852039166/simple"}, None, "link-local"),
    ("IPv6 link-local", "http://[fe80::1]/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {"index-url": "http://[fe80::1]/simple"}, None, "link-local"),
    ("http on an https index", PYPI.replace("https:", "http:"), "pypi", {}, None, "not from a source"),
    ("another host", "https://evil.example/fixalpha-1.1.0-py3-none-any.whl", "pypi", {}, None, "not from a source"),
    ("credentials in the URL", PYPI.replace("https://", "https://u:hunter2pw@"), "pypi", {}, None,
     "carries credentials"),
    ("ftp", "ftp://files.pythonhosted.org/fixalpha-1.1.0-py3-none-any.whl", "pypi", {}, None, "scheme ftp"),
    ("a backslash", "https://files.pythonhosted.org\\@evil.example/fixalpha-1.1.0-py3-none-any.whl", "pypi", {},
     None, "backslash"),
    ("another channel on the same host", "https://conda.anaconda.org/other/linux-64/libfix-1.1.0-h0_0.conda",
     "conda", {"channels": ["conda-forge"]}, None, "not from a source"),
    ("a channel name prefix", "https://conda.anaconda.org/conda-forgeX/linux-64/libfix-1.1.0-h0_0.conda", "conda",
     {"channels": ["conda-forge"]}, None, "not from a source"),
    ("an encoded .. out of the channel", "https://conda.anaconda.org/conda-forge/%2e%2e/other/libfix-1.1.0-h0_0.conda",
     "conda", {"channels": ["conda-forge"]}, None, ". or .. path segment"),
    ("a recorded index the lock does not declare", "https://evil.example/fixalpha-1.1.0-py3-none-any.whl", "pypi",
     {}, "https://evil.example/simple", "which the lock does not declare"),
    ("a PyPI file for a conda package", PYPI.replace("fixalpha-1.1.0-py3-none-any.whl", "libfix-1.1.0-h0_0.conda"),
     "conda", {"channels": ["conda-forge"]}, None, "not from a source"),
]  # fmt: skip


def _fill(value, tmp):
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_fill(v, tmp) for v in value)
    return value


@pytest.mark.parametrize("case", ALLOWED, ids=[c[0] for c in ALLOWED])
def test_sources_allowed(case, local_sources):
    from mlenv.sources import check_sources

    _, url, manager, inputs, index = _fill(case, local_sources)
    check_sources(lock_of(url, manager=manager, inputs=inputs, index=index))


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_sources_refused(case, local_sources):
    from mlenv.sources import check_sources

    _, url, manager, inputs, index, message = _fill(case, local_sources)
    with pytest.raises(LockError) as err:
        check_sources(lock_of(url, manager=manager, inputs=inputs, index=index))
    text = str(err.value)
    assert message in text and ("fixalpha" in text or "libfix" in text) and "hunter2pw" not in text
    assert len(err.value.message.splitlines()) == 1


def test_a_lock_may_not_declare_a_source_its_spec_does_not(tmp_path):
    from mlenv.locking import inputs_of
    from mlenv.sources import check_sources

    d = write_spec(
        tmp_path,
        """
        [environment]
        name = "srcs"
        python = "3.11"
        [pypi]
        dependencies = ["fixalpha"]
    """,
    )
    spec = load_spec(d / "mlenv.toml")
    url = "https://evil.example/files/fixalpha-1.1.0-py3-none-any.whl"
    lock = lock_of(url, inputs={**inputs_of(spec), "extra-index-urls": ["https://evil.example/simple"]})
    check_sources(lock)  # alone, the lock is self-consistent ...
    with pytest.raises(
        LockError, match="declares a source mlenv.toml does not: PyPI index https://evil.example/simple"
    ):
        check_sources(lock, spec)  # ... but its spec never declared that index


def test_a_fresh_lock_declaring_more_than_its_spec_is_refused(locked_project, tmp_path):
    """The spec hash matches (the lock claims to be this spec's solve) but [inputs] names
    an extra index: tampering. lock --check fails, lock replaces it, install refuses."""

    def mutate(lock):
        lock.inputs["extra-index-urls"] = ["https://evil.example/simple"]

    project = craft(locked_project, tmp_path / "proj", mutate)
    err = refusal(mlenv.check, project)
    assert "declares a source mlenv.toml does not: PyPI index https://evil.example/simple" in err.message
    assert err.exit_code == 1  # lock --check: exit 1
    line = refusal(mlenv.install, tmp_path / "p", spec=project, python=BASE_PYTHON).message
    assert "declares a source mlenv.toml does not" in line
    assert "solving from scratch and replacing it" in "\n".join(mlenv.lock(project).warnings)
    assert (project / "mlenv.lock").read_bytes() == (locked_project / "mlenv.lock").read_bytes()


def test_editing_the_specs_index_is_staleness_not_tampering(locked_project, tmp_path, pypi_index_path):
    project = tmp_path / "proj"
    shutil.copytree(locked_project, project)
    spec = project / "mlenv.toml"
    spec.write_text(re.sub(r'index-url = ".*"', f'index-url = "{pypi_index_path.as_uri()}"', spec.read_text()))
    result = mlenv.check(project)  # lock --check: stale (exit 1), not refused
    said = "; ".join(result.reasons + result.notes)
    assert not result.ok and "index-url changed" in said and "declares a source" not in said
    warnings = "\n".join(mlenv.lock(project).warnings)
    assert "refusing" not in warnings and "replacing it" not in warnings
    assert pypi_index_path.as_uri() in (project / "mlenv.lock").read_text()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 404 (or a redirect to `location`), recording every request."""

    requests: list[str] = []
    location: str | None = None

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    handler = type("Rec", (_Recorder,), {"requests": [], "location": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_install_never_reads_an_undeclared_file(locked_project, tmp_path):
    """The finding `file:///etc/shadow is read and its hash printed`: a FIFO stands for the
    file, so a read would block the command (and time out the test). A CLI run on purpose:
    the subprocess's timeout is what turns such a read into a failure instead of a hung run."""
    fifo = tmp_path / "shadow"
    os.mkfifo(fifo)

    def mutate(lock):
        pypi_pkg(lock).url = fifo.as_uri()

    project = craft(locked_project, tmp_path / "proj", mutate)
    line = refused(mlenv_cli("install", "--prefix", tmp_path / "p", "--python", BASE_PYTHON, cwd=project, timeout=60))
    assert f"PyPI package fixalpha 1.1.0: {fifo.as_uri()} is not from a source the lock declares" in line


def test_install_never_requests_an_undeclared_server(locked_project, tmp_path, recorder, monkeypatch):
    server, handler = recorder
    port = server.server_address[1]

    def mutate(lock):
        pypi_pkg(lock).url = f"http://127.0.0.1:{port}/fixalpha-1.1.0-py3-none-any.whl"

    project = craft(locked_project, tmp_path / "proj", mutate)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    line = refusal(mlenv.install, tmp_path / "p", spec=project, python=BASE_PYTHON).message
    assert "is not from a source the lock declares" in line and handler.requests == []


def test_a_redirect_to_link_local_is_refused(recorder, tmp_path):
    from mlenv.runtime.errors import InstallError
    from mlenv.runtime.fetch import fetch_artifacts
    from mlenv.runtime.plan import Artifact

    server, handler = recorder
    handler.location = "http://169.254.169.254/latest/meta-data/x.whl"
    url = f"http://127.0.0.1:{server.server_address[1]}/files/fixalpha-1.1.0-py3-none-any.whl"
    with pytest.raises(InstallError, match="refused a redirect to a link-local address"):
        fetch_artifacts([Artifact("pypi", "fixalpha", "1.1.0", url, "a" * 64)], cache=tmp_path / "cache")
    assert handler.requests == ["/files/fixalpha-1.1.0-py3-none-any.whl"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no partial file left


def test_lock_refuses_what_it_solved_from_an_undeclared_host(tmp_path, fixture_paths, monkeypatch):
    """An index whose page links a file on another server: `mlenv lock` says so and
    writes nothing (install would refuse that lock)."""
    from plugin_fixtures import IndexServer

    root = tmp_path / "idx"
    shutil.copytree(fixture_paths["pypi"], root)
    with IndexServer(root) as files, IndexServer(root) as index:
        for page in (root / "simple" / "fixalpha").iterdir():
            page.write_text(page.read_text().replace("../../files/", files.url + "/files/"))
        d = write_spec(
            tmp_path / "proj",
            f"""
            [environment]
            name = "elsewhere"
            python = "{PY}"
            [pypi]
            index-url = "{index.url}/simple"
            dependencies = ["fixalpha==1.1.0"]
            [image]
            base = "{UNRESOLVABLE}"
        """,
        )
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        line = refusal(mlenv.lock, d).message
    assert "is not from a source the lock declares" in line and "nothing was written" in line
    assert not (d / "mlenv.lock").exists()


# --- 3. cached artifacts are verified on use ---------------------------------------------------


def test_a_damaged_cache_entry_is_fetched_again(locked_project, tmp_path, pypi_server, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlenv.install(tmp_path / "a", spec=locked_project, python=BASE_PYTHON)
    pkg = pypi_pkg(read_lock(locked_project / "mlenv.lock"))
    entry = tmp_path / "cache" / "mlenv" / "artifacts" / "sha256" / pkg.sha256
    assert hashlib.sha256(entry.read_bytes()).hexdigest() == pkg.sha256
    os.chmod(entry, 0o644)
    entry.write_bytes(b"not a wheel")  # bit rot, or someone with write access to the cache
    before = len(pypi_server.requests)
    mlenv.install(tmp_path / "b", spec=locked_project, python=BASE_PYTHON)
    fetched = pypi_server.requests[before:]
    assert [r for r in fetched if r.endswith(pkg.url.rsplit("/", 1)[1])], fetched  # fetched again, not used
    assert hashlib.sha256(entry.read_bytes()).hexdigest() == pkg.sha256
    assert mlenv.verify(prefix=tmp_path / "b", spec=locked_project).ok


# --- 4. a full disk names the file -------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs mounted by the test (as root), with some directories made, then
    filled up. Skipped where mounting is not permitted."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_up(mnt: Path) -> None:
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith((".tmp", ".new", ".part"))]


def test_disk_full_names_the_file(full_disk, locked_project, tmp_path, monkeypatch):
    from mlenv.runtime.errors import WriteError
    from mlenv.runtime.fsutil import atomic_write

    proj = full_disk / "proj"
    proj.mkdir()
    shutil.copy(locked_project / "mlenv.toml", proj / "mlenv.toml")
    cache = full_disk / "cache" / "mlenv" / "artifacts" / "sha256"
    cache.mkdir(parents=True)
    blobs = full_disk / "registry"
    blobs.mkdir()
    _fill_up(full_disk)

    with pytest.raises(WriteError) as err:  # the primitive
        atomic_write(full_disk / "x.txt", b"data")
    assert str(full_disk / "x.txt") in str(err.value) and "No space left on device" in str(err.value)
    assert isinstance(err.value, OSError) and err.value.filename == str(full_disk / "x.txt")

    # mlenv lock: the lock file
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c1"))
    line = refusal(mlenv.lock, proj).message
    assert line == f"could not write {proj / 'mlenv.lock'}: No space left on device"

    # mlenv install: the artifact being downloaded into the cache
    shutil.rmtree(tmp_path / "inst", ignore_errors=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(full_disk / "cache"))
    line = refusal(mlenv.install, tmp_path / "inst", spec=locked_project, python=BASE_PYTHON).message
    assert line.startswith(f"could not write {cache}/") and line.endswith(": No space left on device")

    # mlenv register: the registry blob
    line = refusal(mlenv.register, locked_project, registry=str(blobs), image=False).message
    # the index is created first (an index without blobs is fine, blobs without an index are damage)
    assert line.startswith((f"could not write {blobs / 'blobs' / 'sha256'}/", f"{blobs / 'index.sqlite3'}: "))
    assert "disk is full" in line or "No space left" in line
    assert _temp_files(full_disk) == []


# --- 5. the pair is written all or none; temporary files --------------------------------------


def _pair_dir(tmp_path: Path) -> tuple[Path, dict, dict]:
    d = tmp_path / "pair"
    d.mkdir(parents=True)
    old = {"mlenv.toml": b"spec v1\n", "mlenv.lock": b"lock v1\n"}
    new = {"mlenv.toml": b"spec v2\n", "mlenv.lock": b"lock v2\n"}
    for name, data in old.items():
        (d / name).write_bytes(data)
    return d, old, new


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _state(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir()}


def _commit_only(d: Path, new: dict, old: dict, renamed: int) -> None:
    """Leave a directory as a process killed after the commit (the journal written) and
    after `renamed` of the renames would."""
    import json

    from mlenv.runtime.fsutil import make_temp, write_fd

    entries = []
    for name, data in new.items():
        fd, tmp = make_temp(d, name, ".new")
        write_fd(fd, data)
        os.close(fd)
        entries.append({"name": name, "tmp": tmp.name, "old": _sha(old[name]), "new": _sha(data)})
    (d / ".mlenv.journal").write_text(json.dumps({"format": "mlenv-journal-v1", "files": entries}))
    for e in entries[:renamed]:
        os.replace(d / e["tmp"], d / e["name"])


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_recover_completes_a_committed_write(tmp_path, renamed):
    from mlenv.runtime.journal import recover

    d, old, new = _pair_dir(tmp_path)
    _commit_only(d, new, old, renamed)
    assert recover(d) == []
    assert _state(d) == new


def test_recover_removes_an_uncommitted_write(tmp_path):
    from mlenv.runtime.fsutil import make_temp, write_fd
    from mlenv.runtime.journal import recover

    d, old, new = _pair_dir(tmp_path)
    for name, data in new.items():  # killed before the journal: only temporary files
        fd, _ = make_temp(d, name, ".new")
        write_fd(fd, data)
        os.close(fd)
    fd, _ = make_temp(d, "mlenv.lock")  # and an atomic_write's
    os.close(fd)
    recover(d)
    assert _state(d) == old


def test_recover_keeps_a_file_changed_since(tmp_path):
    from mlenv.runtime.journal import recover

    d, old, new = _pair_dir(tmp_path)
    _commit_only(d, new, old, 1)  # the spec was replaced; then someone edits the lock by hand
    (d / "mlenv.lock").write_bytes(b"edited\n")
    notes = recover(d)
    assert _state(d) == {"mlenv.toml": new["mlenv.toml"], "mlenv.lock": b"edited\n"}
    assert len(notes) == 1 and "kept as it is" in notes[0]
    d2, old, new = _pair_dir(tmp_path / "two")
    _commit_only(d2, new, old, 0)  # nothing renamed yet, and the spec edited: the write is dropped
    (d2 / "mlenv.toml").write_bytes(b"edited\n")
    assert "dropped" in recover(d2)[0]
    assert _state(d2) == {"mlenv.toml": b"edited\n", "mlenv.lock": old["mlenv.lock"]}


def test_a_forged_journal_cannot_move_files(tmp_path):
    import json

    from mlenv.runtime.journal import recover

    d, old, _ = _pair_dir(tmp_path)
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    forged = [{"name": "../outside", "tmp": ".mlenv.toml.abcdefgh.new", "old": None, "new": "0" * 64},
              {"name": "mlenv.toml", "tmp": "../../outside", "old": None, "new": "0" * 64}]  # fmt: skip
    for entry in forged:
        (d / ".mlenv.journal").write_text(json.dumps({"format": "mlenv-journal-v1", "files": [entry]}))
        recover(d)
        assert outside.read_bytes() == b"keep" and _state(d) == old


def test_a_live_writers_temporary_file_is_not_swept(tmp_path):
    from mlenv.runtime.fsutil import sweep_temp_files

    code = (
        "import sys, time; from pathlib import Path; from mlenv.runtime.fsutil import make_temp\n"
        "fd, p = make_temp(Path(sys.argv[1]), 'mlenv.lock'); print(p.name, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        name = child.stdout.readline().strip()
        assert sweep_temp_files(tmp_path, ["mlenv.lock"]) == [] and (tmp_path / name).exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert sweep_temp_files(tmp_path, ["mlenv.lock"]) == [name] and not (tmp_path / name).exists()


def test_scratch_directories_of_dead_processes_are_swept(tmp_path, monkeypatch):
    import tempfile

    from mlenv.runtime.fsutil import make_scratch, sweep_scratch

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the child's
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this process's
    code = ("import sys, time; from mlenv.runtime.fsutil import make_scratch\n"
            "path, fd = make_scratch('uv'); print(path.name, flush=True); time.sleep(60)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        name = child.stdout.readline().strip()
        assert sweep_scratch() == [] and (tmp_path / name).is_dir()  # alive: kept
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    path, fd = make_scratch("install")  # the next one removes the dead process's
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    finally:
        os.close(fd)


def test_restore_writes_the_pair_through_the_journal(locked_project, tmp_path):
    """Both files or neither, and a local change is never overwritten (unchanged behaviour)."""
    from mlenv.api.registry import write_pair
    from mlenv.registry.base import RegistryError

    d, old, new = _pair_dir(tmp_path)
    assert write_pair(d, new["mlenv.toml"], new["mlenv.lock"], force=False,
                      known={_sha(v) for v in old.values()}) == ["mlenv.toml", "mlenv.lock"]  # fmt: skip
    assert _state(d) == new
    with pytest.raises(RegistryError, match="local changes"):
        write_pair(d, old["mlenv.toml"], old["mlenv.lock"], force=False, known=set())
    assert _state(d) == new


def test_environment_save_of_a_registered_pair(locked_project, tmp_path):
    from mlenv.api.environment import Environment

    reg = tmp_path / "reg"
    mlenv.register(locked_project, registry=str(reg), image=False)
    Environment.get("sec-io", 1, registry=str(reg), directory=tmp_path / "saved").save()
    assert (tmp_path / "saved" / "mlenv.lock").read_bytes() == (locked_project / "mlenv.lock").read_bytes()
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["mlenv.lock", "mlenv.toml"]


# --- 8. the one scrubber -----------------------------------------------------------------------


def test_scrub_strips_literal_userinfo_keeps_references_and_masks_remembered_secrets():
    from mlenv.runtime import secrets

    text = ("https://alice:hunter2xyz@idx.example/simple and https://${USER}:${TOKEN}@idx.example/simple "
            "and https://__token__:${TOKEN}@x.example and `https://tok3n-literal@h.example/x`")  # fmt: skip
    out = secrets.scrub(text)
    assert "hunter2xyz" not in out and "alice" not in out and "tok3n-literal" not in out
    assert "https://${USER}:${TOKEN}@idx.example/simple" in out and "__token__:${TOKEN}@" in out
    secrets.remember("s3cr3t/v@lue")
    assert secrets.scrub("got s3cr3t/v@lue and s3cr3t%2Fv%40lue") == "got **** and s3cr3t%2Fv%40lue"
    secrets.remember("s3cr3t%2Fv%40lue")  # remembered in its URL form: its decoded form is masked too
    assert secrets.scrub("s3cr3t/v@lue s3cr3t%2Fv%40lue") == "**** ****"


def test_cli_messages_mask_secrets_mlenv_holds(locked_project, tmp_path, pypi_server):
    """A secret from MLENV_INDEX_URL is masked in any error line, wherever it appears."""
    secret = "Zq8-pa55word-from-env"

    def mutate(lock):
        pkg = pypi_pkg(lock)
        pkg.url = pkg.url.rsplit("/", 1)[0] + f"/{secret}/fixalpha-1.1.0-py3-none-any.whl"  # a 404 on the index host

    project = craft(locked_project, tmp_path / "proj", mutate)
    env = {"MLENV_INDEX_URL": pypi_server.replace("://", f"://ci:{secret}@"), "XDG_CACHE_HOME": str(tmp_path / "c")}
    proc = mlenv_cli("install", "--prefix", tmp_path / "p", "--python", BASE_PYTHON, cwd=project, env=env)
    line = refused(proc)
    assert "could not download PyPI package fixalpha" in line and "/****/fixalpha" in line
    assert secret not in proc.stderr + proc.stdout


def test_sigterm_runs_cleanups_and_exits_143(tmp_path):
    """SIGTERM becomes an exception in the CLI: cleanups run, exit 143, no traceback."""
    code = (
        "import sys, time, click\n"
        "from mlenv.cli import main as m\n"
        "@m.cli.command('sleepy')\n"
        "def sleepy():\n"
        "    from mlenv.runtime.fsutil import make_temp\n"
        "    from pathlib import Path\n"
        "    fd, p = make_temp(Path(sys.argv[1]), 'mlenv.lock')\n"
        "    try:\n"
        "        print('ready', flush=True); time.sleep(60)\n"
        "    finally:\n"
        "        p.unlink()\n"
        "m.LazyGroup.get_command = lambda self, ctx, name: sleepy\n"
        "m.main(['sleepy'])\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_write_error_is_an_mlenv_error_and_an_oserror():
    import errno

    from mlenv.runtime.errors import WriteError

    err = WriteError("/x/y", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, MlenvError) and isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(err).startswith("could not write /x/y: No space left on device\n  hint: free space")
