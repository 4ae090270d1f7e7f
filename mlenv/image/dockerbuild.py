"""What the two Dockerfile builders share (BuildKit and classic): the build plan, the
target's tool wheels where this host's cannot run, the artifact server on 127.0.0.1
that feeds the install steps, and the build context. A subclass only says how the
rendered context is run (`run`)."""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path

from ..errors import MlenvError
from .engine import Builder, BuildJob, BuildLog, Built


class DockerfileBuilder(Builder):
    multi_stage = False

    def _prepare(self, job: BuildJob):
        """(plan, served files) of a job: every sha256 the install steps name is filled in."""
        from ..runtime.fetch import fetch_artifacts
        from .context import make_plan, served_files

        plan = make_plan(job.spec, job.lock, job.platform, ca_bundle=bool(job.ca_bundle), artifacts=job.artifacts,
                         builder="buildkit" if self.multi_stage else "classic")  # fmt: skip
        artifacts = dict(job.artifacts)
        if not plan.tools_inline:  # this host's uv cannot run in the image: the target's wheels
            from ..installing import artifact
            from .tools import tool_wheels

            wheels = [artifact(p) for p in tool_wheels(plan, job.lock, ca_bundle=job.ca_bundle)]
            artifacts.update(fetch_artifacts(wheels, ca_bundle=job.ca_bundle))
        served = served_files(job.lock, plan, ca_bundle=job.ca_bundle, artifacts=artifacts)
        return plan, served

    def render(self, job: BuildJob, directory: Path) -> None:
        from .context import context_files, write_dir
        from .serve import default_port, url_for

        plan, served = self._prepare(job)
        plan.server = url_for(default_port())
        write_dir(context_files(job.spec, job.lock, plan), directory, served)

    def build(self, job: BuildJob) -> Built:
        from .context import context_files, missing_local_files
        from .serve import ArtifactServer

        plan, served = self._prepare(job)
        missing = missing_local_files(served)
        if missing:
            raise MlenvError(f"files the build needs are missing: {', '.join(missing[:3])}",
                             hint="the artifact cache was cleaned during the build; run `mlenv build` again")  # fmt: skip
        with ArtifactServer(served) as server:
            plan.server = server.url  # a busy default port: another one (correct, misses the layer cache)
            log = self.run(context_files(job.spec, job.lock, plan), job)
        return Built(log=log, image_id=log.image_id, extra={"groups": len(plan.groups), "base": plan.base})

    @abstractmethod
    def run(self, files: dict[str, bytes | Path], job: BuildJob) -> BuildLog:
        """Build the context (path -> bytes or file) as job.ref; the log (.error set on failure)."""


class BuildFailed(MlenvError):
    exit_code = 1


def explain_failure(log: BuildLog, base: str, log_path: Path) -> BuildFailed:
    step = log.step or "?"
    error = log.error or "the build stopped without an error message"
    text = "\n".join(log.step_lines + [error])
    tail = [ln for ln in log.step_lines if ln.strip() and not ln.startswith(" ---> ")][-15:]
    hint = None
    from_step = step.split(": ", 1)[-1].startswith("FROM") or re.search(r"\] FROM |load metadata for ", step)
    not_found = (
        r"not found|pull access denied|manifest unknown|repository does not exist|no such host|connection refused"
    )
    if from_step and re.search(not_found, text, re.I):
        head = f"base image {base} not found (not in the local daemon, and its registry does not have it)"
        hint = "check [image] base in mlenv.toml, `docker pull` / push it, then `mlenv lock --upgrade`"
    else:
        head = f"build failed at step {step}\n  {error}"
        if re.search(r"certificate|UnknownIssuer|CERTIFICATE_VERIFY_FAILED", text, re.I):
            hint = "downloads failed TLS verification (a TLS-intercepting proxy?): pass --ca-bundle FILE or set MLENV_CA_BUNDLE"
    msg = head
    if tail:
        msg += "\n  last log lines:\n" + "\n".join("    " + ln for ln in tail)
    msg += f"\n  full log: {log_path}"
    return BuildFailed(msg, hint=hint)
