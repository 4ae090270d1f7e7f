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
_LINK_SCRIPT_RE = re.compile(
    r"^(bin/\.(?P<n1>.+)-(?P<a1>post-link|pre-link)\.sh|Scripts/\.(?P<n2>.+)-(?P<a2>post-link|pre-link)\.bat)$"
)
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
    from ..runtime.fetch import artifact_filename

    return artifact_filename(pkg).endswith(".whl")


def refuse_unbuildable(lock, platform: str) -> None:
    """One clear line for what this builder cannot do without running code."""
    from ..oci.image import PLATFORMS

    if platform not in PLATFORMS:
        raise MaterializeError(f"the daemonless builder makes linux-64 and linux-aarch64 images, not {platform}")
    if platform not in lock.platforms:
        raise MaterializeError(
            f"mlenv.lock has no {platform} packages",
            hint=f'add "{platform}" to [environment] platforms and run `mlenv lock`',
        )
    sdists = [p for p in lock.for_platform(platform, "pypi") if not is_wheel(p)]
    if sdists:
        names = ", ".join(f"{p.name} {p.version}" for p in sorted(sdists, key=lambda p: p.name)[:3])
        raise MaterializeError(
            f"PyPI package {names} is an sdist: building it runs code, which the daemonless builder never does",
            hint="build this lock with `--builder buildkit`",
        )
    if lock.image.get("apt-packages"):
        raise MaterializeError(
            "[image] apt-packages need apt-get to run in the image", hint="build this lock with `--builder buildkit`"
        )
    if lock.image.get("steps"):
        raise MaterializeError(
            "[image] steps are Dockerfile instructions the daemonless builder does not run",
            hint="build this lock with `--builder buildkit`",
        )
    wrong = [p for p in lock.for_platform(platform, "pypi") if not wheel_fits(p, platform)]
    if wrong:
        p = wrong[0]
        raise MaterializeError(
            f"PyPI wheel {p.name} {p.version} is not for {platform} ({p.url.rsplit('/', 1)[-1]})",
            hint="re-lock: `mlenv lock --upgrade`",
        )


def wheel_fits(pkg, platform: str) -> bool:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    from ..runtime.fetch import artifact_filename

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
    from ..installing import conda_python, needs_interpreter

    conda = conda_python(lock, platform)
    if conda is None and not needs_interpreter(lock, platform):
        return None
    want = lock.platform_python(platform)
    if conda is not None:
        xy = ".".join(conda.version.split(".")[:2])
        venv = False
    elif facts is None and want:
        xy = ".".join(want.split(".")[:2])  # checked against the base once its facts are read (check_venv_python)
        venv = True
    else:
        if facts is None or not facts.python_real:
            where = lock.image.get("python") or "python3 on the base's PATH"
            raise MaterializeError(
                f"the base image has no Python interpreter at {where}",
                hint="set [image] python to the base's interpreter, or add python to [conda]",
            )
        xy = facts.python_xy or ""
        venv = True
        if want and ".".join(want.split(".")[:2]) != xy:
            raise MaterializeError(
                f"the base image's Python ({facts.python_real}) is {xy} but mlenv.lock was solved for Python {want}",
                hint="set [environment] python to match, or change the base",
            )
    if compiler is True:
        compiler = find_compiler(xy)
    return PyTarget(xy, venv, compiler or None)


def check_venv_python(target: PyTarget, facts, lock, platform: str) -> None:
    """The base's interpreter exists and is the X.Y the venv was materialized for."""
    checked = python_target(lock, platform, facts, compiler=False)
    if checked is not None and checked.version != target.version:
        raise MaterializeError(
            f"the base image's Python is {checked.version}, the environment was made for {target.version}",
            hint="set [environment] python to match, or change the base",
        )


def find_compiler(xy: str) -> PycCompiler | None:
    major, minor, micro = sys.version_info[:3]
    if f"{major}.{minor}" == xy and sys.implementation.name == "cpython":
        return PycCompiler(sys.executable, f"{major}.{minor}.{micro}")
    exe = shutil.which(f"python{xy}")
    if not exe:
        return None
    try:
        probe = "import platform,sys;print(sys.implementation.name,platform.python_version())"
        out = subprocess.run([exe, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, check=False)
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
    return [
        bytes_entry(f"{meta}/mlenv.lock", lock_text.encode()),
        bytes_entry(f"{meta}/mlenv.toml", spec_text.encode()),
    ]


# --- conda ------------------------------------------------------------------------------------


def materialize_conda(
    pkgs, platform: str, artifacts: dict[str, Path], staging: Path, *, rattler_cache: Path, target: PyTarget | None
) -> Materialized:
    """Link every conda package into staging/opt/mlenv/env; entries per package."""
    import rattler

    from ..runtime.aio import run as run_async
    from ..runtime.fetch import artifact_filename
    from ..runtime.fetch import named_links as _named_links
    from ..solve.conda import to_record

    prefix = staging / ENV_ROOT
    prefix.mkdir(parents=True, exist_ok=True)
    local = _named_links(pkgs, artifacts, staging.parent / (staging.name + "-pkgs"))
    records = [to_record(replace(p, url=(local / artifact_filename(p)).absolute().as_uri())) for p in pkgs]
    try:
        run_async(
            lambda: rattler.install(
                records,
                str(prefix),
                cache_dir=rattler_cache,
                show_progress=False,
                platform=rattler.Subdir(platform),
                execute_link_scripts=False,
                alternative_target_prefix=PREFIX,
            )
        )
    except Exception as exc:  # noqa: BLE001 - py-rattler raises its own exception types; one line for all
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
        rel = e.path[len(ENV_ROOT) + 1 :]
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
                hint="build this lock with `--builder buildkit`",
            )


def _compile_noarch(recs: dict, prefix: Path, target: PyTarget) -> None:
    """conda compiles noarch: python packages' .py at install; so do we (reproducibly),
    recording the pycs in the package's record as conda does (path_type pyc_file)."""
    site_rel = f"lib/python{target.version}/site-packages/"
    assert target.compiler is not None
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

# Runs in `python -I -S` (no site, no user paths) of the compiling CPython; jobs
# (key, source bytes, in-image path) pickled on stdin, (key, pyc bytes or None) on stdout.
# Checked-hash pyc, marshal format 2 (see the module docstring).
_COMPILE = """\
import importlib.util,marshal,pickle,sys
out=[]
for key,data,dfile in pickle.load(sys.stdin.buffer):
    try:code=compile(data,dfile,'exec',dont_inherit=True,optimize=0)
    except (SyntaxError,ValueError):out.append((key,None));continue
    out.append((key,importlib.util.MAGIC_NUMBER+b'\\x03\\x00\\x00\\x00'+importlib.util.source_hash(data)+marshal.dumps(code,2)))
pickle.dump(out,sys.stdout.buffer,protocol=4)
"""


def compile_sources(
    jobs: list[tuple[str, bytes, str]], compiler: PycCompiler | None, workers: int = 1
) -> dict[str, bytes]:
    """key -> pyc bytes for (key, source, in-image path) jobs, in `workers` processes
    of the compiler; a source that does not compile gets no pyc (as compileall). The
    bytes do not depend on the split (marshal format 2 has no back-references)."""
    import pickle

    if not jobs or compiler is None:
        return {}
    jobs = sorted(jobs, key=lambda j: j[0])
    n = max(1, min(workers, len(jobs) // 50 + 1))
    chunks = [jobs[i::n] for i in range(n)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    procs = [
        subprocess.Popen(
            [compiler.executable, "-I", "-S", "-c", _COMPILE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in chunks
    ]
    out: dict[str, bytes] = {}
    threads = []
    results: list[tuple[bytes, bytes, int]] = [(b"", b"", 0)] * len(procs)

    def talk(i: int) -> None:
        o, e = procs[i].communicate(pickle.dumps(chunks[i], protocol=4))
        results[i] = (o, e, procs[i].returncode)

    import threading

    for i in range(len(procs)):
        t = threading.Thread(target=talk, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for o, e, rc in results:
        if rc != 0:
            last = e.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise MaterializeError(f"compiling .pyc files with {compiler.executable} failed: {last[0][:200]}")
        for key, pyc in pickle.loads(o):
            if pyc is not None:
                out[key] = pyc
    return out


def compile_pycs(jobs: list[tuple[str, str, str]], compiler: PycCompiler | None, workers: int = 1) -> None:
    """(source file, destination file, in-image path) jobs: compile_sources on files."""
    if not jobs or compiler is None:
        return
    dest = {src: dst for src, dst, _ in jobs}
    got = compile_sources([(src, Path(src).read_bytes(), dfile) for src, _, dfile in jobs], compiler, workers)
    for src, pyc in got.items():
        Path(dest[src]).parent.mkdir(parents=True, exist_ok=True)
        Path(dest[src]).write_bytes(pyc)


# --- PyPI -------------------------------------------------------------------------------------

COMPILE_CHUNK = 400  # .py files per compile process run (a process start is ~20 ms)
SPILL_BYTES = 1 << 20  # wheel members bigger than this go to a staging file, smaller ones stay in memory


class _Files:
    """What one wheel installs: archive path -> (bytes | staging file, executable)."""

    def __init__(self, spill: Path):
        self.items: dict[str, tuple[bytes | str, bool]] = {}
        self.spill = spill
        self.n = 0

    def add(self, path: str, stream, executable: bool) -> tuple[str, int]:
        from ..oci.layer import check_path

        arch = check_path(path.lstrip("/"))
        if arch in self.items:
            raise FileExistsError(f"File already exists: /{arch}")
        h = hashlib.sha256()
        buf = bytearray()
        spilled = None
        size = 0
        fh = None
        try:
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
                if fh is None and len(buf) + len(chunk) > SPILL_BYTES:
                    self.spill.mkdir(parents=True, exist_ok=True)
                    self.n += 1
                    spilled = str(self.spill / f"{self.n}")
                    fh = open(spilled, "wb")  # noqa: SIM115 - closed in the finally below
                    fh.write(buf)
                    buf = bytearray()
                if fh is not None:
                    fh.write(chunk)
                else:
                    buf += chunk
        finally:
            if fh is not None:
                fh.close()
        self.items[arch] = (spilled if spilled else bytes(buf), executable)
        return base64.urlsafe_b64encode(h.digest()).decode("ascii").rstrip("="), size

    def data(self, arch: str) -> bytes:
        value = self.items[arch][0]
        return value if isinstance(value, bytes) else Path(value).read_bytes()

    def entries(self) -> list[Entry]:
        out = []
        for arch, (value, exe) in sorted(self.items.items()):
            if isinstance(value, bytes):
                out.append(bytes_entry(arch, value, executable=exe))
            else:
                out.append(Entry(arch, "file", exe, os.path.getsize(value), source=value))
        return out


def _memory_destination(target: PyTarget, dist_name: str, files: _Files):
    """installer's SchemeDictionaryDestination with the file system replaced by _Files:
    installer decides every path (schemes, .data, traversal checks), script and
    shebang; nothing is written to disk but members over SPILL_BYTES."""
    import io

    from installer.destinations import SchemeDictionaryDestination
    from installer.records import Hash, RecordEntry
    from installer.scripts import Script
    from installer.utils import Scheme

    class Destination(SchemeDictionaryDestination):
        def write_to_fs(self, scheme, path, stream, is_executable):  # type: ignore[override]
            final = self._path_with_destdir(scheme, path)  # destdir None: the in-image path, checked
            digest, size = files.add(final.as_posix(), stream, is_executable)
            return RecordEntry(path, Hash(self.hash_algorithm, digest), size)

        def write_script(self, name, module, attr, section):  # type: ignore[override]
            script_name, data = Script(name, module, attr, section).generate(self.interpreter, self.script_kind)
            with io.BytesIO(data) as stream:
                return self.write_to_fs(Scheme("scripts"), script_name, stream, is_executable=True)

    scheme = {
        "purelib": target.site,
        "platlib": target.site,
        "scripts": f"{PREFIX}/bin",
        "data": PREFIX,
        "headers": f"{PREFIX}/include/site/python{target.version}/{dist_name}",
    }
    return Destination(scheme, interpreter=target.interpreter, script_kind="posix", bytecode_optimization_levels=())


def install_wheel(wheel: Path, files: _Files, target: PyTarget, dist_name: str) -> None:
    """One wheel into files, at the image's paths (pypa installer, no file system)."""
    from installer import install
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    try:
        with WheelFile.open(wheel) as source:
            install(source, _memory_destination(target, dist_name, files), additional_metadata={})
    except (InstallerError, ValueError, KeyError, OSError) as exc:
        raise MaterializeError(f"could not install the wheel {wheel.name}: {exc}") from None


def materialize_wheels(
    pkgs, artifacts: dict[str, Path], staging: Path, target: PyTarget, *, workers: int = 1
) -> Materialized:
    """Each wheel's files (in memory, big ones in staging/), .pyc compiled, RECORD completed."""
    from ..runtime.fetch import artifact_filename
    from ..solve.names import normalize

    out = Materialized()
    todo = sorted(pkgs, key=lambda p: normalize(p.name))
    got: dict[str, _Files] = {normalize(p.name): _Files(staging / normalize(p.name)) for p in todo}

    site = target.site.lstrip("/") + "/"
    compiler = target.compiler
    # a wheel's .py files are compiled as soon as it is installed (in chunks, while other
    # wheels install): compile processes and install threads overlap
    compile_pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mlenv-pyc")
    compiling = []

    def one(pkg) -> None:
        name = normalize(pkg.name)
        wheel = staging / "wheels" / name / artifact_filename(pkg)  # installer reads the tags from the name
        wheel.parent.mkdir(parents=True, exist_ok=True)
        if not wheel.exists():
            os.symlink(os.path.abspath(artifacts[pkg.sha256]), wheel)
        files = got[name]
        install_wheel(wheel, files, target, name)
        if compiler is None:
            return
        jobs = sorted(
            (f"{name}\0{arch}", files.data(arch), "/" + arch)
            for arch in files.items
            if arch.startswith(site) and arch.endswith(".py") and "__pycache__" not in arch.split("/")
        )
        for i in range(0, len(jobs), COMPILE_CHUNK):
            compiling.append(compile_pool.submit(compile_sources, jobs[i : i + COMPILE_CHUNK], compiler, 1))

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mlenv-wheel") as pool:
            list(pool.map(one, todo))
        pycs: dict[str, bytes] = {}
        for fut in compiling:
            pycs.update(fut.result())
    finally:
        compile_pool.shutdown(wait=True, cancel_futures=True)
    if compiler is not None:
        by_unit: dict[str, list[tuple[str, bytes]]] = {}
        for key, pyc in pycs.items():
            name, arch = key.split("\0", 1)
            by_unit.setdefault(name, []).append((site + _pyc_path(arch[len(site) :], compiler.tag), pyc))
        for name, items in by_unit.items():
            _add_pycs(got[name], sorted(items), site)
    for name, files in got.items():
        out.units[f"pypi/{name}"] = files.entries()
    return out


def _add_pycs(files: _Files, pycs: list[tuple[str, bytes]], site: str) -> None:
    """The compiled .pyc files into the unit and its RECORD (as pip does), sorted."""
    import csv
    import io

    for arch, data in pycs:
        files.add("/" + arch, io.BytesIO(data), False)
    records = [
        a
        for a in files.items
        if a.startswith(site) and a.count("/") == site.count("/") + 1 and a.endswith(".dist-info/RECORD")
    ]
    if len(records) != 1:
        return
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=",", quotechar='"', lineterminator="\n")
    for arch, data in pycs:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([arch[len(site) :], f"sha256={digest}", str(len(data))])
    text = files.data(records[0]).decode("utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    files.items[records[0]] = ((text + buf.getvalue()).encode("utf-8"), False)
