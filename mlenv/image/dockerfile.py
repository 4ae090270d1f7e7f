"""Render the Dockerfile of a lock: small hooks composed into one template
(repo2docker's buildpack idea), each contributing final-stage lines.

One stage, every installed byte written once (classic builder of the docker
SDK: no BuildKit, so no `RUN --mount`). During `mlenv build` the host serves
the build's inputs on 127.0.0.1 (mlenv.image.serve: the installer + uv as a
tar, py-rattler as a tar when the lock has conda packages, the install plans, the
artifacts from mlenv's content-addressed cache, all by sha256; GET only);
builds use host networking, so a RUN step reaches it. Each install step is one
RUN of the base Python running mlenv/runtime/bootstrap.py (its text in the RUN
line): it fetches the tools into /tmp/mlenv-build (sha256-checked against the RUN
text), runs `python3 -m mlenv.runtime install` on the step's install plan (its
sha256 in the RUN text, so the layer cache key is the content), which fetches and
sha256-checks the artifacts, installs them at their final path and
stamps everything it wrote (and the parent directories) with a fixed mtime;
then /tmp/mlenv-build is removed and /tmp's own mtime restored. Nothing
build-only is in any layer, and a re-run of an unchanged step writes a layer
with the same digest.

Final stage: FROM the pinned base; apt packages; the env step (conda packages
/ the venv into /opt/mlenv/env); one step per PyPI group into
/opt/mlenv/pypi/<group> (largest first: a change in a small group re-runs
little); ENV; [image] steps; /opt/mlenv/mlenv.lock + mlenv.toml; labels.

With BuildKit (plan.builder == "buildkit", mlenv.image.buildkit) the same steps
are arranged in stages instead (render_stages): builder stages `env` and one
`g-<group>` per PyPI group run the same install steps, in parallel and each
cached on its own inputs only; the final stage copies each builder's prefix
onto the base (system) stage (mlenv/runtime/merge.py), one layer per group. A changed group
re-runs its own builder stage and the (cheap) copies after it, nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PREFIX = "/opt/mlenv/env"
PYPI_PREFIX = "/opt/mlenv/pypi"
META_DIR = "/opt/mlenv"
FIXED_MTIME = 1_700_000_000  # every file an install step writes (reproducible layers)

LABEL_HASH = "org.mlenv.content-hash"
LABEL_NAME = "org.mlenv.name"

TEMPLATE = """\
# Rendered by mlenv {version} from mlenv.lock {content_hash}.
# Do not edit: `mlenv build` renders it again. Layout and rules: docs/build.md.
# Install steps fetch from mlenv's artifact server on the build host ({server}), which
# runs only during `mlenv build`: build this file with `mlenv build`, not `docker build`.
# Layers: base, apt packages, env, one per PyPI group, metadata.
FROM {base}
{final}
"""

TEMPLATE_STAGES = """\
# Rendered by mlenv {version} from mlenv.lock {content_hash}, for BuildKit.
# Do not edit: `mlenv build` renders it again. Layout and rules: docs/build.md.
# Install steps fetch from mlenv's artifact server on the build host ({server}), which
# runs only during `mlenv build`: build this file with `mlenv build`, not `docker build`.
# Stages: system (base + apt), env and g-<group> (builders), then image (the final one):
# base, apt packages, env, one layer per PyPI group, metadata.
{stages}
"""


def runtime_script(name: str) -> str:
    """The text of a stdlib-only script of mlenv.runtime (bootstrap.py, merge.py): the
    RUN lines that need code before any tool is in the image carry the real file,
    without its module docstring (documentation, not needed in every layer's history)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "runtime" / name).read_text(encoding="utf-8")
    if text.startswith('"""'):
        text = text[text.index('"""', 3) + 3 :].lstrip("\n")
    return text


@dataclass
class Group:
    """PyPI packages installed by one build step into PYPI_PREFIX/<gid>: one layer."""

    gid: str
    packages: list = field(default_factory=list)  # lockfile.Package
    size: int = 0
    plan_sha: str = ""  # sha256 of its install plan (served at /plan/<sha>)

    @property
    def has_sdist(self) -> bool:
        return any(not (p.get("filename") or p.url.split("#", 1)[0]).endswith(".whl") for p in self.packages)


@dataclass
class Plan:
    """Everything render() needs; built by mlenv.image.context.make_plan()."""

    name: str
    description: str
    base: str
    base_digest: str | None
    content_hash: str
    short_hash: str
    platform: str
    interpreter: str  # the base Python the install steps run the installer with
    has_conda: bool
    has_pypi: bool
    needs_env: bool  # a conda prefix or a venv goes to /opt/mlenv/env
    apt_packages: list[str]
    variables: dict[str, str]
    steps: list[str]
    ca_bundle: bool  # a CA bundle was given (used only by steps that reach the network)
    tools_inline: bool  # uv binary (and rattler) served from this mlenv installation
    version: str
    groups: list[Group] = field(default_factory=list)
    server: str = "http://127.0.0.1:47291"  # the build-time artifact server
    builder: str = "classic"  # "buildkit": render_stages (multi-stage), see mlenv.image.buildkit
    tools_sha: str = ""  # sha256 of the installer (+ uv when tools_inline) tar
    uv_wheel_sha: str = ""  # not tools_inline: the target's uv wheel (mlenv.image.tools)
    rattler_wheel_sha: str = ""  # not tools_inline, conda: the target's py-rattler wheel
    rattler_sha: str = ""  # sha256 of the py-rattler tar (conda)
    env_plan_sha: str = ""
    debs: list = field(default_factory=list)  # the lock's apt packages of this platform (lockfile.Package)

    @property
    def needs_ca(self) -> bool:
        """Does any install step reach the network (so the host serves the CA bundle)?"""
        return self.ca_bundle and any(g.has_sdist for g in self.groups)


def q(value: str) -> str:
    """A double-quoted Dockerfile string (LABEL/ENV values)."""
    return json.dumps(value)


def _exec(args: list[str]) -> str:
    return "RUN " + json.dumps(args)


def _tools(p: Plan, conda: bool) -> str:
    if p.tools_inline:
        return ",".join([p.tools_sha] + ([p.rattler_sha] if conda else []))
    return ",".join([p.tools_sha, f"whl={p.uv_wheel_sha}"] + ([f"whl={p.rattler_wheel_sha}"] if conda else []))


def _step(p: Plan, plan_sha: str, *, conda: bool, network: bool, step: str) -> str:
    net = ("net+ca" if p.ca_bundle else "net") if network else "-"
    args = [
        p.interpreter, "-c", runtime_script("bootstrap.py"), p.server, _tools(p, conda), plan_sha, net,
        "--prefix", PREFIX, "--pypi-prefix", PYPI_PREFIX, "--pypi-groups", "--no-cache",
        "--fixed-mtime", str(FIXED_MTIME), "--step", step,
    ]  # fmt: skip
    return _exec(args)


def env_hook(p: Plan) -> Hook:
    if not p.needs_env:
        return Hook("env")
    return Hook("env", final=[_step(p, p.env_plan_sha, conda=p.has_conda, network=False, step="env")])


def pypi_hook(p: Plan) -> Hook:
    if not p.has_pypi:
        return Hook("pypi")
    final = [_step(p, g.plan_sha, conda=False, network=g.has_sdist, step=g.gid) for g in p.groups]
    return Hook("pypi", final=final)


def apt_hook(p: Plan) -> Hook:
    """The locked .debs, fetched from the artifact server and installed with apt-get,
    no index read (mlenv.apt.fetch); a lock from before apt pinning: apt-get, unpinned."""
    from ..apt.fetch import install_step, legacy_step

    if p.debs:
        return Hook("apt", final=[install_step(p.debs, p.server)])
    if not p.apt_packages:
        return Hook("apt")
    return Hook("apt", final=[legacy_step(p.apt_packages)])


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
    final: list[str] = field(default_factory=list)


HOOKS = (env_hook, pypi_hook, apt_hook, env_vars_hook, steps_hook, meta_hook)
# Final-stage order matters for the layer cache: base, apt, env (conda), PyPI groups, then the rest.
FINAL_ORDER = ("apt", "env", "pypi", "variables", "steps", "meta")


# BuildKit: the final stage copies a builder stage's prefix (bind-mounted at /tmp, which
# exists in every base, so BuildKit leaves no mount point behind) into place with
# mlenv/runtime/merge.py, which keeps the fixed mtimes (a COPY --from would not).
# BuildKit bind-mounts /etc/hosts and /etc/resolv.conf into every RUN, creating them when
# the base lacks them and leaving /etc with the build time: empty stubs (the container
# runtime mounts over them anyway) keep /etc out of every later layer.
ETC_STUBS = ("hosts", "resolv.conf")


def _merge(p: Plan, stage: str, path: str, label: str) -> str:
    mount = f"--mount=type=bind,from={stage},source={path},target=/tmp"
    script = runtime_script("merge.py")
    return f"RUN {mount} " + json.dumps([p.interpreter, "-c", script, "/tmp", path, str(FIXED_MTIME), label])


def render_stages(p: Plan, hooks: list[Hook]) -> str:
    """The BuildKit Dockerfile: system -> env (builder) -> g-<group> (builders) -> image."""
    by_name = {h.name: h for h in hooks}
    out = [f"FROM {p.base} AS system", "COPY etc/ /etc/", *by_name["apt"].final]
    builder_base = "system"
    if by_name["env"].final:
        out += ["", "FROM system AS env", *by_name["env"].final]
        builder_base = "env"
    for g, step in zip(p.groups, by_name["pypi"].final, strict=False):
        out += ["", f"FROM {builder_base} AS g-{g.gid}", step]
    out += ["", "FROM system AS image"]
    if by_name["env"].final:
        out.append(_merge(p, "env", PREFIX, "env"))
    # a group's builder holds PYPI_PREFIX/<group> and its console-script links in PYPI_PREFIX/bin
    out += [_merge(p, f"g-{g.gid}", PYPI_PREFIX, g.gid) for g in p.groups]
    out += [ln for name in ("variables", "steps", "meta") for ln in by_name[name].final]
    return "\n".join(out)


def render(p: Plan) -> tuple[str, list[Hook]]:
    hooks = [h(p) for h in HOOKS]
    if p.builder == "buildkit":
        text = TEMPLATE_STAGES.format(
            version=p.version, content_hash=p.content_hash, server=p.server, stages=render_stages(p, hooks)
        )
        return text, hooks
    by_name = {h.name: h for h in hooks}
    final = [ln for name in FINAL_ORDER for ln in by_name[name].final]
    text = TEMPLATE.format(
        version=p.version, content_hash=p.content_hash, base=p.base, server=p.server, final="\n".join(final)
    )
    return text, hooks


def describe(step: str) -> str:
    """A short line for a build step (progress display): install steps are long."""
    where = step.split(" RUN ", 1)[0] + " " if " RUN " in step else ""  # "[g-numpy 1/1]", "5/12:"
    m = re.search(r'"--step", "([^"]+)"\]', step)
    if m:
        return f"{where}install the env" if m.group(1) == "env" else f"{where}install PyPI group {m.group(1)}"
    if "/tmp/mlenv-apt" in step:
        return f"{where}install {step.count('.deb SHA256:')} Debian packages"
    m = re.search(r'"/tmp", "([^"]+)", "\d+", "([^"]+)"\]$', step)
    if m:
        return f"{where}copy {m.group(2)} into {m.group(1)}"
    return step
