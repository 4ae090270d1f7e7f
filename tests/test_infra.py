"""The test infrastructure itself: Docker daemon, debootstrap base image, local
OCI registry (started by ``bash .ci/services.sh up``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from plugin_docker import MANIFEST_ACCEPT, registry_session, run_in_container

pytestmark = pytest.mark.docker

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _pem_blocks(data: bytes) -> set[bytes]:
    return {b"".join(block.split()) for block in PEM_RE.findall(data)}


def test_daemon_answers(docker_client):
    assert docker_client.ping() is True
    version = docker_client.version()
    assert version.get("ApiVersion"), version


def test_base_image_runs_python311_without_network(docker_client, base_image):
    out = run_in_container(
        docker_client,
        base_image,
        ["python3", "-c", "import socket, sys; print(sys.version); print(sorted(n for _, n in socket.if_nameindex()))"],
    ).decode()
    version, interfaces = out.strip().splitlines()
    assert version.startswith("3.11"), out
    # network_mode="none": only the loopback interface exists.
    assert interfaces == "['lo']", out


def test_run_in_container_refuses_networked_containers(docker_client, base_image):
    with pytest.raises(ValueError, match="network_mode='none'"):
        run_in_container(docker_client, base_image, ["true"], network_mode="host")


@pytest.mark.registry
def test_registry_answers_v2(test_registry):
    with registry_session() as s:
        r = s.get(f"http://{test_registry}/v2/", timeout=5)
    assert r.status_code == 200
    assert r.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"


@pytest.mark.registry
def test_base_image_manifest_in_registry(docker_client, test_registry, base_image, base_image_remote):
    url = f"http://{test_registry}/v2/mlenv-test/debian-python/manifests/bookworm"
    with registry_session() as s:
        r = s.head(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=5)
    assert r.status_code == 200, r.status_code
    digest = r.headers.get("Docker-Content-Digest", "")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), r.headers
    # The registry copy is the local base image: the daemon recorded the same
    # digest when it pushed it.
    repo_digests = docker_client.images.get(base_image).attrs.get("RepoDigests") or []
    assert f"{test_registry}/mlenv-test/debian-python@{digest}" in repo_digests, repo_digests
    assert base_image_remote == f"{test_registry}/mlenv-test/debian-python:bookworm"


@pytest.mark.registry
def test_registry_pull_over_plain_http(docker_client, base_image_remote):
    image = docker_client.images.pull(base_image_remote)
    assert base_image_remote in image.tags


def test_base_image_does_not_trust_the_proxy_ca(docker_client, base_image):
    """The base image has Debian's own CA bundle, not the host's (which also
    trusts the TLS-intercepting proxy): builds that reach PyPI through the proxy
    need mlenv's --ca-bundle option."""
    if not HOST_CA_BUNDLE.is_file():
        pytest.skip(f"host has no {HOST_CA_BUNDLE}")
    host = HOST_CA_BUNDLE.read_bytes()
    image = run_in_container(docker_client, base_image, ["cat", IMAGE_CA_BUNDLE])
    assert _pem_blocks(image), "the base image has no CA certificates (ca-certificates missing?)"
    assert image != host, "the base image's CA bundle is the host's (it must not be copied in)"
    host_only = _pem_blocks(host) - _pem_blocks(image)
    if not host_only and not os.environ.get("MLENV_EXPECT_PROXY_CA"):
        pytest.skip("this host trusts no CA beyond Debian's (no TLS-intercepting proxy here)")
    assert host_only, "every host CA is trusted by the base image: the proxy CA leaked in"
