"""pytest plugin: mlenv's local conda channel, local PyPI index and index servers.

Loaded by tests/conftest.py (``pytest_plugins``). Session-scoped fixtures:

    fixture_paths       dict from fixtures/build_fixtures.py:build_all() (paths, URLs)
    conda_channel       str   file:// URL of the conda channel (noarch, linux-64, osx-arm64)
    conda_channel_path  Path  the channel directory
    pypi_index_path     Path  the PEP 503 simple/ directory (file:// also works with uv)
    pypi_server         ServedIndex (a str): http://127.0.0.1:PORT/simple, no auth;
                        also .url, .requests, .rejected, .server
    pypi_auth_server    AuthIndex: .url (http://127.0.0.1:PORT/simple, no credentials),
                        .username "mlenv-user", .password "s3cret-Tok3n",
                        .url_with_credentials, .requests, .rejected, .server
    conda_channel_server IndexServer over the conda channel (no auth); channel URL = .url

The fixtures are built once per session into a pytest tmp dir (about 0.1 s), so
concurrent sessions and xdist workers never share or rewrite a build. Set
MLENV_FIXTURES_DIR to build into (and reuse) a fixed directory instead; builds
there are stamped and locked, so that is safe to run twice or concurrently.

The servers are session-scoped: `.requests` accumulates across tests; call
`.server.clear()` or compare against a snapshot taken at the start of a test.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"

PYPI_USERNAME = "mlenv-user"
PYPI_PASSWORD = "s3cret-Tok3n"


def _load(modname: str, filename: str):
    """Import a module from fixtures/ by path (fixtures/ is not a package)."""
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, FIXTURES_DIR / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


build_fixtures = _load("mlenv_fixtures_build", "build_fixtures.py")
fixture_server = _load("mlenv_fixtures_server", "server.py")
build_all = build_fixtures.build_all
IndexServer = fixture_server.IndexServer

__all__ = ["AuthIndex", "IndexServer", "ServedIndex", "build_all", "build_fixtures", "PYPI_USERNAME", "PYPI_PASSWORD"]


class ServedIndex(str):
    """An index URL (it *is* the str) that also exposes the server behind it."""

    server: IndexServer

    def __new__(cls, url: str, server: IndexServer) -> ServedIndex:
        obj = super().__new__(cls, url)
        obj.server = server
        return obj

    @property
    def url(self) -> str:
        return str(self)

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    @property
    def rejected(self) -> list[str]:
        return self.server.rejected


@dataclass(frozen=True)
class AuthIndex:
    """A PyPI simple index behind HTTP Basic auth."""

    url: str  # http://127.0.0.1:PORT/simple, without credentials
    username: str
    password: str
    server: IndexServer

    @property
    def url_with_credentials(self) -> str:
        return self.server.auth_url + "/simple"

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    @property
    def rejected(self) -> list[str]:
        return self.server.rejected


@pytest.fixture(scope="session")
def fixture_paths(tmp_path_factory) -> dict:
    outdir = os.environ.get("MLENV_FIXTURES_DIR") or tmp_path_factory.mktemp("mlenv-fixtures")
    return build_all(outdir)


@pytest.fixture(scope="session")
def conda_channel_path(fixture_paths) -> Path:
    return fixture_paths["conda_channel"]


@pytest.fixture(scope="session")
def conda_channel(conda_channel_path) -> str:
    return conda_channel_path.as_uri()


@pytest.fixture(scope="session")
def pypi_index_path(fixture_paths) -> Path:
    return fixture_paths["pypi_simple"]


@pytest.fixture(scope="session")
def pypi_server(fixture_paths):
    with IndexServer(fixture_paths["pypi"]) as server:
        yield ServedIndex(server.url + "/simple", server)


@pytest.fixture(scope="session")
def pypi_auth_server(fixture_paths):
    with IndexServer(fixture_paths["pypi"], PYPI_USERNAME, PYPI_PASSWORD) as server:
        yield AuthIndex(url=server.url + "/simple", username=PYPI_USERNAME, password=PYPI_PASSWORD, server=server)


@pytest.fixture(scope="session")
def conda_channel_server(conda_channel_path):
    with IndexServer(conda_channel_path) as server:
        yield server
