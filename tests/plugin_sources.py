"""pytest plugin: the non-index sources of issue 13, served for real on 127.0.0.1.

    git_tools      a git repository served over smart HTTP (`git http-backend` behind
                   fixtures/git_server.py): package `teamtools` in subdirectory tools/,
                   tag v1.0 (annotated), branch main; .url, .repo_url, .work, .commit,
                   .rewrite_tag(...) (history rewritten under the same tag), .server
    wheel_site     a static server (fixtures/server.py) holding a wheel for a direct URL
                   (`urlpkg`) and a find-links page flinks/ listing `flpkg` (not on the
                   fixture index) and fixalpha 1.1.0; .url, .wheel_url, .wheel_sha256,
                   .find_links, .server, .root
    make_project   a function: a project directory with mlenv.toml and a local package
                   libs/features (package `features`), both built with uv's own build
                   backend (uv_build), so nothing is fetched from PyPI

Every package has a file that is in its source but never in its wheel (a marker the
image tests look for), and the build backend is uv_build (uv builds it without a
network: the fixture index has no build backends).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from plugin_fixtures import IndexServer, _load, build_fixtures

git_server = _load("mlenv_fixtures_git_server", "git_server.py")
GitServer = git_server.GitServer

SOURCE_MARKER = "SOURCE-ONLY-MARKER-7f3a"  # in the sources, never in a wheel or an image
UV_BUILD = '[build-system]\nrequires = ["uv_build>=0.8,<0.30"]\nbuild-backend = "uv_build"\n'


def package_files(name: str, version: str, *, deps=(), module: str | None = None, body: str = "") -> dict[str, str]:
    """A uv_build project: pyproject.toml, src/<module>/__init__.py, and a source-only file."""
    module = module or name.replace("-", "_")
    pyproject = UV_BUILD + textwrap.dedent(f"""
        [project]
        name = "{name}"
        version = "{version}"
        requires-python = ">=3.8"
        dependencies = {json.dumps(list(deps))}
        [tool.uv.build-backend]
        module-name = "{module}"
        """)
    return {
        "pyproject.toml": pyproject,
        f"src/{module}/__init__.py": f'__version__ = "{version}"\n{body}',
        "tests/test_source_only.py": f"# {SOURCE_MARKER}\n",
        "NOTES.txt": f"{SOURCE_MARKER}: this file is in the source tree, not in the wheel\n",
    }


@dataclass
class GitTools:
    server: object
    root: Path
    work: Path
    commit: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def repo_url(self) -> str:
        return f"{self.server.url}/tools.git"

    def requirement(self, ref: str = "v1.0", *, url: str | None = None) -> str:
        return f"teamtools @ git+{url or self.repo_url}@{ref}#subdirectory=tools"

    def rewrite_tag(self, tag: str, files: dict[str, str | None]) -> str:
        """History rewritten under the same tag: a new commit, the tag moved to it, force-pushed."""
        commit = git_server.commit_files(self.work, files, f"rewrite {tag}", date=1_700_000_500)
        git_server.git("tag", "-f", "-a", tag, "-m", f"{tag} (rewritten)", cwd=self.work)
        git_server.git("push", "-q", "-f", "origin", "main", "--tags", cwd=self.work)
        return commit

    def add_commit(self, files: dict[str, str | None], message: str = "more") -> str:
        commit = git_server.commit_files(self.work, files, message, date=1_700_001_000)
        git_server.git("push", "-q", "origin", "main", cwd=self.work)
        return commit


@pytest.fixture(scope="session")
def git_tools(tmp_path_factory):
    root = tmp_path_factory.mktemp("git-repos") / "srv"
    root.mkdir()
    files = {f"tools/{k}": v for k, v in package_files("teamtools", "1.0.0", deps=["fixalpha>=1"]).items()}
    files["README.md"] = "team tools (repository root is not the package)\n"
    bare, work, commit = git_server.make_repo(root, "tools", files, tag="v1.0")
    with GitServer(root) as server:
        yield GitTools(server, root, work, commit)


@dataclass
class WheelSite:
    server: IndexServer
    root: Path
    wheel_sha256: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def wheel_url(self) -> str:
        return f"{self.server.url}/direct/urlpkg-1.0.0-py3-none-any.whl"

    @property
    def find_links(self) -> str:
        return f"{self.server.url}/flinks/"


def _wheel(name: str, version: str, *, deps=()) -> tuple[str, bytes]:
    whl = {"name": name, "version": version, "tag": "py3-none-any", "summary": "", "requires_python": ">=3.8",
           "requires_dist": list(deps),
           "files": {f"{name}/__init__.py": (f'__version__ = "{version}"\n'.encode(), 0o644)}}  # fmt: skip
    return build_fixtures.wheel_filename(whl), build_fixtures.wheel_bytes(whl)


@pytest.fixture(scope="session")
def wheel_site(tmp_path_factory, fixture_paths):
    root = tmp_path_factory.mktemp("wheel-site")
    (root / "direct").mkdir()
    (root / "flinks").mkdir()
    (root / "empty").mkdir()
    name, data = _wheel("urlpkg", "1.0.0", deps=["fixalpha>=1"])
    (root / "direct" / name).write_bytes(data)
    links = []
    for pkg, version in (("flpkg", "2.0.0"), ("flpkg", "1.0.0")):
        fname, fdata = _wheel(pkg, version)
        (root / "flinks" / fname).write_bytes(fdata)
        links.append(f'<a href="{fname}#sha256={hashlib.sha256(fdata).hexdigest()}">{fname}</a>')
    shutil.copy(Path(fixture_paths["pypi"]) / "files" / "fixalpha-1.1.0-py3-none-any.whl", root / "flinks")
    links.append('<a href="fixalpha-1.1.0-py3-none-any.whl">fixalpha-1.1.0-py3-none-any.whl</a>')
    (root / "flinks" / "index.html").write_text("<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    (root / "empty" / "index.html").write_text("<html><body><p>Please log in</p></body></html>\n")
    with IndexServer(root) as server:
        yield WheelSite(server, root, hashlib.sha256(data).hexdigest())


@pytest.fixture
def make_project(tmp_path, pypi_server):
    """make_project(deps, **pypi_keys) -> the project directory (mlenv.toml written,
    libs/features created). Base image: the test registry's Debian (user-managed
    /usr/bin/python3), so images need no Docker Hub."""
    import os

    def make(deps, *, name="depforms", directory: Path | None = None, extra: str = "", base: str | None = None,
             features_version: str = "0.1.0") -> Path:  # fmt: skip
        d = directory or tmp_path / name
        d.mkdir(parents=True, exist_ok=True)
        feat = d / "libs" / "features"
        if not feat.exists():
            for rel, text in package_files("features", features_version, deps=["fixalpha>=1"]).items():
                (feat / rel).parent.mkdir(parents=True, exist_ok=True)
                (feat / rel).write_text(text)
        registry = os.environ.get("MLENV_TEST_REGISTRY")
        base = (
            base
            or os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE")
            or (f"{registry}/mlenv-test/debian-python:bookworm" if registry else "mlenv-test/debian-python:bookworm")
        )
        (d / "mlenv.toml").write_text(
            textwrap.dedent(f"""\
            [environment]
            name = "{name}"
            python = "3.11"
            platforms = ["linux-64"]

            [pypi]
            index-url = "{pypi_server}"
            dependencies = {json.dumps(list(deps))}
            """)
            + extra
            + f'\n[image]\nbase = "{base}"\npython = "/usr/bin/python3"\n'
        )
        return d

    return make
