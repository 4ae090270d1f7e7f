"""mlenv.dockerd, the one connection to a Docker Engine: its unix-socket inspect
against the SDK's, absent and hostile references, and the one-line errors when no
daemon answers or a call is refused (the real Engine of the services env)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlenv import dockerd
from mlenv.errors import MlenvError
from mlenv.image.docker import DockerEngine

RUN = uuid.uuid4().hex[:8]


@given(st.text(max_size=60))
def test_api_path_keeps_a_reference_inside_the_path(reference):
    path = dockerd.api_path("/images/{}/json", reference)
    assert path.startswith("/images/") and path.endswith("/json")
    assert not any(c in path for c in " ?#\r\n\t\0")


@pytest.mark.docker
def test_socket_inspect_is_the_sdk_inspect(docker_client, base_image):
    ours = dockerd.inspect(base_image)
    sdk = docker_client.api.inspect_image(base_image)
    assert ours is not None
    for key in ("Id", "RepoTags", "Architecture", "Os", "RootFS"):
        assert ours[key] == sdk[key]
    assert dockerd.inspect(base_image, docker_client)["Id"] == sdk["Id"]  # the SDK transport answers the same
    assert dockerd.has(base_image) and dockerd.answers()
    with DockerEngine() as engine:
        assert engine.image_id(base_image) == sdk["Id"]


@pytest.mark.docker
@pytest.mark.parametrize(
    "reference",
    [f"mlenv-test/absent-{RUN}:x", "a b", "x?all=1", "x#y", "../containers", "x/../../info", "/_ping", "", "\r\nX: y"],
)
def test_absent_or_hostile_reference_is_none(docker_client, reference):
    assert dockerd.inspect(reference) is None
    assert dockerd.inspect(reference, docker_client) is None
    assert not dockerd.has(reference)


@pytest.mark.docker
def test_a_refused_call_is_one_line(docker_client):
    with pytest.raises(MlenvError) as err:
        dockerd.request("GET", f"/images/mlenv-test/absent-{RUN}:x/json")
    msg = err.value.message
    assert msg.startswith(f"the Docker daemon at DOCKER_HOST={dockerd.docker_host()} refused GET /images/")
    assert "HTTP 404" in msg and "\n" not in msg


@pytest.mark.parametrize("host", ["unix:///nonexistent/docker.sock", "unix://{file}", "tcp://127.0.0.1:1"])
def test_no_daemon_is_one_line_naming_docker_host(monkeypatch, tmp_path, host):
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_text("not a socket")
    host = host.format(file=not_a_socket)
    monkeypatch.setenv("DOCKER_HOST", host)
    for call in (lambda: dockerd.connect(timeout=5), lambda: dockerd.inspect("mlenv-test/x:1")):
        with pytest.raises(MlenvError) as err:
            call()
        assert err.value.message.startswith(f"cannot reach the Docker daemon at DOCKER_HOST={host} (")
        assert "\n" not in err.value.message and err.value.hint
    assert not dockerd.has("mlenv-test/x:1") and not dockerd.answers()
    assert DockerEngine.available() is None


def test_default_host(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert dockerd.docker_host() == "unix:///var/run/docker.sock"
    assert dockerd.socket_path() == "/var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "")
    assert dockerd.docker_host() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert dockerd.socket_path() is None
