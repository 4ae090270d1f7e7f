"""Render the Dockerfile of a lock: small hooks composed into one template
(repo2docker's buildpack idea), each contributing final-stage lines.

One stage, every installed byte written once (classic builder of the docker
SDK: no BuildKit, so no `RUN --mount`). During `mlenv build` the host serves
the build's inputs on 127.0.0.1 (mlenv.build.serve: the installer + uv as a
tar, py-rattler as a tar when the lock has conda packages, the sub-locks, the
artifacts from mlenv's content-addressed cache, all by sha256; GET only);
builds use host networking, so a RUN step reaches it. Each install step is one
RUN of the base Python running BOOTSTRAP: it fetches the tools into
/tmp/mlenv-build (sha256-checked against the RUN text), runs
`python3 -m mlenv.install` on the step's sub-lock (its sha256 in the RUN text,
and the step's artifact sha256s, so the layer cache key is the content), which
fetches and sha256-checks the artifacts, installs them at their final path and
stamps everything it wrote (and the parent directories) with a fixed mtime;
then /tmp/mlenv-build is removed and /tmp's own mtime restored. Nothing
build-only is in any layer, and a re-run of an unchanged step writes a layer
with the same digest.

Final stage: FROM the pinned base; apt packages; the env step (conda packages
/ the venv into /opt/mlenv/env); one step per PyPI group into
/opt/mlenv/pypi/<group> (largest first: a change in a small group re-runs
little); ENV; [image] steps; /opt/mlenv/mlenv.lock + mlenv.toml; labels.

With BuildKit (plan.builder == "buildkit", mlenv.build.buildkit) the same steps
are arranged in stages instead (render_stages): builder stages `env` and one
`g-<group>` per PyPI group run the same install steps, in parallel and each
cached on its own inputs only; the final stage copies each builder's prefix
onto the base (system) stage with MERGE, one layer per group. A changed group
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

# Run by the base Python in each install step (its TMPDIR inside the scratch directory, so
# what uv or a build backend leaves in the temp dir goes with it): argv = server URL, tools (sha256s of
# tars at /tools/<sha>, or "whl=<sha>": the target's uv / py-rattler wheel at /a/<sha>,
# unzipped), sub-lock sha256, network
# ("-" none, "net" PyPI for an sdist's build backend, "net+ca" with the CA bundle the
# host serves at /net.pem for this step's process only), then the installer's args.
BOOTSTRAP = """\
import glob,hashlib,io,os,shutil,subprocess,sys,tarfile,zipfile,urllib.request as u
url,tools,lock,net,*args=sys.argv[1:]
op=u.build_opener(u.ProxyHandler({}))
def get(p,sha=None):
    with op.open(url+p,timeout=600) as r:d=r.read()
    if sha and hashlib.sha256(d).hexdigest()!=sha:sys.exit('mlenv: sha256 mismatch for '+url+p)
    return d
w='/tmp/mlenv-build';st=os.stat('/tmp');rc=1
os.makedirs(w+'/lib');os.makedirs(w+'/tmp')
try:
    e=dict(os.environ,PYTHONPATH=w+'/lib',UV_NO_CONFIG='1',PYTHONDONTWRITEBYTECODE='1',no_proxy='127.0.0.1',NO_PROXY='127.0.0.1',TMPDIR=w+'/tmp')
    if net=='net+ca':
        open(w+'/net.pem','wb').write(get('/net.pem'))
        e['MLENV_CA_BUNDLE']=e['PIP_CERT']=w+'/net.pem'
    for t in tools.split(','):
        if t.startswith('whl='):zipfile.ZipFile(io.BytesIO(get('/a/'+t[4:],t[4:]))).extractall(w+'/lib')
        else:tarfile.open(fileobj=io.BytesIO(get('/tools/'+t,t))).extractall(w)
    for s in glob.glob(w+'/lib/uv-*.data/scripts/uv'):
        os.makedirs(w+'/bin',exist_ok=True);os.replace(s,w+'/bin/uv');os.chmod(w+'/bin/uv',0o755)
    e['MLENV_UV']=w+'/bin/uv'
    open(w+'/part.lock','wb').write(get('/lock/'+lock,lock))
    rc=subprocess.run([sys.executable,'-m','mlenv.install','install','--lock',w+'/part.lock','--artifact-url',url+'/a/','--work-dir',w+'/work',*args],env=e).returncode
finally:
    shutil.rmtree(w,ignore_errors=True);os.utime('/tmp',ns=(st.st_atime_ns,st.st_mtime_ns))
sys.exit(rc)
"""


@dataclass
class Group:
    """PyPI packages installed by one build step into PYPI_PREFIX/<gid>: one layer."""

    gid: str
    packages: list = field(default_factory=list)  # lockfile.Package
    size: int = 0
    lock_sha: str = ""  # sha256 of its sub-lock (served at /lock/<sha>)

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
    builder: str = "classic"  # "buildkit": render_stages (multi-stage), see mlenv.build.buildkit
    tools_sha: str = ""  # sha256 of the installer (+ uv when tools_inline) tar
    uv_wheel_sha: str = ""  # not tools_inline: the target's uv wheel (mlenv.build.tools)
    rattler_wheel_sha: str = ""  # not tools_inline, conda: the target's py-rattler wheel
    rattler_sha: str = ""  # sha256 of the py-rattler tar (conda)
    env_lock_sha: str = ""
    env_shas: list[str] = field(default_factory=list)  # the conda artifacts of the env step
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


def _step(p: Plan, lock_sha: str, shas: list[str], *, conda: bool, network: bool, extra: list[str]) -> str:
    net = ("net+ca" if p.ca_bundle else "net") if network else "-"
    args = [
        p.interpreter, "-c", BOOTSTRAP, p.server, _tools(p, conda), lock_sha, net,
        "--platform", p.platform, "--prefix", PREFIX, "--pypi-prefix", PYPI_PREFIX, "--no-cache",
        "--fixed-mtime", str(FIXED_MTIME), "--expect-sha256", ",".join(sorted(shas)), *extra,
    ]  # fmt: skip
    return _exec(args)


def env_hook(p: Plan) -> Hook:
    if not p.needs_env:
        return Hook("env")
    step = _step(p, p.env_lock_sha, p.env_shas, conda=p.has_conda, network=False,
                 extra=["--part", "env", "--pypi-groups"])
    return Hook("env", final=[step])


def pypi_hook(p: Plan) -> Hook:
    if not p.has_pypi:
        return Hook("pypi")
    final = [_step(p, g.lock_sha, [pkg.sha256 for pkg in g.packages], conda=False,
                   network=g.has_sdist, extra=["--part", "pypi", "--pypi-group", g.gid])
             for g in p.groups]  # fmt: skip
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
# exists in every base, so BuildKit leaves no mount point behind) into place. A COPY --from
# would stamp its destination directory with the build time (BuildKit 0.8 has no
# SOURCE_DATE_EPOCH), so every layer after a changed group would change digest; this step
# puts the fixed mtime back on the directories it added entries to: equal content, equal layer.
MERGE = """\
import os,shutil,sys
src,dst,t=sys.argv[1],sys.argv[2],int(sys.argv[3])
b=src+'/bin'
for f in os.listdir(b) if os.path.isdir(b) else ():
    os.path.lexists(dst+'/bin/'+f) and os.unlink(dst+'/bin/'+f)
shutil.copytree(src,dst,symlinks=True,dirs_exist_ok=True)
d=dst
while d!='/':
    os.utime(d,(t,t));d=os.path.dirname(d)
os.path.isdir(dst+'/bin') and os.utime(dst+'/bin',(t,t))
"""

# BuildKit bind-mounts /etc/hosts and /etc/resolv.conf into every RUN, creating them when
# the base lacks them and leaving /etc with the build time: empty stubs (the container
# runtime mounts over them anyway) keep /etc out of every later layer.
ETC_STUBS = ("hosts", "resolv.conf")


def _merge(p: Plan, stage: str, path: str, label: str) -> str:
    mount = f"--mount=type=bind,from={stage},source={path},target=/tmp"
    return f"RUN {mount} " + json.dumps([p.interpreter, "-c", MERGE, "/tmp", path, str(FIXED_MTIME), label])


def render_stages(p: Plan, hooks: list[Hook]) -> str:
    """The BuildKit Dockerfile: system -> env (builder) -> g-<group> (builders) -> image."""
    by_name = {h.name: h for h in hooks}
    out = [f"FROM {p.base} AS system", "COPY etc/ /etc/", *by_name["apt"].final]
    builder_base = "system"
    if by_name["env"].final:
        out += ["", "FROM system AS env", *by_name["env"].final]
        builder_base = "env"
    for g, step in zip(p.groups, by_name["pypi"].final):
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
        text = TEMPLATE_STAGES.format(version=p.version, content_hash=p.content_hash, server=p.server,
                                      stages=render_stages(p, hooks))
        return text, hooks
    by_name = {h.name: h for h in hooks}
    final = [ln for name in FINAL_ORDER for ln in by_name[name].final]
    text = TEMPLATE.format(version=p.version, content_hash=p.content_hash, base=p.base, server=p.server,
                           final="\n".join(final))
    return text, hooks


def describe(step: str) -> str:
    """A short line for a build step (progress display): install steps are long."""
    where = step.split(" RUN ", 1)[0] + " " if " RUN " in step else ""  # "[g-numpy 1/1]", "5/12:"
    m = re.search(r'"--pypi-group", "([^"]+)"', step)
    if m:
        return f"{where}install PyPI group {m.group(1)}"
    if '"--part", "env"' in step:
        return f"{where}install the env"
    if "/tmp/mlenv-apt" in step:
        return f"{where}install {step.count('.deb SHA256:')} Debian packages"
    m = re.search(r'"/tmp", "([^"]+)", "\d+", "([^"]+)"\]$', step)
    if m:
        return f"{where}copy {m.group(2)} into {m.group(1)}"
    return step
