"""BuildKit builds through the docker CLI, when one can.

The docker SDK speaks only the classic builder. BuildKit (the Engine's builder since
18.09, the default since 23.0) runs independent stages in parallel and caches each
stage on its own inputs, which is what the multi-stage layout of
mlenv.image.dockerfile.render_stages needs: a changed PyPI group re-runs its own
builder stage only. The Engine exposes BuildKit through a gRPC session that only
the docker CLI (with the buildx component since Docker 23) implements, so mlenv
runs `DOCKER_BUILDKIT=1 docker build --progress plain` and reads its plain output.

`auto` (mlenv.image.engine.choose) uses BuildKit when a docker CLI on PATH can.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .dockerbuild import DockerfileBuilder
from .engine import BuildJob, BuildLog


def _probe(exe: str) -> bool:
    """Can this CLI build with BuildKit? Docker 23+ without the buildx component
    refuses `build` once DOCKER_BUILDKIT=1; 18.09-22.x build with it natively."""
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    try:
        proc = subprocess.run([exe, "build", "--help"], capture_output=True, text=True, env=env, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "--secret" in proc.stdout


def find_cli() -> str | None:
    """The first docker executable on PATH that builds with BuildKit."""
    seen = set()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        exe = os.path.join(d or ".", "docker")
        real = os.path.realpath(exe)
        if real in seen or not os.access(exe, os.X_OK) or os.path.isdir(exe):
            continue
        seen.add(real)
        if _probe(exe):
            return exe
    return None


class BuildKitBuilder(DockerfileBuilder):
    name = "buildkit"
    multi_stage = True
    _found: dict[str, str] = {}  # PATH -> the docker CLI that builds with BuildKit ("" none): probed once

    @classmethod
    def cli(cls) -> str:
        path = os.environ.get("PATH", "")
        if path not in cls._found:
            cls._found[path] = find_cli() or ""
        return cls._found[path]

    @classmethod
    def unavailable(cls) -> str | None:
        if not cls.cli():
            return ("no docker CLI on PATH can build with BuildKit (Docker 23+ needs its buildx component; "
                    "18.09-22.x build with it natively)")  # fmt: skip
        return None

    def run(self, files: dict[str, bytes | Path], job: BuildJob) -> BuildLog:
        return build(self.cli(), files, job.ref, nocache=job.no_cache, on_step=job.on_step, on_line=job.on_line,
                     scrub=job.scrub)  # fmt: skip


_STEP = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
_LINE = re.compile(r"^#(\d+) (\d+\.\d+) (.*)$")
_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")


def build(
    cli: str, files: dict, tag: str, *, nocache: bool = False, on_step=None, on_line=None, scrub=lambda s: s
) -> BuildLog:
    """Run a BuildKit build of the context `files` (mlenv.image.context.context_files),
    written to a temporary directory for the CLI, with host networking (the install
    steps reach mlenv's artifact server on 127.0.0.1). Returns the log; .error set on
    failure."""
    from ..runtime.fsutil import drop_scratch, make_scratch
    from .context import write_dir

    work, fd = make_scratch("build")  # locked while in use: a killed build's is removed by the next one
    try:
        write_dir(files, work / "context")
        return _run(cli, work / "context", work / "iid", tag, nocache, on_step, on_line, scrub)
    finally:
        drop_scratch(work, fd)


def _run(cli: str, context_dir: Path, iid: Path, tag: str, nocache: bool, on_step, on_line, scrub) -> BuildLog:
    cmd = [
        cli,
        "build",
        "--progress",
        "plain",
        "--network",
        "host",
        "--iidfile",
        str(iid),
        "-t",
        tag,
        *(["--no-cache"] if nocache else []),
        str(context_dir),
    ]
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    log = BuildLog()
    steps: dict[str, str] = {}
    output: dict[str, list[str]] = {}
    errors: list[str] = []
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace", bufsize=1
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = scrub(raw.rstrip("\n"))
        if not line.strip():
            continue
        log.lines.append(line)
        m = _STEP.match(line)
        if m:
            if m.group(1) not in steps:
                steps[m.group(1)] = m.group(2)
                output[m.group(1)] = []
                log.step = m.group(2)
                if on_step:
                    on_step(log.step)
            continue
        m = _LINE.match(line)
        if m:
            output.setdefault(m.group(1), []).append(m.group(3))
            if on_line:
                on_line(m.group(3))
            continue
        m = _ERROR.match(line)
        if m and not log.error:
            log.error = m.group(2)
            log.step = steps.get(m.group(1), log.step)
            log.step_lines = output.get(m.group(1), [])
            continue
        if not line.startswith("#") and not line.startswith("------") and not line.startswith(" > "):
            errors.append(line)  # the CLI's own message (a Dockerfile or daemon error)
    rc = proc.wait()
    if rc != 0 and not log.error:
        log.error = errors[-1] if errors else f"docker build exited with {rc}"
        if errors:
            log.step_lines = errors[:-1]
    if rc == 0 and iid.is_file():
        log.image_id = iid.read_text().strip()
    elif rc == 0:
        log.error = "docker build wrote no image id"
    return log
