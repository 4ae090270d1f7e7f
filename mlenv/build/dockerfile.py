"""Render the Dockerfile of a lock: small hooks composed into one template
(repo2docker's buildpack idea), each contributing builder-stage lines,
final-stage lines and build-context files.

Two stages, for the classic builder of the docker SDK (no BuildKit, so no
`RUN --mount` and no build secrets):

- builder: FROM the pinned base; the CA bundle and index credentials live
  here only; the mlenv installer (this mlenv's install.py + the uv binary,
  py-rattler only when the lock has conda packages) installs the env part
  into /opt/mlenv/env, then the PyPI part into /opt/mlenv/pypi, each from its
  own sub-lock so a PyPI change leaves the env step cached;
- final: FROM the same base; apt packages; COPY --from=builder of
  /opt/mlenv/env and /opt/mlenv/pypi as two layers; ENV; [image] steps;
  /opt/mlenv/mlenv.lock + mlenv.toml; labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

PREFIX = "/opt/mlenv/env"
PYPI_PREFIX = "/opt/mlenv/pypi"
META_DIR = "/opt/mlenv"
TOOLS = "/opt/mlenv-builder"

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"

TEMPLATE = """\
# Rendered by mlenv {version} from mlenv.lock {content_hash}.
# Do not edit: `mlenv build` renders it again. Layout and rules: docs/build.md.

# ---- builder stage: build-only inputs (CA bundle, index credentials) stay here ----
FROM {base} AS builder
{builder}

# ---- final stage: base, apt packages, conda/env layer, PyPI layer, metadata ----
FROM {base}
{final}
"""


@dataclass
class Hook:
    name: str
    builder: list[str] = field(default_factory=list)
    final: list[str] = field(default_factory=list)
    files: dict[str, object] = field(default_factory=dict)  # context path -> bytes | pathlib.Path


@dataclass
class Plan:
    """Everything render() needs; built by mlenv.build.context.plan()."""

    name: str
    description: str
    base: str
    base_digest: str | None
    content_hash: str
    short_hash: str
    platform: str
    interpreter: str  # the Python the builder stage runs the installer with
    has_conda: bool
    has_pypi: bool
    needs_env: bool  # a conda prefix or a venv goes to /opt/mlenv/env
    apt_packages: list[str]
    variables: dict[str, str]
    steps: list[str]
    ca_bundle: bool
    credentials: bool
    tools_inline: bool  # uv binary (and rattler) copied from this mlenv installation
    uv_version: str
    rattler_version: str
    version: str


def q(value: str) -> str:
    """A double-quoted Dockerfile string (LABEL/ENV values)."""
    return json.dumps(value)


def _exec(args: list[str]) -> str:
    return "RUN " + json.dumps(args)


def ca_hook(p: Plan) -> Hook:
    if not p.ca_bundle:
        return Hook("ca")
    ca = f"{TOOLS}/ca-bundle.pem"
    return Hook("ca", builder=[
        f"COPY ca/ca-bundle.pem {ca}",
        f"ENV SSL_CERT_FILE={ca} PIP_CERT={ca} REQUESTS_CA_BUNDLE={ca} MLENV_CA_BUNDLE={ca}",
    ])  # fmt: skip


def tools_hook(p: Plan) -> Hook:
    lines = [f"COPY tools/ {TOOLS}/"]
    if not p.tools_inline:
        pkgs = [f"uv=={p.uv_version}"] + ([f"py-rattler=={p.rattler_version}"] if p.has_conda else [])
        lines.append(_exec([p.interpreter, "-m", "pip", "install", "--no-cache-dir", "--target", f"{TOOLS}/lib", *pkgs]))
        lines.append(f"RUN mkdir -p {TOOLS}/bin && ln -sf {TOOLS}/lib/bin/uv {TOOLS}/bin/uv")
    elif p.has_conda:
        lines.append(f"COPY rattler/ {TOOLS}/lib/rattler/")
    lines.append(f"ENV PYTHONPATH={TOOLS}/lib MLENV_UV={TOOLS}/bin/uv UV_NO_CONFIG=1 PYTHONDONTWRITEBYTECODE=1")
    return Hook("tools", builder=lines)


def _installer(p: Plan, part: str) -> list[str]:
    return [
        p.interpreter, "-m", "mlenv.install", "install",
        "--lock", f"{TOOLS}/{part}/{part}.lock", "--platform", p.platform,
        "--prefix", PREFIX, "--pypi-prefix", PYPI_PREFIX, "--part", part,
        "--files-dir", f"{TOOLS}/{part}/files", "--no-cache",
    ]  # fmt: skip


def env_hook(p: Plan) -> Hook:
    if not p.needs_env:
        return Hook("env")
    return Hook("env", builder=[f"COPY env/ {TOOLS}/env/", _exec(_installer(p, "env"))],
                final=[f"COPY --from=builder {PREFIX} {PREFIX}"])


def pypi_hook(p: Plan) -> Hook:
    if not p.has_pypi:
        return Hook("pypi")
    lines = [f"COPY pypi/ {TOOLS}/pypi/"]
    if p.credentials:
        # A build arg of the builder stage only: never in the final image or its history.
        lines.append("ARG MLENV_INDEX_CREDENTIALS")
    lines.append(_exec(_installer(p, "pypi")))
    return Hook("pypi", builder=lines, final=[f"COPY --from=builder {PYPI_PREFIX} {PYPI_PREFIX}"])


def apt_hook(p: Plan) -> Hook:
    if not p.apt_packages:
        return Hook("apt")
    pkgs = " ".join(sorted(set(p.apt_packages)))
    return Hook("apt", final=[
        "RUN apt-get -o Acquire::Retries=3 update -q"
        f" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {pkgs}"
        " && rm -rf /var/lib/apt/lists/*"
    ])  # fmt: skip


def env_vars_hook(p: Plan) -> Hook:
    paths = ([f"{PYPI_PREFIX}/bin"] if p.has_pypi else []) + ([f"{PREFIX}/bin"] if p.needs_env else [])
    lines = []
    if paths:
        lines.append(f"ENV PATH={':'.join(paths)}:$PATH MLENV_PREFIX={PREFIX}")
    if p.variables:
        lines.append("ENV " + " ".join(f"{k}={q(v)}" for k, v in sorted(p.variables.items())))
    return Hook("variables", final=lines)


def steps_hook(p: Plan) -> Hook:
    return Hook("steps", final=list(p.steps))


def meta_hook(p: Plan) -> Hook:
    labels = {
        "org.opencontainers.image.title": p.name,
        "org.opencontainers.image.description": p.description or f"mlenv environment {p.name}",
        "org.opencontainers.image.version": p.short_hash,
        "org.opencontainers.image.base.name": p.base,
        LABEL_HASH: p.content_hash,
        LABEL_NAME: p.name,
        "org.mlenv.platform": p.platform,
        "org.mlenv.prefix": PREFIX,
    }
    if p.base_digest:
        labels["org.opencontainers.image.base.digest"] = p.base_digest
    label = "LABEL " + " \\\n      ".join(f"{k}={q(v)}" for k, v in labels.items())
    return Hook("meta", final=[f"COPY meta/ {META_DIR}/", label])


HOOKS = (ca_hook, tools_hook, env_hook, pypi_hook, apt_hook, env_vars_hook, steps_hook, meta_hook)
# Final-stage order matters for the layer cache: base, apt, env (conda), PyPI, then the rest.
FINAL_ORDER = ("apt", "env", "pypi", "variables", "steps", "meta")


def render(p: Plan) -> tuple[str, list[Hook]]:
    hooks = [h(p) for h in HOOKS]
    by_name = {h.name: h for h in hooks}
    builder = [ln for h in hooks for ln in h.builder]
    final = [ln for name in FINAL_ORDER for ln in by_name[name].final]
    if not builder:
        builder = ["# nothing to install"]
    text = TEMPLATE.format(version=p.version, content_hash=p.content_hash, base=p.base,
                           builder="\n".join(builder), final="\n".join(final))
    return text, hooks
