"""The classic builder: the rendered single-stage Dockerfile through the Engine API
(docker SDK), the fallback where no docker CLI can drive BuildKit. The install steps
run one after another, every byte written once; a changed group re-runs its step and
every step after it (the classic builder's cache stops at the first changed step)."""

from __future__ import annotations

from pathlib import Path

from .docker import BuildLog, DockerEngine
from .dockerbuild import DockerfileBuilder
from .engine import BuildJob


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

        with DockerEngine() as engine, tar_context(files) as context:
            return engine.build_classic(context, job.ref, nocache=job.no_cache, on_step=job.on_step,
                                        on_line=job.on_line, scrub=job.scrub)  # fmt: skip
