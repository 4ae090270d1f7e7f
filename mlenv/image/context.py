"""The inputs of a build: the build context (Dockerfile, the image's own
mlenv.lock + mlenv.toml) and what the build-time artifact server serves to the
install steps (mlenv.image.serve), all by sha256:

  /tools/<sha>   tar: lib/mlenv/__init__.py + lib/mlenv/runtime/** (the stdlib-only
                 layer, shipped whole) + bin/uv (this mlenv's uv: linux-64 target on
                 an x86_64 Linux host; elsewhere the target's uv wheel, below)
  /tools/<sha>   tar: lib/rattler/... (this mlenv's py-rattler; conda locks only)
  /plan/<sha>    the install plan of the env step and of each PyPI group
  /a/<sha>       every artifact, from the host's content-addressed cache, and the
                 target's uv / py-rattler wheels where this host's cannot run
                 there (mlenv.image.tools)
  /net.pem       the CA bundle: only with --ca-bundle AND a step that reaches the
                 network (an sdist group: uv fetches its build backend)

The tool tars are reproducible and cached in <user cache>/mlenv/build-tools.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

from ..runtime.names import normalize as _norm
from .dockerfile import ETC_STUBS, Group, Plan, render

FIXED_MTIME = 1_700_000_000  # reproducible tar entries

# An artifact at least this big is a PyPI group (a builder stage and an image layer) of
# its own; smaller ones share one. More than MAX_GROUPS: the smallest are merged.
GROUP_MIN_BYTES = 4_000_000
MAX_GROUPS = 30


def group_min_bytes() -> int:
    """The group threshold: MLENV_BUILD_GROUP_MIN_BYTES, read when a build asks (not at import:
    a process that imported mlenv, a notebook or the tests, may set it later), else GROUP_MIN_BYTES."""
    return int(os.environ.get("MLENV_BUILD_GROUP_MIN_BYTES") or GROUP_MIN_BYTES)


def pypi_groups(
    pkgs,
    sizes: dict[str, int],
    *,
    min_bytes: int | None = None,
    max_groups: int = MAX_GROUPS,
    direct: frozenset[str] = frozenset(),
) -> list[Group]:
    """Every artifact >= min_bytes alone (group id = its normalized name), the rest
    together (group id from their sorted names, so a version change keeps it). A
    group's id and content depend only on its own artifacts.

    Order: the classic builder re-runs every step after a changed one, so the
    least likely to change come first, as in any good Dockerfile: groups of
    transitive dependencies, then groups holding a requirement the spec names
    itself (`direct`: the pins users edit); within each, largest first (ties by
    id), so a change re-runs only what is smaller than it."""
    if min_bytes is None:
        min_bytes = group_min_bytes()
    size = {p.sha256: int(sizes.get(p.sha256) or p.get("size") or 0) for p in pkgs}
    ordered = sorted(pkgs, key=lambda p: (-size[p.sha256], _norm(p.name)))
    big = [p for p in ordered if size[p.sha256] >= min_bytes]
    small = [p for p in ordered if size[p.sha256] < min_bytes]
    while big and len(big) + (1 if small else 0) > max_groups:
        small.insert(0, big.pop())  # the smallest big one joins the shared group
    groups = []
    for p in big:
        gid = _norm(p.name)
        groups.append(Group("bin-pkg" if gid == "bin" else gid, [p], size[p.sha256]))
    if small:
        import hashlib

        names = sorted(_norm(p.name) for p in small)
        gid = "group-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        groups.append(Group(gid, sorted(small, key=lambda p: _norm(p.name)), sum(size[p.sha256] for p in small)))
    return sorted(groups, key=lambda g: (any(_norm(p.name) in direct for p in g.packages), -g.size, g.gid))


def make_plan(
    spec, lock, platform: str, *, ca_bundle: bool, artifacts: dict[str, Path] | None = None, builder: str = "classic"
) -> Plan:
    from .. import __version__
    from ..installing import needs_interpreter

    conda = lock.for_platform(platform, "conda")
    pypi = lock.for_platform(platform, "pypi")
    base = lock.image.get("reference") or lock.image.get("base") or spec.base_image
    sizes = {sha: path.stat().st_size for sha, path in (artifacts or {}).items()}
    from .tools import host_tools_run_in

    inline = host_tools_run_in(platform)
    return Plan(
        name=spec.name,
        description=spec.description,
        base=base,
        base_digest=lock.image.get("digest"),
        content_hash=lock.content_hash,
        short_hash=lock.short_hash,
        platform=platform,
        interpreter=lock.image.get("python") or "python3",
        has_conda=bool(conda),
        has_pypi=bool(pypi),
        needs_env=bool(conda) or needs_interpreter(lock, platform),
        apt_packages=list(lock.image.get("apt-packages", [])),
        debs=lock.for_platform(platform, "apt"),
        variables=dict(lock.variables),
        steps=list(lock.image.get("steps", [])),
        ca_bundle=ca_bundle,
        tools_inline=inline,
        version=__version__,
        groups=pypi_groups(pypi, sizes, direct=_direct_names(lock)) if pypi else [],
        builder=builder,
    )


def _direct_names(lock) -> frozenset[str]:
    """Normalized names of the spec's own PyPI requirements (from the lock's inputs)."""
    names = set()
    for req in lock.inputs.get("pypi-dependencies", []):
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if m:
            names.add(_norm(m.group(1)))
    return frozenset(names)


def _tar_bytes(entries: list[tuple[str, Path]]) -> bytes:
    """A reproducible tar (sorted, fixed mtime/owner) of (archive name, file)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, src in sorted(entries):
            st = src.stat()
            info = tarfile.TarInfo(rel)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.size = st.st_size
            info.mode = 0o755 if (st.st_mode & 0o111) else 0o644
            with open(src, "rb") as data:
                tar.addfile(info, data)
    return buf.getvalue()


def runtime_files() -> list[tuple[str, Path]]:
    """(archive name, file) of the stdlib-only layer shipped into install steps: the
    package's __init__ and every module of mlenv.runtime, whole (no module list)."""
    pkg = Path(__file__).resolve().parent.parent
    files = [("lib/mlenv/__init__.py", pkg / "__init__.py")]
    files += [(f"lib/mlenv/{p.relative_to(pkg).as_posix()}", p) for p in sorted((pkg / "runtime").rglob("*.py"))]
    return files


def _cached_tar(kind: str, entries: list[tuple[str, Path]]) -> tuple[str, Path]:
    """(sha256, file) of the tar of entries, kept in mlenv's cache: built once per
    content. The key is each file's archive name, size and bytes (for a file over
    1 MB, its first and last MB: the uv binary, py-rattler's extension), not paths or
    mtimes, so venvs holding the same mlenv/uv/py-rattler share one tar."""
    import hashlib

    from ..runtime.fetch import default_cache_root
    from ..runtime.fsutil import atomic_write

    key = hashlib.sha256()
    for rel, src in sorted(entries):
        size = src.stat().st_size
        key.update(f"{rel}\0{size}\0".encode())
        with open(src, "rb") as fh:
            if size <= 2 << 20:
                key.update(fh.read())
            else:
                key.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                key.update(fh.read())
    directory = default_cache_root() / "build-tools"
    path = directory / f"{kind}-{key.hexdigest()[:24]}.tar"
    sha_path = path.with_suffix(".sha256")
    if path.is_file() and sha_path.is_file():
        sha = sha_path.read_text().strip()
        if path.stat().st_size and len(sha) == 64:
            for used in (path, sha_path):  # last use, for `mlenv cache prune`
                os.utime(used)
            return sha, path
    data = _tar_bytes(entries)
    atomic_write(path, data)
    sha = hashlib.sha256(data).hexdigest()
    atomic_write(sha_path, sha + "\n")
    return sha, path


def served_files(lock, plan: Plan, *, ca_bundle: str | None, artifacts: dict[str, Path]) -> dict[str, bytes | Path]:
    """URL path -> bytes or a file: what the build-time artifact server (mlenv.image.serve)
    serves to the install steps, everything named by its sha256. Fills in the plan's
    sha256s (tools, sub-locks), which the install steps' RUN text carries."""
    import hashlib

    from ..installing import plan_for

    served: dict[str, bytes | Path] = {f"/a/{pkg.sha256}": artifacts[pkg.sha256] for pkg in plan.debs}  # apt step
    if not plan.needs_env:
        return served
    tools = runtime_files()
    if plan.tools_inline:
        from ..uvtool import uv_binary

        tools.append(("bin/uv", Path(uv_binary())))
    plan.tools_sha, path = _cached_tar("tools", tools)
    served[f"/tools/{plan.tools_sha}"] = path
    if plan.has_conda and plan.tools_inline:
        import importlib.util

        found = importlib.util.find_spec("rattler")
        if found is None or found.origin is None:  # a dependency of mlenv: only a broken install lacks it
            from ..errors import MlenvError

            raise MlenvError("py-rattler is not importable, so it cannot go into the image", hint="reinstall mlenv")
        origin = Path(found.origin).parent
        entries = [
            (f"lib/rattler/{f.relative_to(origin).as_posix()}", f)
            for f in origin.rglob("*")
            if f.is_file() and "__pycache__" not in f.parts
        ]
        plan.rattler_sha, path = _cached_tar("rattler", entries)
        served[f"/tools/{plan.rattler_sha}"] = path

    def add_plan(sub) -> str:
        data = sub.dumps().encode()
        sha = hashlib.sha256(data).hexdigest()
        served[f"/plan/{sha}"] = data
        return sha

    conda = lock.for_platform(plan.platform, "conda")
    plan.env_plan_sha = add_plan(plan_for(lock, plan.platform, part="env"))
    for g in plan.groups:
        g.plan_sha = add_plan(plan_for(lock, plan.platform, part="pypi", pypi=g.packages, group=g.gid))
    for pkg in conda + [p for g in plan.groups for p in g.packages]:
        served[f"/a/{pkg.sha256}"] = artifacts[pkg.sha256]
    for sha in (plan.uv_wheel_sha, plan.rattler_wheel_sha):  # the target's tools (mlenv.image.tools)
        if sha:
            served[f"/a/{sha}"] = artifacts[sha]
    if ca_bundle and plan.needs_ca:
        served["/net.pem"] = Path(ca_bundle)
    return served


def context_files(spec, lock, plan: Plan) -> dict[str, bytes | Path]:
    """The build context: the Dockerfile (render after served_files) and the image's
    own mlenv.lock + mlenv.toml (+ BuildKit's empty /etc stubs, dockerfile.ETC_STUBS).
    Nothing else: the install steps fetch their inputs from the artifact server."""
    from ..runtime.secrets import scrub

    dockerfile, _ = render(plan)
    files: dict[str, bytes | Path] = {
        "Dockerfile": dockerfile.encode(),
        "meta/mlenv.lock": lock.dumps().encode(),
        "meta/mlenv.toml": scrub(spec.text).encode(),
    }
    if plan.builder == "buildkit":
        files.update({f"etc/{name}": b"" for name in ETC_STUBS})
    return files


def write_dir(files: dict[str, bytes | Path], directory: Path, served: dict[str, bytes | Path] | None = None) -> None:
    """--dockerfile-only: the context as plain files, for inspection, plus what the
    artifact server would serve under served/<url path> (files are hard links into
    mlenv's cache when on the same filesystem)."""
    from ..runtime.fsutil import atomic_write, link_or_copy

    for rel, src in list(files.items()) + [("served" + k, v) for k, v in (served or {}).items()]:
        dest = directory / rel
        if isinstance(src, Path):
            link_or_copy(src, dest)
        else:
            atomic_write(dest, src)


def tar_context(files: dict[str, bytes | Path]):
    """The context as an uncompressed tar in a temporary file (rewound)."""
    import tempfile

    fh = tempfile.TemporaryFile(prefix="mlenv-context-")
    with tarfile.open(fileobj=fh, mode="w") as tar:
        for rel in sorted(files):
            src = files[rel]
            info = tarfile.TarInfo(rel)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if isinstance(src, Path):
                st = src.stat()
                info.size = st.st_size
                info.mode = 0o755 if (st.st_mode & 0o111) else 0o644
                with open(src, "rb") as data:
                    tar.addfile(info, data)
            else:
                info.size = len(src)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(src))
    fh.seek(0)
    return fh


def missing_local_files(files: dict[str, bytes | Path]) -> list[str]:
    return [str(src) for src in files.values() if isinstance(src, Path) and not os.path.exists(src)]
