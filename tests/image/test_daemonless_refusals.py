"""What the daemonless builder refuses because building it would run code: a PyPI sdist
and a conda package with a post-link script. `builder="daemonless"` says so in a one-line
MlenvError (in-process); `auto` takes BuildKit instead (mlenv.image.engine.choose on the
real lock and artifacts; a real build for the conda case)."""

from __future__ import annotations

import io
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest
from refusals import one_line

import mlenv
from mlenv.errors import MlenvError
from mlenv.image.engine import BuildJob, choose
from mlenv.lockfile import read_lock
from mlenv.spec import load_spec

pytestmark = pytest.mark.docker
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """An empty mlenv cache; no builder or CA bundle from the environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)
    monkeypatch.delenv("MLENV_BUILDER", raising=False)


def project(d: Path, name: str, body: str, base: str, *, python: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    head = f'[environment]\nname = "{name}"\nplatforms = ["linux-64"]\n' + (f'python = "{python}"\n' if python else "")
    image = f'\n[image]\nbase = "{base}"\npython = "/usr/bin/python3"\n'
    (d / "mlenv.toml").write_text(head + textwrap.dedent(body) + image)
    mlenv.lock(d)
    return d


def job_of(d: Path, artifacts: dict[str, Path]) -> BuildJob:
    spec, lock = load_spec(d / "mlenv.toml"), read_lock(d / "mlenv.lock")
    return BuildJob(spec=spec, lock=lock, platform="linux-64", ref=f"mlenv-refusal-{RUN}:x", artifacts=artifacts,
                    log_path=d / "build.log", layout=str(d / "out"))  # fmt: skip


def assert_refused(d: Path, layout: Path, what: str) -> None:
    """build(builder="daemonless") of d is refused in one line that says why."""
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, builder="daemonless", layout=layout)
    line = one_line(e)
    assert e.value.exit_code != 0 and "the daemonless builder cannot build this lock" in line and what in line, line


def _sdist(path: Path) -> None:
    """A local sdist whose metadata is static (PKG-INFO 2.2, PEP 621 pyproject): uv locks it
    without building; installing it would run its build backend."""
    files = {
        "sdpkg-1.0.0/pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.2"]\n'
        'build-backend = "flit_core.buildapi"\n[project]\nname = "sdpkg"\nversion = "1.0.0"\ndescription = "x"\n'
        "dependencies = []\n",
        "sdpkg-1.0.0/PKG-INFO": "Metadata-Version: 2.2\nName: sdpkg\nVersion: 1.0.0\nSummary: x\n",
        "sdpkg-1.0.0/sdpkg/__init__.py": "X = 1\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))


def test_sdist_is_refused_by_daemonless_and_auto_takes_buildkit(tmp_path, base_image_remote):
    from mlenv.image.buildkit import find_cli

    index = tmp_path / "empty-index"
    index.mkdir()
    (index / "index.html").write_text("<html><body></body></html>\n")
    d = tmp_path / "sdist"
    d.mkdir()
    _sdist(d / "sdpkg-1.0.0.tar.gz")
    body = f"""
        [pypi]
        index-url = "{index.as_uri()}"
        dependencies = ["sdpkg @ ./sdpkg-1.0.0.tar.gz"]
        """
    project(d, f"refuse-sdist-{RUN}", body, base_image_remote, python="3.11")
    (pkg,) = read_lock(d / "mlenv.lock").for_platform("linux-64", "pypi")
    assert pkg.url.endswith(".tar.gz")

    assert_refused(d, tmp_path / "out", "is an sdist")
    assert not (tmp_path / "out").exists()

    job = job_of(d, {pkg.sha256: d / "sdpkg-1.0.0.tar.gz"})
    with pytest.raises(MlenvError, match="sdpkg 1.0.0 is an sdist"):
        choose("daemonless", job)
    if find_cli() is None:
        pytest.skip("no docker CLI with BuildKit: auto has nothing to fall back to")
    assert choose("auto", job).name == "buildkit"


def test_post_link_script_is_refused_by_daemonless_and_auto_builds_with_buildkit(
    tmp_path, base_image_remote, conda_channel, docker_client
):
    from mlenv.image.buildkit import find_cli
    from mlenv.installing import fetch

    body = f"""
        [conda]
        channels = ["{conda_channel}"]
        dependencies = ["fixpostlink", "mlenv-hello"]
        [variables]
        RUN = "{RUN}"
        """
    d = project(tmp_path / "postlink", f"refuse-postlink-{RUN}", body, base_image_remote)
    lock = read_lock(d / "mlenv.lock")
    assert "fixpostlink" in {p.name for p in lock.for_platform("linux-64", "conda")}

    assert_refused(
        d, tmp_path / "out", "conda package fixpostlink 1.0.0 has a post-link script (bin/.fixpostlink-post-link.sh)"
    )
    assert not (tmp_path / "out").exists()

    # the refusal comes from the fetched archives, before anything is built: `auto` moves on
    artifacts = fetch(lock.for_platform("linux-64", "conda"), cache=tmp_path / "artifacts")
    with pytest.raises(MlenvError, match="post-link script"):
        choose("daemonless", job_of(d, artifacts))
    if find_cli() is None:
        pytest.skip("no docker CLI with BuildKit: auto has nothing to fall back to")
    assert choose("auto", job_of(d, artifacts)).name == "buildkit"

    built = mlenv.build(d, builder="auto")
    try:
        assert built.builder == "buildkit" and built.action == "built"
        out = docker_client.containers.run(built.image, ["cat", "/opt/mlenv/env/share/fixpostlink/README.txt"],
                                           network_mode="none", remove=True)  # fmt: skip
        assert out.decode() == "fixpostlink 1.0.0 ships a post-link script\n"
    finally:
        docker_client.api.remove_image(built.image, force=True)
