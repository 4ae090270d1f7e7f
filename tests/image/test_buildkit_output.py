"""The parser of BuildKit's plain progress output (mlenv.image.buildkit.build) on the
format of Docker 23+'s buildx, which this machine's Docker 20.10 CLI does not print
(the 20.10 format is exercised by every real build in test_build.py). A stand-in
`docker` script prints a recorded buildx failure: a contract test of the format."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from mlenv.errors import MlenvError
from mlenv.image import buildkit
from mlenv.image.dockerbuild import explain_failure
from mlenv.image.engine import choose

BUILDX_FAILURE = textwrap.dedent("""\
    #0 building with "default" instance using docker driver

    #1 [internal] load build definition from Dockerfile
    #1 transferring dockerfile: 2.10kB done
    #1 DONE 0.0s

    #5 [g-fixalpha 1/1] RUN ["/usr/bin/python3", "-c", "import hashlib", "--step", "fixalpha"]
    #5 0.412 pypi: installing group fixalpha (1 packages) with uv (--require-hashes --no-deps)
    #5 DONE 0.9s

    #9 [image 7/8] RUN echo about-to-fail && false
    #9 0.245 about-to-fail
    #9 ERROR: process "/bin/sh -c echo about-to-fail && false" did not complete successfully: exit code: 1
    ------
     > [image 7/8] RUN echo about-to-fail && false:
    0.245 about-to-fail
    ------
    Dockerfile:20
    --------------------
      18 |     LABEL x=y
    --------------------
    ERROR: failed to solve: process "/bin/sh -c echo about-to-fail && false" did not complete successfully: exit code: 1
    """)

BUILDX_NO_BASE = textwrap.dedent("""\
    #0 building with "default" instance using docker driver

    #2 [internal] load metadata for 127.0.0.1:5000/team/missing:1
    #2 ERROR: 127.0.0.1:5000/team/missing:1: not found
    ------
     > [internal] load metadata for 127.0.0.1:5000/team/missing:1:
    ------
    ERROR: failed to solve: 127.0.0.1:5000/team/missing:1: not found
    """)


def fake_cli(tmp_path: Path, output: str, code: int) -> str:
    (tmp_path / "out.txt").write_text(output)
    exe = tmp_path / "bin" / "docker"
    exe.parent.mkdir()
    exe.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in *--help*) echo "      --secret stringArray   Secret to expose to the build"; exit 0;; esac
        cat {tmp_path / "out.txt"}
        exit {code}
        """)
    )
    exe.chmod(0o755)
    return str(exe)


def test_a_failing_step_of_buildx_output(tmp_path, monkeypatch):
    cli = fake_cli(tmp_path, BUILDX_FAILURE, 1)
    monkeypatch.setenv("PATH", f"{Path(cli).parent}{os.pathsep}{os.environ['PATH']}")
    assert buildkit.find_cli() == cli and choose("buildkit").name == "buildkit"
    steps, lines = [], []
    log = buildkit.build(cli, {"Dockerfile": b"FROM scratch\n"}, "t:1", on_step=steps.append, on_line=lines.append)
    assert log.image_id is None
    assert log.step == "[image 7/8] RUN echo about-to-fail && false"
    assert log.error == 'process "/bin/sh -c echo about-to-fail && false" did not complete successfully: exit code: 1'
    assert log.step_lines == ["about-to-fail"]
    assert (
        steps[-1] == log.step
        and "pypi: installing group fixalpha (1 packages) with uv (--require-hashes --no-deps)" in lines
    )
    msg = str(explain_failure(log, "base:1", tmp_path / "build.log"))
    assert msg.startswith("build failed at step [image 7/8] RUN echo about-to-fail && false")
    assert "    about-to-fail" in msg and str(tmp_path / "build.log") in msg


def test_a_missing_base_in_buildx_output(tmp_path):
    cli = fake_cli(tmp_path, BUILDX_NO_BASE, 1)
    log = buildkit.build(cli, {"Dockerfile": b"FROM scratch\n"}, "t:1")
    msg = str(explain_failure(log, "127.0.0.1:5000/team/missing:1", tmp_path / "build.log"))
    assert msg.startswith("base image 127.0.0.1:5000/team/missing:1 not found")


def test_a_cli_without_buildkit_is_not_chosen(tmp_path, monkeypatch):
    exe = tmp_path / "docker"
    exe.write_text(
        "#!/bin/sh\necho 'ERROR: BuildKit is enabled but the buildx component is missing or broken.' >&2\nexit 1\n"
    )
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert buildkit.find_cli() is None and buildkit.BuildKitBuilder.unavailable() is not None
    with pytest.raises(MlenvError, match="the buildkit builder cannot run here"):
        choose("buildkit")
    assert choose("classic").name == "classic"
