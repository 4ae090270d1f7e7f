"""`mlenv build` with the default builder (`auto`): the daemonless builder where it can
build the lock (the image is then the same bytes on any machine), a Dockerfile builder
where only a builder that runs commands can ([image] steps), each with one line saying
which it took."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest
from image_api import verified
from refusals import one_line

import mlenv
from mlenv.errors import MlenvError


def _project(tmp_path, base, index, *, steps=()) -> object:
    d = tmp_path / f"choice-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    image = f'base = "{base}"\npython = "/usr/bin/python3"\n' + (
        f"steps = {json.dumps(list(steps))}\n" if steps else ""
    )
    (d / "mlenv.toml").write_text(
        textwrap.dedent(f"""\
        [environment]
        name = "choice"
        python = "3.11"

        [pypi]
        index-url = "{index}"
        dependencies = ["fixalpha==1.1.0"]

        [variables]
        RUN = "{uuid.uuid4().hex}"

        [image]
        """)
        + image
    )
    mlenv.lock(d)
    return d


@pytest.mark.docker
@pytest.mark.registry
def test_auto_builds_daemonless_where_it_can_and_buildkit_where_commands_must_run(
    tmp_path, docker_client, base_image_remote, pypi_server
):
    plain = _project(tmp_path, base_image_remote, pypi_server)
    first = mlenv.build(plain, builder="auto").to_json()
    try:
        assert first["builder"] == "daemonless" and first["action"] == "built"
        labels = docker_client.api.inspect_image(first["image"])["Config"]["Labels"]
        assert labels["org.mlenv.builder"] == "daemonless" and labels["org.mlenv.content-hash"] == first["content_hash"]
        out = docker_client.containers.run(first["image"], ["python", "-c", "import fixalpha; print(fixalpha.__version__)"],
                                           network_mode="none", remove=True)  # fmt: skip
        assert out.decode().strip() == "1.1.0"
        verified(first["image"], plain)
    finally:
        docker_client.api.remove_image(first["image"], force=True)

    steps = _project(tmp_path, base_image_remote, pypi_server, steps=["RUN echo hello > /hello.txt"])
    second = mlenv.build(steps, builder="auto").to_json()
    try:
        assert second["builder"] == "buildkit"  # [image] steps are commands: the daemonless builder runs none
        out = docker_client.containers.run(second["image"], ["cat", "/hello.txt"], network_mode="none", remove=True)
        assert out.decode().strip() == "hello"
    finally:
        docker_client.api.remove_image(second["image"], force=True)

    with pytest.raises(MlenvError) as refused:
        mlenv.build(steps, builder="daemonless")
    assert "the daemonless builder cannot build this lock: [image] steps" in one_line(refused, code=2)
