"""Render the Dockerfile of a lock: small hooks composed into one template
(repo2docker's buildpack idea), each contributing builder-stage lines,
final-stage lines and build-context files.

Builder stages (classic builder of the docker SDK: no BuildKit, so no
`RUN --mount` and no build secrets; it builds the stages in order):

- tools: FROM the pinned base; the mlenv installer (this mlenv's install.py +
  the uv binary, py-rattler only when the lock has conda packages);
- env: FROM tools; installs the env part (conda packages / the venv) into
  /opt/mlenv/env from its own sub-lock and the conda artifacts in the context;
- pypi-<group>: FROM env, one per PyPI group (a large artifact alone, the small
  ones together); installs that group's wheels from the context into
  /opt/mlenv/pypi/<group> (scripts linked into /opt/mlenv/pypi/bin). A stage
  depends only on the env and its own artifacts, so changing one package
  rebuilds one group.

Every artifact was downloaded and sha256-checked on the host (mlenv's artifact
cache) and is in the build context: the builder stages install offline, with
no index URL, credential or CA bundle. (Exception: a group holding an sdist
may need its build backend from PyPI; only that stage gets the CA bundle, if
one was given. Same for the tools stage on hosts that cannot copy their uv.)

Final: FROM the same base; apt packages; COPY --from=env of /opt/mlenv; one
COPY --from per PyPI group (largest first: a change in a small group re-copies
little); ENV; [image] steps; /opt/mlenv/mlenv.lock + mlenv.toml; labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

PREFIX = "/opt/mlenv/env"
PYPI_PREFIX = "/opt/mlenv/pypi"
META_DIR = "/opt/mlenv"
TOOLS = "/opt/mlenv-builder"
STAGE_OUT = f"{TOOLS}/out"  # a group stage's files, at their final paths: COPY --from=... STAGE_OUT/ /

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"

TEMPLATE = """\
# Rendered by mlenv {version} from mlenv.lock {content_hash}.
# Do not edit: `mlenv build` renders it again. Layout and rules: docs/build.md.

# ---- builder stages: every artifact is in the context; installs run offline ----
{builder}

# ---- final stage: base, apt packages, env layer, one layer per PyPI group, metadata ----
FROM {base}
{final}
"""


@dataclass
class Group:
    """PyPI packages installed by one builder stage into PYPI_PREFIX/<gid>, one final layer."""

    gid: str
    packages: list = field(default_factory=list)  # lockfile.Package
    size: int = 0

    @property
    def has_sdist(self) -> bool:
        return any(not p.url.split("#", 1)[0].endswith(".whl") for p in self.packages)


@dataclass
class Plan:
    """Everything render() needs; built by mlenv.build.context.make_plan()."""

    name: str
    description: str
    base: str
    base_digest: str | None
    content_hash: str
    short_hash: str
    platform: str
    interpreter: str  # the Python the builder stages run the installer with
    has_conda: bool
    has_pypi: bool
    needs_env: bool  # a conda prefix or a venv goes to /opt/mlenv/env
    apt_packages: list[str]
    variables: dict[str, str]
    steps: list[str]
    ca_bundle: bool  # a CA bundle was given (used only by stages that reach the network)
    tools_inline: bool  # uv binary (and rattler) copied from this mlenv installation
    uv_version: str
    rattler_version: str
    version: str
    groups: list[Group] = field(default_factory=list)

    @property
    def needs_ca(self) -> bool:
        """Does any builder stage reach the network (so the CA bundle goes into the context)?"""
        return self.ca_bundle and (not self.tools_inline or any(g.has_sdist for g in self.groups))


def q(value: str) -> str:
    """A double-quoted Dockerfile string (LABEL/ENV values)."""
    return json.dumps(value)


def _exec(args: list[str]) -> str:
    return "RUN " + json.dumps(args)


def _ca_lines() -> list[str]:
    ca = f"{TOOLS}/ca-bundle.pem"
    return [f"COPY ca/ca-bundle.pem {ca}",
            f"ENV SSL_CERT_FILE={ca} PIP_CERT={ca} REQUESTS_CA_BUNDLE={ca} MLENV_CA_BUNDLE={ca}"]


def tools_hook(p: Plan) -> Hook:
    if not p.needs_env:
        return Hook("tools")  # nothing to install: no builder stage at all
    lines = [f"FROM {p.base} AS tools", f"COPY tools/ {TOOLS}/"]
    if not p.tools_inline:
        if p.ca_bundle:
            lines += _ca_lines()
        pkgs = [f"uv=={p.uv_version}"] + ([f"py-rattler=={p.rattler_version}"] if p.has_conda else [])
        lines.append(_exec([p.interpreter, "-m", "pip", "install", "--no-cache-dir", "--target", f"{TOOLS}/lib", *pkgs]))
        lines.append(f"RUN mkdir -p {TOOLS}/bin && ln -sf {TOOLS}/lib/bin/uv {TOOLS}/bin/uv")
    elif p.has_conda:
        lines.append(f"COPY rattler/ {TOOLS}/lib/rattler/")
    lines.append(f"ENV PYTHONPATH={TOOLS}/lib MLENV_UV={TOOLS}/bin/uv UV_NO_CONFIG=1 PYTHONDONTWRITEBYTECODE=1")
    return Hook("tools", builder=lines)


def _installer(p: Plan, part: str, ctx_dir: str, group: str | None = None) -> list[str]:
    args = [
        p.interpreter, "-m", "mlenv.install", "install",
        "--lock", f"{TOOLS}/{ctx_dir}/{part}.lock", "--platform", p.platform,
        "--prefix", PREFIX, "--pypi-prefix", PYPI_PREFIX, "--part", part,
        "--files-dir", f"{TOOLS}/{ctx_dir}/files", "--offline", "--no-cache",
    ]  # fmt: skip
    args += ["--pypi-group", group, "--stage-out", STAGE_OUT] if group else ["--pypi-groups"]
    return args


def env_hook(p: Plan) -> Hook:
    if not p.needs_env:
        return Hook("env")
    return Hook("env", builder=["", "FROM tools AS env", f"COPY env/ {TOOLS}/env/", _exec(_installer(p, "env", "env"))],
                final=[f"COPY --from=env {META_DIR} {META_DIR}"])


def stage_name(group: Group) -> str:
    return f"pypi-{group.gid}"


def pypi_hook(p: Plan) -> Hook:
    if not p.has_pypi:
        return Hook("pypi")
    builder, final = [], []
    for g in p.groups:
        builder += ["", f"FROM env AS {stage_name(g)}"]
        if g.has_sdist and p.ca_bundle and p.tools_inline:
            builder += _ca_lines()  # an sdist's build backend comes from PyPI
        builder += [f"COPY pypi/{g.gid}/ {TOOLS}/pypi/{g.gid}/", _exec(_installer(p, "pypi", f"pypi/{g.gid}", g.gid))]
        final.append(f"COPY --from={stage_name(g)} {STAGE_OUT}/ /")
    return Hook("pypi", builder=builder, final=final)


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


@dataclass
class Hook:
    name: str
    builder: list[str] = field(default_factory=list)
    final: list[str] = field(default_factory=list)


HOOKS = (tools_hook, env_hook, pypi_hook, apt_hook, env_vars_hook, steps_hook, meta_hook)
# Final-stage order matters for the layer cache: base, apt, env (conda), PyPI groups, then the rest.
FINAL_ORDER = ("apt", "env", "pypi", "variables", "steps", "meta")


def render(p: Plan) -> tuple[str, list[Hook]]:
    hooks = [h(p) for h in HOOKS]
    by_name = {h.name: h for h in hooks}
    builder = [ln for h in hooks for ln in h.builder]
    final = [ln for name in FINAL_ORDER for ln in by_name[name].final]
    text = TEMPLATE.format(version=p.version, content_hash=p.content_hash, base=p.base,
                           builder="\n".join(builder), final="\n".join(final))
    return text, hooks
