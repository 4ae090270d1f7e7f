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
  interpreter, else pythonX.Y on PATH), reproducibly (mlenv.image.pyc: checked-hash,
  marshal format 2, co_filename = the in-image path), in long-lived worker
  processes; a wheel's files are queued for compiling as soon as it is installed and
  its entries are handed on (`on_unit`) as soon as its last pyc is back, so the layer
  of one package is written while others still install and compile. Where no such
  CPython exists, no .pyc is shipped (the first import in each container compiles in
  memory: measured about 5x slower imports for scikit-learn + pandas).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import MlenvError
from ..oci.layer import Entry, bytes_entry, dir_entry, entries_from_dir, symlink_entry
from .pyc import CHUNK, CompilePool, PycCache, PycCompiler, find_compiler, pyc_path

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
    pyc_compiled: int = 0  # .pyc files compiled by this run
    pyc_reused: int = 0  # .pyc files taken from the pyc cache (same source bytes and path)


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
    from ..apt import legacy_unpinned

    if legacy_unpinned(lock):
        raise MaterializeError(
            "[image] apt-packages are not pinned in mlenv.lock (written before mlenv locked Debian packages): the "
            "daemonless builder installs exactly the locked .debs",
            hint="`mlenv lock --upgrade` pins them, or build this lock with `--builder buildkit`",
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
    pkgs,
    platform: str,
    artifacts: dict[str, Path],
    staging: Path,
    *,
    rattler_cache: Path,
    target: PyTarget | None,
    pool: CompilePool | None = None,
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
        _compile_noarch(recs, prefix, target, pool)
        owners = {}
        for name, (_, rec) in recs.items():
            for f in rec.get("files") or []:
                owners.setdefault(f, []).append(name)
    for meta, rec in recs.values():
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


def refuse_link_scripts(lock, platform: str, artifacts: dict[str, Path]) -> None:
    """The link-script check before anything is built, from the fetched archives' info/paths.json
    (read by py-rattler, which reads only the info part), so that `auto` can pick a builder
    that runs them. An archive without a readable paths.json is left to the check at link time."""
    import tempfile

    from rattler.package import PathsJson

    from ..runtime.fetch import artifact_filename

    with tempfile.TemporaryDirectory(prefix="mlenv-paths-") as tmp:
        for pkg in sorted(lock.for_platform(platform, "conda"), key=lambda p: p.name):
            path = artifacts.get(pkg.sha256)
            if path is None or pkg.name in POST_LINK_ALLOWED:
                continue
            # py-rattler tells .conda from .tar.bz2 by the name; cache files are named by sha256
            named = Path(tmp) / pkg.sha256 / artifact_filename(pkg)
            named.parent.mkdir()
            named.symlink_to(Path(path).resolve())
            try:
                files = [str(e.relative_path) for e in PathsJson.from_package_archive(named).paths]
            except Exception:  # an old archive (no paths.json): materialize_conda checks conda-meta
                continue
            _check_link_scripts({"name": pkg.name, "version": pkg.version, "files": files})


def _compile_noarch(recs: dict, prefix: Path, target: PyTarget, pool: CompilePool | None) -> None:
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
                pyc = pyc_path(f, target.compiler.tag)
                jobs.append((str(prefix / f), str(prefix / pyc), f"{PREFIX}/{f}"))
                added.setdefault(name, []).append(pyc)
    compile_files(jobs, target.compiler, pool)
    for name, pycs in added.items():
        rec = recs[name][1]
        done = [p for p in pycs if (prefix / p).is_file()]
        rec["files"] = sorted(set(rec.get("files") or []) | set(done))
        paths = (rec.get("paths_data") or {}).get("paths")
        if isinstance(paths, list):
            paths.extend({"_path": p, "path_type": "pyc_file"} for p in sorted(done))
            paths.sort(key=lambda x: x.get("_path", ""))


def compile_files(jobs: list[tuple[str, str, str]], compiler: PycCompiler, pool: CompilePool | None) -> None:
    """(source file, destination file, in-image path) jobs, compiled into the destinations."""
    if not jobs:
        return
    dest = {src: dst for src, dst, _ in jobs}
    sources = sorted((src, Path(src).read_bytes(), dfile) for src, _, dfile in jobs)
    own = pool is None
    pool = pool or CompilePool(compiler, 1)
    try:
        futures = [pool.submit(sources[i : i + CHUNK]) for i in range(0, len(sources), CHUNK)]
        for fut in futures:
            for src, pyc in fut.result().items():
                Path(dest[src]).parent.mkdir(parents=True, exist_ok=True)
                Path(dest[src]).write_bytes(pyc)
    finally:
        if own:
            pool.close()


# --- PyPI -------------------------------------------------------------------------------------

SPILL_BYTES = 1 << 20  # wheel members bigger than this go to a staging file, smaller ones stay in memory


class _Files:
    """What one wheel installs: archive path -> (bytes | staging file, executable)."""

    def __init__(self, spill: Path):
        self.items: dict[str, tuple[bytes | str, bool]] = {}
        self.sha256: dict[str, str] = {}  # archive path -> hex sha256 of its bytes (the pyc cache's key)
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
                    fh = open(spilled, "wb")
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
        digest = h.digest()
        self.sha256[arch] = digest.hex()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("="), size

    def put(self, arch: str, data: bytes, executable: bool = False) -> str:
        """A file mlenv made (a .pyc) at archive path arch; its RECORD digest (urlsafe base64 sha256)."""
        from ..oci.layer import check_path

        if check_path(arch) in self.items:
            raise FileExistsError(f"File already exists: /{arch}")
        digest = hashlib.sha256(data).digest()
        self.items[arch] = (data, executable)
        self.sha256[arch] = digest.hex()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

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
        def write_to_fs(self, scheme, path, stream, is_executable):
            final = self._path_with_destdir(scheme, path)  # destdir None: the in-image path, checked
            digest, size = files.add(final.as_posix(), stream, is_executable)
            return RecordEntry(path, Hash(self.hash_algorithm, digest), size)

        def write_script(self, name, module, attr, section):
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
    import zipfile

    from installer import install
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    try:
        with _wheel_zip(wheel) as archive:
            install(WheelFile(archive), _memory_destination(target, dist_name, files), additional_metadata={})
    except (InstallerError, ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise MaterializeError(f"could not install the wheel {wheel.name}: {exc}") from None


def _wheel_zip_class():
    import io
    import struct
    import zipfile

    class WheelZip(zipfile.ZipFile):
        """zipfile's central directory and checks, with members up to FAST_MEMBER_BYTES
        inflated by libdeflate (the `deflate` wheel mlenv pins for compressing; about twice
        zlib's speed) in one call and checked against their CRC-32. Installing wheels
        spent half its CPU in zlib. Anything else (stored above the limit, encrypted,
        other methods) is zipfile's own reading."""

        def __init__(self, path: Path) -> None:
            super().__init__(path)
            self._raw_fp = open(path, "rb")  # closed in close()

        def close(self) -> None:
            try:
                self._raw_fp.close()
            finally:
                super().close()

        def open(self, name, mode="r", pwd=None, *, force_zip64=False):
            info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
            if (mode != "r" or pwd or info.flag_bits & 0x1 or info.file_size > FAST_MEMBER_BYTES
                    or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)):  # fmt: skip
                return super().open(name, mode, pwd, force_zip64=force_zip64)
            import deflate

            fp = self._raw_fp
            fp.seek(info.header_offset)
            head = fp.read(30)
            if len(head) != 30 or head[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local header of {info.filename!r}")
            n, m = struct.unpack("<HH", head[26:30])
            fp.seek(info.header_offset + 30 + n + m)
            raw = fp.read(info.compress_size)
            if len(raw) != info.compress_size:
                raise zipfile.BadZipFile(f"truncated member {info.filename!r}")
            try:
                data = raw if info.compress_type == zipfile.ZIP_STORED else bytes(
                    deflate.deflate_decompress(raw, info.file_size))  # fmt: skip
            except deflate.DeflateError as exc:
                raise zipfile.BadZipFile(f"member {info.filename!r} does not inflate: {exc}") from None
            if len(data) != info.file_size or deflate.crc32(data) != info.CRC:
                raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
            return io.BytesIO(data)

    return WheelZip


FAST_MEMBER_BYTES = 256 << 20


def _wheel_zip(path: Path):
    """A WheelZip of path (the class is made on first use: zipfile stays out of the import)."""
    global _WHEEL_ZIP
    if _WHEEL_ZIP is None:
        _WHEEL_ZIP = _wheel_zip_class()
    return _WHEEL_ZIP(path)


_WHEEL_ZIP = None


def materialize_wheels(
    pkgs,
    artifacts: dict[str, Path],
    staging: Path,
    target: PyTarget,
    *,
    workers: int = 1,
    pool: CompilePool | None = None,
    cache: PycCache | None = None,
    on_unit: Callable[[str, list[Entry]], None] | None = None,
) -> Materialized:
    """Each wheel's files (in memory, big ones in staging/), .pyc compiled (or taken
    from `cache`), RECORD completed. Wheels install in `workers` threads, the one with
    the most .py files first; each one's .py files go to the compile pool as soon as
    it is installed, and `on_unit(unit id, entries)` is called as soon as its last pyc
    is back (from another thread). The entries do not depend on the order or the
    number of workers."""
    from ..runtime.fetch import artifact_filename
    from ..solve.names import normalize

    out = Materialized()
    # the most .py files first: the longest compiles start first, their layers are written while the
    # others compile, and what finishes last (and has to be written after the last .pyc) is small
    todo = sorted(pkgs, key=lambda p: (-_py_files(artifacts[p.sha256]), normalize(p.name)))
    site = target.site.lstrip("/") + "/"
    compiler = target.compiler
    own_pool = pool is None and compiler is not None
    if own_pool:
        assert compiler is not None
        pool = CompilePool(compiler, workers)
    finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlenv-unit")
    keeper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlenv-pyc-cache")  # writes the pyc packs
    lock = threading.Lock()
    units: list[Future[None]] = []

    def finish(pkg, name: str, files: _Files, pycs: list[tuple[str, str, bytes]]) -> None:
        """The unit's pycs into its files and RECORD, handed on, then remembered."""
        if compiler is not None:
            items = sorted((site + pyc_path(arch[len(site) :], compiler.tag), pyc) for arch, _, pyc in pycs)
            _add_pycs(files, items, site)
        entries = files.entries()
        with lock:
            out.units[f"pypi/{name}"] = entries
        if on_unit is not None:
            on_unit(f"pypi/{name}", entries)
        if compiler is not None and cache is not None:  # off this thread: the next unit is handed on meanwhile
            keeper.submit(cache.remember, name, pkg.sha256, [("/" + arch, src, pyc) for arch, src, pyc in pycs])

    def one(pkg) -> None:
        name = normalize(pkg.name)
        wheel = staging / "wheels" / name / artifact_filename(pkg)  # installer reads the tags from the name
        wheel.parent.mkdir(parents=True, exist_ok=True)
        if not wheel.exists():
            os.symlink(os.path.abspath(artifacts[pkg.sha256]), wheel)
        files = _Files(staging / name)
        install_wheel(wheel, files, target, name)
        done: Future[None] = Future()
        with lock:
            units.append(done)
        if compiler is None:
            done.set_result(finisher.submit(finish, pkg, name, files, []).result())
            return
        sources = sorted(arch for arch in files.items if arch.startswith(site) and arch.endswith(".py")
                         and "__pycache__" not in arch.split("/"))  # fmt: skip
        known = cache.lookup(name) if cache is not None else {}
        got: list[tuple[str, str, bytes]] = []
        jobs = []
        for arch in sources:
            hit = known.get(("/" + arch, files.sha256[arch]))
            if hit is not None:
                got.append((arch, files.sha256[arch], hit))
            else:
                jobs.append((arch, files.data(arch), "/" + arch))
        with lock:
            out.pyc_reused += len(got)
            out.pyc_compiled += len(jobs)
        assert pool is not None
        batches = [pool.submit(jobs[i : i + CHUNK]) for i in range(0, len(jobs), CHUNK)]
        left = [len(batches)]

        def batch_done(fut: Future[dict[str, bytes]]) -> None:
            try:
                for arch, pyc in fut.result().items():
                    got.append((arch, files.sha256[arch], pyc))
            except BaseException as exc:  # handed to the waiter
                if not done.done():
                    done.set_exception(exc)
                return
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                chain(finisher.submit(finish, pkg, name, files, got), done)

        if not batches:
            chain(finisher.submit(finish, pkg, name, files, got), done)
        for fut in batches:
            fut.add_done_callback(batch_done)

    try:
        with ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(todo) or 1)), thread_name_prefix="mlenv-wheel"
        ) as ex:
            list(ex.map(one, todo))
        for fut in list(units):
            fut.result()
    finally:
        finisher.shutdown(wait=True, cancel_futures=True)
        keeper.shutdown(wait=True)
        if own_pool and pool is not None:
            pool.close()
    return out


def _py_files(wheel: Path) -> int:
    """How many .py files a wheel holds (its zip directory only; 0 if unreadable: the install says why)."""
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as z:
            return sum(1 for n in z.namelist() if n.endswith(".py"))
    except (OSError, zipfile.BadZipFile):
        return 0


def chain(source: Future, target: Future) -> None:
    """target gets source's outcome (result or exception) when source is done."""

    def copy(f: Future) -> None:
        if target.done():
            return
        exc = f.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(copy)


def _add_pycs(files: _Files, pycs: list[tuple[str, bytes]], site: str) -> None:
    """The compiled .pyc files into the unit and its RECORD (as pip does), sorted."""
    import csv
    import io

    digests = {}
    for arch, data in pycs:
        digests[arch] = files.put(arch, data)
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
        writer.writerow([arch[len(site) :], f"sha256={digests[arch]}", str(len(data))])
    text = files.data(records[0]).decode("utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    files.items[records[0]] = ((text + buf.getvalue()).encode("utf-8"), False)
