"""The classic builder: the rendered single-stage Dockerfile through the Engine API
(docker SDK), the fallback where no docker CLI can drive BuildKit. The install steps
run one after another, every byte written once; a changed group re-runs its step and
every step after it (the classic builder's cache stops at the first changed step)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .dockerbuild import DockerfileBuilder
from .engine import BuildJob, BuildLog


class ClassicBuilder(DockerfileBuilder):
    name = "classic"
    multi_stage = False

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import docker  # noqa: F401
        except ImportError:
            return "the docker SDK is not installed"
        return None

    def run(self, files: dict[str, bytes | Path], job: BuildJob) -> BuildLog:
        from .context import tar_context
        from .docker import DockerEngine

        with DockerEngine() as engine, tar_context(files) as context:
            return build(engine.client, context, job.ref, nocache=job.no_cache, on_step=job.on_step,
                         on_line=job.on_line, scrub=job.scrub)  # fmt: skip


def build(client: Any, context: Any, tag: str, *, nocache: bool = False,
          on_step: Callable[[str], None] | None = None, on_line: Callable[[str], None] | None = None,
          scrub: Callable[[str], str] = lambda s: s) -> BuildLog:  # fmt: skip
    """Stream a classic build of a context tar (file object) with network_mode=host,
    through the docker SDK client of the Engine (mlenv.dockerd.connect)."""
    stream = client.api.build(fileobj=context, custom_context=True, tag=tag, network_mode="host", rm=True,
                              forcerm=True, decode=True, nocache=nocache, pull=False)  # fmt: skip
    return read_classic_stream(stream, scrub, on_step, on_line)


def read_classic_stream(
    stream: Iterator[dict],
    scrub: Callable[[str], str],
    on_step: Callable[[str], None] | None,
    on_line: Callable[[str], None] | None,
) -> BuildLog:
    """The classic builder's JSON stream ({"stream"}, {"error"}, {"aux": {"ID"}}) as a BuildLog."""
    log = BuildLog()
    for chunk in stream:
        if "stream" in chunk:
            for raw in chunk["stream"].splitlines():
                line = scrub(raw.rstrip())
                if not line:
                    continue
                log.lines.append(line)
                m = re.match(r"^Step (\d+/\d+) : (.*)$", line)
                if m:
                    log.step = f"{m.group(1)}: {m.group(2)}"
                    log.step_lines = []
                    if on_step:
                        on_step(log.step)
                    continue
                log.step_lines.append(line)
                m = re.match(r"^Successfully built ([0-9a-f]+)$", line)
                if m:
                    log.image_id = m.group(1)
                if on_line:
                    on_line(line)
        elif "error" in chunk:
            log.error = scrub(chunk["error"].strip())
            log.lines.append(f"ERROR: {log.error}")
        elif "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
            log.image_id = chunk["aux"]["ID"]
    return log
