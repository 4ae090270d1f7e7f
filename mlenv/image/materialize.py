"""The lock's environment for one target platform, written on the host at its
final in-image paths, into staging directories, with nothing of the target run.

- conda packages: py-rattler links the verified artifacts into
  STAGING/opt/mlenv/env with `alternative_target_prefix=/opt/mlenv/env` (so every
  prefix written into a file is the image's, never the staging path) and
  `execute_link_scripts=False`; then conda-meta/*.json lose the host's cache paths
  (`extracted_package_dir`, `package_tarball_full_path`, `link.source`), `url` is the
  lock's URL, and the records are rewritten as sorted JSON; `conda-meta/history`
  is empty (conda only needs it to exist); rattler's CACHEDIR.TAG is removed.
  Link scripts: a package that ships `bin/.<name>-post-link.sh` / `-pre-link.sh`
  expects code to run at install; such a lock is refused with the package named,
  except for POST_LINK_ALLOWED (documented in docs/build.md).
- PyPI wheels: pypa `installer` writes each wheel into its own staging tree with the
  image's scheme (site-packages of the env's Python, scripts in /opt/mlenv/env/bin
  with the shebang `#!/opt/mlenv/env/bin/python`), no INSTALLER, no
  direct_url.json, RECORD from the wheel's own files. sdists are refused (building
  one runs code): use `--builder buildkit` for such a lock.
- the env's Python: the lock's conda python, or a venv on the base image's Python,
  whose files (pyvenv.cfg, bin/python -> the base interpreter, python3, pythonX.Y,
  lib64 -> lib) are written here from facts read off the base's files
  (mlenv.image.basefacts), not by running it.
- .pyc: compiled where this host has a CPython of the target's X.Y (this
  interpreter, else pythonX.Y on PATH): checked-hash pycs (source hash, no mtime),
  co_filename = the in-image path, and marshal format 2, which has no
  back-references: format 4's references depend on the compiling process's object
  reference counts (measured: the same file compiled after `import pandas` gives
  other bytes), format 2's bytes depend only on the code. So files can be compiled
  in any order, in any number of worker processes. Where no such CPython exists,
  no .pyc is shipped (the first import in each container compiles in memory:
  measured about 5x slower imports for scikit-learn + pandas).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import MlenvError
from ..oci.layer import Entry, bytes_entry, dir_entry, entries_from_dir, symlink_entry

PREFIX = "/opt/mlenv/env"
META_DIR = "/opt/mlenv"
ENV_ROOT = PREFIX.lstrip("/")
# Packages whose link script only refreshes a cache the software rebuilds or does
# without at run time: skipping it is safe. fontconfig: `fc-cache -f` (fonts are
# found without the cache, only slower on first use).
POST_LINK_ALLOWED = frozenset({"fontconfig"})
_LINK_SCRIPT_RE = re.compile(r"^(bin/\.(?P<n1>.+)-(?P<a1>post-link|pre-link)\.sh|Scripts/\.(?P<n2>.+)-(?P<a2>post-link|pre-link)\.bat)$")
_HOST_KEYS = ("extracted_package_dir", "package_tarball_full_path")


class MaterializeError(MlenvError):
    """The lock cannot be materialized without running code, or an install failed."""


@dataclass
class PycCompiler:
    executable: str
    version: str  # X.Y.Z of the compiling CPython: part of the layer cache key and a label

    @property
    def xy(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def tag(self) -> str:
        return "cpython-" + self.xy.replace(".", "")


@dataclass
class PyTarget:
    """Where PyPI packages go in the image and how their scripts start."""

    version: str  # X.Y
    venv: bool  # a venv on the base's Python (else the conda python)
    compiler: PycCompiler | None = None

    @property
    def site(self) -> str:
        return f"{PREFIX}/lib/python{self.version}/site-packages"

    @property
    def interpreter(self) -> str:
        return f"{PREFIX}/bin/python"


@dataclass
class Materialized:
    """Entries by unit id ('conda/<name>', 'pypi/<name>'), plus what no package owns."""

    units: dict[str, list[Entry]] = field(default_factory=dict)
    unowned: list[Entry] = field(default_factory=list)


# --- checks ---------------------------------------------------------------------------------


def is_wheel(pkg) -> bool:
    from ..install import artifact_filename

    return artifact_filename(pkg).endswith(".whl")


def refuse_unbuildable(lock, platform: str) -> None:
    """One clear line for what this builder cannot do without running code."""
    from ..oci.image import PLATFORMS

    if platform not in PLATFORMS:
        raise MaterializeError(f"the daemonless builder makes linux-64 and linux-aarch64 images, not {platform}")
    if platform not in lock.platforms:
        raise MaterializeError(f"mlenv.lock has no {platform} packages",
                               hint=f'add "{platform}" to [environment] platforms and run `mlenv lock`')
    sdists = [p for p in lock.for_platform(platform, "pypi") if not is_wheel(p)]
    if sdists:
        names = ", ".join(f"{p.name} {p.version}" for p in sorted(sdists, key=lambda p: p.name)[:3])
        raise MaterializeError(f"PyPI package {names} is an sdist: building it runs code, which the daemonless "
                               "builder never does", hint="build this lock with `--builder buildkit`")
    if lock.image.get("apt-packages"):
        raise MaterializeError("[image] apt-packages need apt-get to run in the image",
                               hint="build this lock with `--builder buildkit`")
    if lock.image.get("steps"):
        raise MaterializeError("[image] steps are Dockerfile instructions the daemonless builder does not run",
                               hint="build this lock with `--builder buildkit`")
    wrong = [p for p in lock.for_platform(platform, "pypi") if not wheel_fits(p, platform)]
    if wrong:
        p = wrong[0]
        raise MaterializeError(f"PyPI wheel {p.name} {p.version} is not for {platform} ({p.url.rsplit('/', 1)[-1]})",
                               hint="re-lock: `mlenv lock --upgrade`")


def wheel_fits(pkg, platform: str) -> bool:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    from ..install import artifact_filename

    try:
        _, _, _, tags = parse_wheel_filename(artifact_filename(pkg))
    except InvalidWheelFilename:
        return False
    arch = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}[platform]
    for t in tags:
        plat = t.platform
        if plat == "any" or (plat.startswith(("manylinux", "musllinux", "linux")) and plat.endswith("_" + arch)):
            return True
    return False


# --- the Python of the env --------------------------------------------------------------------


def python_target(lock, platform: str, facts, compiler: PycCompiler | None | bool = True) -> PyTarget | None:
    """The env's Python, or None when the lock needs none."""
    from ..install import conda_python, needs_interpreter

    conda = conda_python(lock, platform)
    if conda is None and not needs_interpreter(lock, platform):
        return None
    want = lock.platform_python(platform)
    if conda is not None:
        xy = ".".join(conda.version.split(".")[:2])
        venv = False
    else:
        if facts is None or not facts.python_real:
            where = lock.image.get("python") or "python3 on the base's PATH"
            raise MaterializeError(f"the base image has no Python interpreter at {where}",
                                   hint="set [image] python to the base's interpreter, or add python to [conda]")
        xy = facts.python_xy or ""
        venv = True
        if want and ".".join(want.split(".")[:2]) != xy:
            raise MaterializeError(f"the base image's Python ({facts.python_real}) is {xy} but mlenv.lock was solved "
                                   f"for Python {want}", hint="set [environment] python to match, or change the base")
    if compiler is True:
        compiler = find_compiler(xy)
    return PyTarget(xy, venv, compiler or None)


def find_compiler(xy: str) -> PycCompiler | None:
    if "%d.%d" % sys.version_info[:2] == xy and sys.implementation.name == "cpython":
        return PycCompiler(sys.executable, "%d.%d.%d" % sys.version_info[:3])
    exe = shutil.which(f"python{xy}")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-I", "-S", "-c", "import platform,sys;print(sys.implementation.name,"
                              "platform.python_version())"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or parts[0] != "cpython" or not parts[1].startswith(xy + "."):
        return None
    return PycCompiler(exe, parts[1])


def venv_skeleton(facts, version_xy: str) -> list[Entry]:
    """What `python -m venv --without-pip /opt/mlenv/env` writes, minus activate scripts."""
    from .basefacts import render_pyvenv_cfg

    python = facts.python
    home = python.rsplit("/", 1)[0] or "/"
    try:
        cfg = render_pyvenv_cfg(home, facts.python_version or version_xy, facts.python_real, PREFIX)
    except ValueError as exc:
        raise MaterializeError(f"the base image's Python cannot anchor a venv: {exc}") from None
    root = ENV_ROOT
    return [
        bytes_entry(f"{root}/pyvenv.cfg", cfg),
        symlink_entry(f"{root}/bin/python", python),
        symlink_entry(f"{root}/bin/python3", "python"),
        symlink_entry(f"{root}/bin/python{version_xy}", "python"),
        dir_entry(f"{root}/include"),
        dir_entry(f"{root}/lib/python{version_xy}/site-packages"),
        symlink_entry(f"{root}/lib64", "lib"),
    ]


def conda_skeleton() -> list[Entry]:
    # conda recognises an environment by conda-meta/history; its content is a log with timestamps
    return [bytes_entry(f"{ENV_ROOT}/conda-meta/history", b"")]


def metadata_entries(lock_text: str, spec_text: str) -> list[Entry]:
    meta = META_DIR.lstrip("/")
    return [bytes_entry(f"{meta}/mlenv.lock", lock_text.encode()), bytes_entry(f"{meta}/mlenv.toml", spec_text.encode())]


# --- conda ------------------------------------------------------------------------------------


def materialize_conda(pkgs, platform: str, artifacts: dict[str, Path], staging: Path, *, rattler_cache: Path,
                      target: PyTarget | None) -> Materialized:
    """Link every conda package into staging/opt/mlenv/env; entries per package."""
    import asyncio

    import rattler

    from ..install import _named_links, artifact_filename
    from ..solve.conda import to_record

    prefix = staging / ENV_ROOT
    prefix.mkdir(parents=True, exist_ok=True)
    local = _named_links(pkgs, artifacts, staging.parent / (staging.name + "-pkgs"))
    records = [to_record(replace(p, url=(local / artifact_filename(p)).absolute().as_uri())) for p in pkgs]
    try:
        asyncio.run(rattler.install(records, str(prefix), cache_dir=str(rattler_cache), show_progress=False,
                                    platform=rattler.Subdir(platform), execute_link_scripts=False,
                                    alternative_target_prefix=PREFIX))
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MaterializeError(f"py-rattler could not link the conda packages for {platform}: {text}") from None
    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
    (prefix / "conda-meta" / "history").unlink(missing_ok=True)
    by_url = {artifact_filename(p): p for p in pkgs}
    out = Materialized()
    owners: dict[str, list[str]] = {}
    recs: dict[str, tuple[Path, dict]] = {}
    for meta in sorted((prefix / "conda-meta").glob("*.json")):
        rec = json.loads(meta.read_text(encoding="utf-8"))
        pkg = by_url.get(rec.get("fn") or "") or next((p for p in pkgs if p.name == rec.get("name")), None)
        if pkg is None:
            raise MaterializeError(f"py-rattler wrote a record mlenv did not lock: {meta.name}")
        _check_link_scripts(rec)
        for key in _HOST_KEYS:
            rec.pop(key, None)
        if isinstance(rec.get("link"), dict):
            rec["link"].pop("source", None)
        rec["url"] = pkg.url
        recs[pkg.name] = (meta, rec)
        for f in rec.get("files") or []:
            owners.setdefault(f, []).append(pkg.name)
    if target is not None and target.compiler is not None:
        _compile_noarch(recs, prefix, target)
        owners = {}
        for name, (_, rec) in recs.items():
            for f in rec.get("files") or []:
                owners.setdefault(f, []).append(name)
    for name, (meta, rec) in recs.items():
        meta.write_text(json.dumps(rec, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    owned: set[str] = set()
    for name, (meta, rec) in sorted(recs.items()):
        entries = [_entry_of(prefix, f"conda-meta/{meta.name}")]
        owned.add(f"conda-meta/{meta.name}")
        for f in rec.get("files") or []:
            if len(owners.get(f, ())) == 1 and os.path.lexists(prefix / f):  # a clobbered path: no one's layer
                entries.append(_entry_of(prefix, f))
                owned.add(f)
        out.units[f"conda/{name}"] = entries
    for e in entries_from_dir(prefix, ENV_ROOT):
        rel = e.path[len(ENV_ROOT) + 1:]
        if e.kind != "dir" and rel not in owned:
            out.unowned.append(e)
    return out


def _entry_of(prefix: Path, rel: str) -> Entry:
    from ..oci.layer import check_path

    path = prefix / rel
    st = os.lstat(path)
    arch = f"{ENV_ROOT}/{rel}"
    if os.path.islink(path):
        return symlink_entry(arch, os.readlink(path))
    if path.is_dir():
        return dir_entry(arch)
    return Entry(check_path(arch), "file", bool(st.st_mode & 0o111), st.st_size, source=str(path))


def _check_link_scripts(rec: dict) -> None:
    for f in rec.get("files") or []:
        m = _LINK_SCRIPT_RE.match(f)
        if m and rec.get("name") not in POST_LINK_ALLOWED:
            action = m.group("a1") or m.group("a2")
            raise MaterializeError(
                f"conda package {rec.get('name')} {rec.get('version')} has a {action} script ({f}): it expects code "
                "to run at install, which the daemonless builder never does",
                hint="build this lock with `--builder buildkit`")


def _compile_noarch(recs: dict, prefix: Path, target: PyTarget) -> None:
    """conda compiles noarch: python packages' .py at install; so do we (reproducibly),
    recording the pycs in the package's record as conda does (path_type pyc_file)."""
    site_rel = f"lib/python{target.version}/site-packages/"
    jobs: list[tuple[str, str, str]] = []
    added: dict[str, list[str]] = {}
    for name, (_, rec) in recs.items():
        if rec.get("noarch") != "python":
            continue
        for f in rec.get("files") or []:
            if f.startswith(site_rel) and f.endswith(".py"):
                pyc = _pyc_path(f, target.compiler.tag)
                jobs.append((str(prefix / f), str(prefix / pyc), f"{PREFIX}/{f}"))
                added.setdefault(name, []).append(pyc)
    compile_pycs(jobs, target.compiler)
    for name, pycs in added.items():
        rec = recs[name][1]
        done = [p for p in pycs if (prefix / p).is_file()]
        rec["files"] = sorted(set(rec.get("files") or []) | set(done))
        paths = (rec.get("paths_data") or {}).get("paths")
        if isinstance(paths, list):
            paths.extend({"_path": p, "path_type": "pyc_file"} for p in sorted(done))
            paths.sort(key=lambda x: x.get("_path", ""))


def _pyc_path(rel: str, tag: str) -> str:
    head, _, tail = rel.rpartition("/")
    return f"{head}/__pycache__/{tail[:-3]}.{tag}.pyc" if head else f"__pycache__/{tail[:-3]}.{tag}.pyc"


# --- .pyc -------------------------------------------------------------------------------------

# Runs in `python -I -S` (no site, no user paths); jobs (source, destination, in-image
# path) as JSON on stdin. Checked-hash pyc, marshal format 2 (see the module docstring).
_COMPILE = """\
import importlib.util,json,marshal,os,sys
for src,dst,dfile in json.load(sys.stdin):
    data=open(src,'rb').read()
    try:code=compile(data,dfile,'exec',dont_inherit=True,optimize=0)
    except (SyntaxError,ValueError):continue
    os.makedirs(os.path.dirname(dst),exist_ok=True)
    with open(dst,'wb') as f:f.write(importlib.util.MAGIC_NUMBER+b'\\x03\\x00\\x00\\x00'+importlib.util.source_hash(data)+marshal.dumps(code,2))
"""


def compile_pycs(jobs: list[tuple[str, str, str]], compiler: PycCompiler | None, workers: int = 1) -> None:
    """Compile jobs in `workers` processes; the bytes do not depend on the split."""
    if not jobs or compiler is None:
        return
    jobs = sorted(jobs)
    n = max(1, min(workers, len(jobs) // 50 + 1))
    chunks = [jobs[i::n] for i in range(n)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    procs = [subprocess.Popen([compiler.executable, "-I", "-S", "-c", _COMPILE], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for _ in chunks]
    errors = []
    for proc, chunk in zip(procs, chunks):
        _, err = proc.communicate(json.dumps(chunk).encode())
        if proc.returncode != 0:
            errors.append(err.decode(errors="replace").strip().splitlines()[-1:] or ["?"])
    if errors:
        raise MaterializeError(f"compiling .pyc files with {compiler.executable} failed: {errors[0][0][:200]}")


# --- PyPI -------------------------------------------------------------------------------------


def install_wheel(wheel: Path, dest: Path, target: PyTarget, dist_name: str) -> None:
    """One wheel into dest (a staging root standing for '/'), at the image's paths."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    scheme = {
        "purelib": target.site,
        "platlib": target.site,
        "scripts": f"{PREFIX}/bin",
        "data": PREFIX,
        "headers": f"{PREFIX}/include/site/python{target.version}/{dist_name}",
    }
    destination = SchemeDictionaryDestination(scheme, interpreter=target.interpreter, script_kind="posix",
                                              destdir=str(dest), bytecode_optimization_levels=())
    try:
        with WheelFile.open(wheel) as source:
            install(source, destination, additional_metadata={})
    except (InstallerError, ValueError, KeyError, OSError) as exc:
        raise MaterializeError(f"could not install the wheel {wheel.name}: {exc}") from None


def materialize_wheels(pkgs, artifacts: dict[str, Path], staging: Path, target: PyTarget, *,
                       workers: int = 1) -> Materialized:
    """Each wheel into staging/<name>/ (its own tree), .pyc compiled, RECORD completed."""
    from ..install import artifact_filename
    from ..solve.names import normalize

    out = Materialized()
    todo = sorted(pkgs, key=lambda p: normalize(p.name))
    roots = {normalize(p.name): staging / normalize(p.name) for p in todo}

    def one(pkg) -> None:
        root = roots[normalize(pkg.name)]
        src = artifacts[pkg.sha256]
        wheel = root.parent / (root.name + "-whl") / artifact_filename(pkg)
        wheel.parent.mkdir(parents=True, exist_ok=True)
        if not wheel.exists():
            os.symlink(os.path.abspath(src), wheel)  # installer reads the name for the wheel's tags
        install_wheel(wheel, root, target, normalize(pkg.name))

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mlenv-wheel") as pool:
        list(pool.map(one, todo))
    site_rel = target.site.lstrip("/")
    jobs: list[tuple[str, str, str]] = []
    if target.compiler is not None:
        for name, root in roots.items():
            site = root / site_rel
            for py in sorted(site.rglob("*.py")):
                rel = py.relative_to(site).as_posix()
                if "__pycache__" in rel.split("/"):
                    continue
                jobs.append((str(py), str(site / _pyc_path(rel, target.compiler.tag)), f"{target.site}/{rel}"))
        compile_pycs(jobs, target.compiler, workers)
        for name, root in roots.items():
            _record_pycs(root / site_rel, target.compiler.tag)
    for name, root in roots.items():
        out.units[f"pypi/{name}"] = entries_from_dir(root)
    return out


def _record_pycs(site: Path, tag: str) -> None:
    """Add the compiled .pyc files to the distribution's RECORD (as pip does), sorted."""
    infos = sorted(site.glob("*.dist-info"))
    if len(infos) != 1:
        return
    record = infos[0] / "RECORD"
    if not record.is_file():
        return
    pycs = sorted(p for p in site.rglob(f"*.{tag}.pyc"))
    if not pycs:
        return
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=",", quotechar='"', lineterminator="\n")
    for p in pycs:
        data = p.read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([p.relative_to(site).as_posix(), f"sha256={digest}", str(len(data))])
    text = record.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    record.write_text(text + buf.getvalue(), encoding="utf-8")
