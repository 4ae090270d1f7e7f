"""Pytest plugin: Docker Engine, local OCI registry, test base image.

Loaded from ``tests/conftest.py`` via ``pytest_plugins``. The services come
from ``bash .ci/services.sh up``, which writes ``.ci/_work/services.env``
(source it before running pytest by hand; ``bash .ci/test`` does it for you).

Environment:

- ``MLENV_REQUIRE_DOCKER=1``: a missing daemon, registry or base image is a
  test *failure* (CI). Otherwise those tests are *skipped*.
- ``MLENV_TEST_REGISTRY``: ``host:port`` of the local registry (plain http).
- ``MLENV_TEST_BASE_IMAGE``: local base image (default
  ``mlenv-test/debian-python:bookworm``), built from debootstrap.
- ``MLENV_TEST_BASE_IMAGE_REMOTE``: the same image in the registry (default
  ``$MLENV_TEST_REGISTRY/$MLENV_TEST_BASE_IMAGE``).

Markers: a test marked ``docker`` gets the ``docker_client`` semantics (skip
without a daemon unless required); one marked ``registry`` gets the
``test_registry`` semantics.

Containers started by tests run with ``network_mode="none"``: use
``run_in_container`` (or the ``docker_run`` fixture), which enforces it.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import pytest

DEFAULT_BASE_IMAGE = "mlenv-test/debian-python:bookworm"

# Accept headers for a manifest HEAD/GET against a distribution registry.
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

_HINT = "start the services with `bash .ci/services.sh up` and `source .ci/_work/services.env`"


def docker_required() -> bool:
    """True when Docker-backed services must be present (CI): MLENV_REQUIRE_DOCKER=1."""
    return os.environ.get("MLENV_REQUIRE_DOCKER", "") == "1"


def _unavailable(what: str) -> NoReturn:
    """Fail (when required) or skip because a service is missing."""
    if docker_required():
        pytest.fail(f"{what} (MLENV_REQUIRE_DOCKER=1, so this is an error; {_HINT})", pytrace=False)
    pytest.skip(f"{what} ({_HINT}, or set MLENV_REQUIRE_DOCKER=1 to make this an error)")


def registry_session():
    """A requests session for the local plain-http registry.

    ``trust_env=False`` so that HTTP(S)_PROXY variables never route loopback
    traffic through a proxy.
    """
    import requests

    s = requests.Session()
    s.trust_env = False
    return s


def run_in_container(client: Any, image: str, command: Any, **kwargs: Any) -> bytes:
    """Run ``command`` in a throw-away container with no network; return stdout.

    Raises ``docker.errors.ContainerError`` on a non-zero exit.
    """
    mode = kwargs.setdefault("network_mode", "none")
    if mode != "none":
        raise ValueError(f"test containers must use network_mode='none', not {mode!r}")
    kwargs.setdefault("remove", True)
    kwargs.setdefault("stdout", True)
    kwargs.setdefault("stderr", False)
    return client.containers.run(image, command, **kwargs)


# ------------------------------------------------------------------ fixtures --


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client of the Engine at DOCKER_HOST whose ``ping()`` answers
    (made as mlenv makes its own: mlenv.dockerd.connect)."""
    # Errors are turned into skip/fail outside the except blocks so that the
    # report shows one clear message, not a chained traceback.
    from mlenv import dockerd
    from mlenv.errors import MlenvError

    problem = None
    try:
        client = dockerd.connect(timeout=120)
    except MlenvError as exc:
        problem = exc.message
    if problem:
        _unavailable(problem)
    yield client
    client.close()


@pytest.fixture
def docker_run(docker_client):
    """``docker_run(image, command, **kw) -> bytes`` with network_mode='none'."""

    def run(image: str, command: Any, **kwargs: Any) -> bytes:
        return run_in_container(docker_client, image, command, **kwargs)

    return run


@pytest.fixture(scope="session")
def test_registry() -> str:
    """``host:port`` of the local OCI registry (plain http), checked reachable."""
    addr = os.environ.get("MLENV_TEST_REGISTRY", "").strip()
    if not addr:
        _unavailable("MLENV_TEST_REGISTRY is not set")
    url = f"http://{addr}/v2/"
    problem = None
    try:
        with registry_session() as s:
            r = s.get(url, timeout=5)
    except Exception as exc:
        problem = f"the test registry {addr} does not answer: GET {url}: {exc}"
    if problem:
        _unavailable(problem)
    if r.status_code != 200:
        _unavailable(f"the test registry {addr} answered GET {url} with HTTP {r.status_code}")
    return addr


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """Name of the local test base image, verified present in the daemon."""
    import docker

    name = os.environ.get("MLENV_TEST_BASE_IMAGE", "").strip() or DEFAULT_BASE_IMAGE
    try:
        docker_client.images.get(name)
        present = True
    except docker.errors.ImageNotFound:
        present = False
    if not present:
        _unavailable(f"the base image {name} is not in the Docker daemon")
    return name


@pytest.fixture(scope="session")
def base_image_remote(test_registry) -> str:
    """``REGISTRY/repo:tag`` of the base image's copy in the test registry, verified present."""
    local = os.environ.get("MLENV_TEST_BASE_IMAGE", "").strip() or DEFAULT_BASE_IMAGE
    ref = os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE", "").strip() or f"{test_registry}/{local}"
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = rest, "latest"
    url = f"http://{host}/v2/{repo}/manifests/{tag}"
    problem = None
    try:
        with registry_session() as s:
            r = s.head(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=5)
    except Exception as exc:
        problem = f"cannot check {ref} in the registry: HEAD {url}: {exc}"
    if problem:
        _unavailable(problem)
    if r.status_code != 200:
        _unavailable(f"the base image {ref} is not in the registry (HEAD {url} -> HTTP {r.status_code})")
    return ref


@pytest.fixture(autouse=True)
def _mlenv_service_markers(request):
    """Give ``@pytest.mark.docker`` / ``@pytest.mark.registry`` tests the
    skip-or-fail semantics of ``docker_client`` / ``test_registry``."""
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_client")
    if request.node.get_closest_marker("registry") is not None:
        request.getfixturevalue("test_registry")
