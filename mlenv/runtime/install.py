"""Install a plan into a prefix, exactly: one installer for laptops and images.

`mlenv install` runs it on the host; each install step of an image runs it in the
base image (`python3 -m mlenv.runtime install --plan ...`), so a laptop environment
and an image agree.

Layout of a prefix:
- conda packages are linked into PREFIX by py-rattler (records in PREFIX/conda-meta);
- PyPI packages are installed by `uv pip install --require-hashes --no-deps` into the
  prefix's interpreter: the conda `python` of the plan if it has one, otherwise a
  venv created in PREFIX on a base Python (the plan's interpreter, else --python,
  else python3 on PATH);
- optionally (`pypi_prefix`) PyPI packages go to PYPI_PREFIX/lib/pythonX.Y/site-packages
  and a `_mlenv_pypi.pth` in PREFIX's site-packages adds that directory;
- images (`pypi_groups`): PyPI packages are installed in groups, each into
  PYPI_PREFIX/<group>/ (one build step and one image layer per group), with their
  scripts linked into PYPI_PREFIX/bin; the `_mlenv_pypi.pth` adds every
  PYPI_PREFIX/*/lib/pythonX.Y/site-packages, so the groups form one site-packages set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import conda, pypi
from .errors import InstallError
from .fetch import default_cache_root, fetch_artifacts, named_links
from .fsutil import atomic_write, drop_scratch, fix_mtimes, make_scratch
from .inventory import compare, inventory
from .names import normalize
from .plan import PART_ALL, PART_ENV, PART_PYPI, Plan

PTH_NAME = "_mlenv_pypi.pth"


@dataclass
class InstallResult:
    prefix: Path
    platform: str
    conda: int = 0
    pypi: int = 0
    interpreter: str | None = None
    pypi_prefix: Path | None = None
    removed: list[str] = field(default_factory=list)


def env_python(prefix: Path) -> Path:
    return prefix / ("python.exe" if sys.platform.startswith("win") else "bin/python")


def base_interpreter(plan: Plan, python: str | None) -> str:
    """The base Python a venv is created on: the plan's ([image] python), else --python, else python3."""
    candidate = plan.interpreter or python
    if candidate:
        if os.path.isabs(candidate) and not os.path.exists(candidate):
            raise InstallError(f"the interpreter {candidate} does not exist",
                               hint="set [image] python / --python to an existing interpreter")  # fmt: skip
        found = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if not found:
            raise InstallError(f"interpreter {candidate!r} not found on PATH", hint="pass --python /path/to/python3")
        return found
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise InstallError("no python3 on PATH to create the environment's venv", hint="pass --python /path/to/python3")
    return found


def python_version(interpreter: str | Path) -> str:
    proc = subprocess.run([str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, env=pypi.clean_env())  # fmt: skip
    if proc.returncode != 0:
        raise InstallError(f"cannot run the interpreter {interpreter}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def check_python_version(plan: Plan, interpreter: str | Path) -> str:
    have = python_version(interpreter)
    want = plan.python
    if want and ".".join(want.split(".")[:2]) != have:
        raise InstallError(
            f"the interpreter {interpreter} is Python {have} but mlenv.lock was solved for Python {want}",
            hint="pass --python (or set [image] python) to a matching interpreter, or change [environment] python and re-lock",
        )
    return have


def install(
    plan: Plan,
    prefix: str | os.PathLike[str],
    *,
    python: str | None = None,
    pypi_prefix: str | os.PathLike[str] | None = None,
    pypi_groups: bool = False,
    files_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    offline: bool = False,
    index_urls: tuple[str, ...] = (),
    artifact_url: str | None = None,
    ca_bundle: str | None = None,
    uv: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    fixed_mtime: int | None = None,
    progress=None,
) -> InstallResult:
    """Materialize the plan's part (env: conda packages + interpreter; pypi: PyPI
    packages; all: both) into prefix.

    pypi_groups (images): PyPI packages live in PYPI_PREFIX/<group>/ and the env's .pth
    adds all of them; a plan with a `group` installs its PyPI packages into
    PYPI_PREFIX/<group>.

    Image build steps: artifact_url fetches every artifact from mlenv's build-time
    artifact server (ARTIFACT_URL<sha256>, sha256-checked while streamed); work_dir is
    a fixed scratch directory (so paths recorded in the prefix, e.g. direct_url.json,
    are the same on every run); fixed_mtime stamps everything this install wrote (and
    its parent directories) with that epoch, so the layer is byte-reproducible."""
    say = progress or (lambda msg: None)
    prefix = Path(prefix).absolute()
    ppfx = Path(pypi_prefix).absolute() if pypi_prefix else None
    group = plan.group
    if (pypi_groups or group) and ppfx is None:
        raise InstallError("PyPI groups need --pypi-prefix")
    groups = pypi_groups or bool(group)
    do_env = plan.part in (PART_ENV, PART_ALL)
    do_pypi = plan.part in (PART_PYPI, PART_ALL)
    files = Path(files_dir) if files_dir else None
    result = InstallResult(prefix, plan.platform, pypi_prefix=ppfx)
    prefix.mkdir(parents=True, exist_ok=True)
    scratch_fd = -1
    if work_dir:
        tmp = str(Path(work_dir).absolute())
        os.makedirs(tmp)  # must not exist: it is removed afterwards
    else:  # locked while in use: a killed install's is removed by the next one
        scratch, scratch_fd = make_scratch("install")
        tmp = str(scratch)
    written: list[Path] = []  # roots whose trees this install wrote (fixed_mtime)
    uv_bin = pypi.uv_command(uv) if (do_pypi and plan.pypi) else ""
    try:
        if no_cache:
            cache = Path(tmp) / "artifacts"
        elif cache_dir:
            cache = Path(cache_dir) / "artifacts" / "sha256"
        else:
            cache = default_cache_root() / "artifacts" / "sha256"
        wanted = (plan.conda if do_env else []) + (plan.pypi if do_pypi else [])
        found = fetch_artifacts(wanted, cache=cache, files=files, offline=offline, index_urls=index_urls,
                                artifact_url=artifact_url, ca_bundle=ca_bundle, progress=say)  # fmt: skip

        if do_env:
            if plan.conda:
                say(f"conda: linking {len(plan.conda)} verified packages with py-rattler")
                local = named_links(plan.conda, found, Path(tmp) / "conda")
                rcache = Path(tmp) / "rattler" if (no_cache or offline) else default_cache_root() / "rattler-pkgs"
                conda.link(plan.conda, prefix, plan.platform, local, rcache)
                result.conda = len(plan.conda)
            written.append(prefix)
            if plan.needs_interpreter:
                interp = _ensure_interpreter(plan, prefix, python, say)
                result.interpreter = str(interp)
                if ppfx is not None:
                    version = check_python_version(plan, interp)
                    write_pth(interp, ppfx, version, groups=groups)
                    if groups:  # the groups' parent: part of the env layer, so its metadata is stable
                        ppfx.mkdir(parents=True, exist_ok=True)
                        written.append(ppfx)

        if do_pypi and plan.pypi:
            interp = env_python(prefix)
            if not interp.exists():
                interp = _ensure_interpreter(plan, prefix, python, say)
            version = check_python_version(plan, interp)
            local = named_links(plan.pypi, found, Path(tmp) / "pypi")
            uv_cache = None if no_cache else (Path(tmp) / "uv" if offline else default_cache_root() / "uv")
            if group and ppfx is not None:
                target = ppfx / group
                say(f"pypi: installing group {group} ({len(plan.pypi)} packages) with uv (--require-hashes --no-deps)")
                pypi.install(plan.pypi, interp, target, local, uv=uv_bin, uv_cache=None, offline=offline,
                             ca_bundle=ca_bundle)  # fmt: skip
                links = _link_scripts(target / "bin", ppfx / "bin")
                written += [target, ppfx / "bin", *links]
            else:
                if ppfx is not None:
                    write_pth(interp, ppfx, version, groups=groups)
                say(f"pypi: installing {len(plan.pypi)} packages with uv (--require-hashes --no-deps)")
                # A damaged or different installed distribution is reinstalled, not trusted.
                inv = inventory(str(prefix), str(ppfx) if ppfx else None)
                expected = {"pypi": {normalize(a.name): a.version for a in plan.pypi}}
                repair = [d.name for d in compare(expected, {"pypi": inv["pypi"]})
                          if d.manager == "pypi" and d.kind in ("files", "version")]  # fmt: skip
                pypi.install(plan.pypi, interp, ppfx, local, uv=uv_bin, uv_cache=uv_cache, offline=offline,
                             ca_bundle=ca_bundle, reinstall=repair)  # fmt: skip
                result.removed = _remove_extra(plan, prefix, ppfx, interp, uv_bin)
            result.interpreter = str(interp)
            result.pypi = len(plan.pypi)
    finally:
        drop_scratch(tmp, scratch_fd)
    if fixed_mtime is not None:
        if group and ppfx is not None:
            pypi.drop_uv_cache_info(ppfx / group)
        fix_mtimes(written, fixed_mtime)
    return result


def _remove_extra(plan: Plan, prefix: Path, ppfx: Path | None, interp: Path, uv: str) -> list[str]:
    inv = inventory(str(prefix), str(ppfx) if ppfx else None)
    want = pypi.wanted_names(plan.pypi)
    extra = sorted(n for n in inv["pypi"] if n not in want)
    if extra:
        pypi.uninstall(extra, interp, ppfx, uv=uv)
    return extra


def _link_scripts(bin_dir: Path, merged: Path) -> list[Path]:
    """Relative symlinks merged/<script> -> ../<group>/bin/<script>: one PATH entry for all groups."""
    merged.mkdir(parents=True, exist_ok=True)
    if not bin_dir.is_dir():
        return []
    links = []
    for script in sorted(bin_dir.iterdir()):
        link = merged / script.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(script, merged))
        links.append(link)
    return links


def _ensure_interpreter(plan: Plan, prefix: Path, python: str | None, say) -> Path:
    interp = env_python(prefix)
    if plan.conda_python() is not None:
        if not interp.exists():
            raise InstallError(
                f"the lock's conda python is not installed in {prefix}", hint="install the env part first"
            )
        return interp
    if not (prefix / "pyvenv.cfg").exists():
        base = base_interpreter(plan, python)
        say(f"creating a venv in {prefix} on {base}")
        check_python_version(plan, base)
        proc = subprocess.run([base, "-m", "venv", "--without-pip", str(prefix)], capture_output=True, text=True,
                              env=pypi.clean_env())  # fmt: skip
        if proc.returncode != 0:
            raise InstallError(f"could not create a venv in {prefix} with {base}: {proc.stderr.strip()[-500:]}",
                               hint="on Debian/Ubuntu install python3-venv, or pass --python")  # fmt: skip
    return interp


def write_pth(interp: Path, pypi_prefix: Path, version: str, groups: bool = False) -> None:
    """The env's `_mlenv_pypi.pth`: addsitedir (so .pth files of PyPI packages work too)
    of PYPI_PREFIX's site-packages, or with groups of every PYPI_PREFIX/*/ one, sorted
    (it does not depend on the set of groups, so the env layer does not either)."""
    site = _purelib(interp)
    if groups:
        pattern = str(pypi_prefix / "*" / "lib" / f"python{version}" / "site-packages")
        # no comprehension: .pth lines run in exec() with separate locals
        line = f"import glob, site; list(map(site.addsitedir, sorted(glob.glob({pattern!r}))))\n"
    else:
        target = pypi_prefix / "lib" / f"python{version}" / "site-packages"
        line = f"import site; site.addsitedir({str(target)!r})\n"
    atomic_write(Path(site) / PTH_NAME, line)


def _purelib(interp: Path) -> str:
    proc = subprocess.run([str(interp), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, env=pypi.clean_env())  # fmt: skip
    if proc.returncode != 0:
        raise InstallError(f"cannot run {interp}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()
