"""The image builder interface: every way mlenv turns a lock into an image.

repo2docker's engine.py idea: the orchestration (mlenv.image.build) talks to a
`Builder`; builders are found by name in BUILTIN, then in the `mlenv.builders`
entry-point group, so another builder can be installed as a plugin. This module
imports no builder implementation.

Built in:
- `daemonless`: mlenv writes the image itself, bit for bit from the lock (mlenv.image.daemonless);
  pushed, written as an OCI layout, or loaded into a local Engine;
- `buildkit`: a rendered multi-stage Dockerfile, built by BuildKit through the docker CLI;
- `classic`: the same install steps in one stage, through the Engine API (docker SDK).

`auto` takes the first of AUTO_ORDER that can run here and does not refuse the job:
the daemonless builder refuses what only a builder that runs commands can do (sdists,
[image] steps, apt packages with maintainer scripts; `refuses`).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import MlenvError

if TYPE_CHECKING:
    from ..lockfile import Lock
    from ..spec import Spec

BUILTIN = {
    "daemonless": "mlenv.image.daemonless:DaemonlessBuilder",
    "buildkit": "mlenv.image.buildkit:BuildKitBuilder",
    "classic": "mlenv.image.classic:ClassicBuilder",
}
AUTO_ORDER = ("daemonless", "buildkit", "classic")  # `auto`: the first that can build the job here
ENTRY_POINT_GROUP = "mlenv.builders"


@dataclass
class BuildLog:
    """What a builder reports of a build: its log lines (secrets scrubbed), the step it
    was in, that step's lines, the error that stopped it, the image it made."""

    lines: list[str] = field(default_factory=list)
    step: str | None = None
    step_lines: list[str] = field(default_factory=list)
    error: str | None = None
    image_id: str | None = None


@dataclass
class BuildJob:
    """What a builder needs: a current, verified lock and its artifacts on this host."""

    spec: Spec
    lock: Lock
    platform: str
    ref: str  # REPO/NAME:SHORT_HASH
    artifacts: dict[str, Path]  # sha256 -> a verified file in the host's artifact cache
    log_path: Path
    ca_bundle: str | None = None
    no_cache: bool = False
    scrub: Callable[[str], str] = lambda s: s  # removes secrets from every log line
    on_step: Callable[[str], None] | None = None
    on_line: Callable[[str], None] | None = None
    push_to: str | None = None  # a registry reference the builder may push to itself (daemonless)
    layout: str | None = None  # an OCI image layout directory to write (daemonless)
    engine: bool = False  # a local Docker Engine answers (a place to load the image into; probed only
    # when the image goes nowhere else: no push, no layout)
    load: bool = False  # load into the local Engine even when pushing
    index_urls: tuple[str, ...] = ()  # credentialed index URLs, in memory only


@dataclass
class Built:
    log: BuildLog
    image_id: str | None = None
    digest: str | None = None  # the manifest digest, when the builder wrote the manifest
    pushed: str | None = None  # the pushed digest, when the builder pushed
    extra: dict = field(default_factory=dict)  # builder-specific facts for the result (e.g. groups)


class Builder(ABC):
    name: ClassVar[str]
    writes_dockerfile: ClassVar[bool] = True  # `render` (--dockerfile-only) means something

    @classmethod
    @abstractmethod
    def unavailable(cls) -> str | None:
        """Why this builder cannot run on this machine, or None when it can."""

    @abstractmethod
    def build(self, job: BuildJob) -> Built:
        """Build job.ref into the local image store (or fail with BuildFailed)."""

    def refuses(self, job: BuildJob) -> str | None:
        """Why this builder cannot build this job (None: it can); `auto` moves on."""
        return None

    def render(self, job: BuildJob, directory: Path) -> None:
        """Write what the builder would build (Dockerfile and context) into directory."""
        raise MlenvError(f"the {self.name} builder has nothing to render", hint="use --builder buildkit or classic")


def builder_class(name: str) -> type[Builder]:
    target = BUILTIN.get(name)
    if target is None:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            known = sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
            raise MlenvError(f"unknown builder {name!r}", hint="use auto or one of: " + ", ".join(known))
        return found[0].load()
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def choose(requested: str | None, job: BuildJob | None = None, *, dockerfile: bool = False) -> Builder:
    """The builder to use: `auto` (or None) is the first of AUTO_ORDER that can run here
    and does not refuse the job (with dockerfile: the first that writes a Dockerfile); a
    named builder that cannot is an error saying why."""
    name = (requested or "auto").lower()
    if name != "auto":
        cls = builder_class(name)
        reason = cls.unavailable()
        if reason:
            raise MlenvError(f"the {name} builder cannot run here: {reason}",
                             hint="use --builder auto, or another builder")  # fmt: skip
        builder = cls()
        refusal = builder.refuses(job) if job is not None else None
        if refusal:
            raise MlenvError(f"the {name} builder cannot build this lock: {refusal}",
                             hint="use --builder auto, or another builder")  # fmt: skip
        return builder
    reasons = []
    for candidate in AUTO_ORDER:
        cls = builder_class(candidate)
        if dockerfile and not cls.writes_dockerfile:
            continue
        reason = cls.unavailable()
        if reason is None:
            builder = cls()
            reason = builder.refuses(job) if job is not None else None
            if reason is None:
                return builder
        reasons.append(f"{candidate}: {reason}")
    raise MlenvError("no image builder can build this here (" + "; ".join(reasons) + ")")
