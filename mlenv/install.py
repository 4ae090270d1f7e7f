"""`mlenv install` / `mlenv verify`: materialize mlenv.lock into a prefix, exactly.

One installer for laptops and images: each install step of an image runs this
very module (`python3 -m mlenv.install ...`), so a laptop env and an image agree.
It therefore needs only the standard library at module top (plus the uv
binary; py-rattler is imported only when the lock has conda packages), and
the few mlenv modules it imports (errors, lockfile, spec, solve.conda,
solve.platforms) are stdlib-only at their top too.

Layout of a prefix:
- conda packages are linked into PREFIX by py-rattler (records in PREFIX/conda-meta);
- PyPI packages are installed by `uv pip install --require-hashes --no-deps`
  into the prefix's interpreter: the conda `python` of the lock if it has one,
  otherwise a venv created in PREFIX on a base Python ([image] python of the
  lock, else --python, else python3 on PATH);
- optionally (`pypi_prefix`, used by images so conda and PyPI packages are
  separate layers) PyPI packages go to PYPI_PREFIX/lib/pythonX.Y/site-packages
  and a `_mlenv_pypi.pth` in PREFIX's site-packages adds that directory.

- images (`pypi_groups`): PyPI packages are installed in groups, each into
  PYPI_PREFIX/<group>/ (one build step and one image layer per group), with
  their scripts linked into PYPI_PREFIX/bin; the `_mlenv_pypi.pth` adds every
  PYPI_PREFIX/*/lib/pythonX.Y/site-packages, so the groups form one logical
  site-packages set.

Artifacts (conda packages, wheels, sdists) are fetched by mlenv itself into a
content-addressed cache, `<user cache>/mlenv/artifacts/sha256/<hex>` (atomic
writes, sha256-verified before they enter it; concurrent downloads; index
credentials from the environment only; CA from MLENV_CA_BUNDLE / SSL_CERT_FILE).
`mlenv build` fetches on the host and serves them to its build steps from
127.0.0.1 (`--artifact-url`, no credentials there); every artifact is
checked against the lock's sha256 (by mlenv when it enters the cache; again by
uv --require-hashes for PyPI). Nothing is resolved afresh.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import LockError, MlenvError

PTH_NAME = "_mlenv_pypi.pth"
PART_ENV = "env"
PART_PYPI = "pypi"


class InstallError(MlenvError):
    """An install could not complete (download, hash mismatch, interpreter)."""


# --- platform and interpreter -------------------------------------------------------


def host_platform() -> str:
    import platform as _platform

    machine = _platform.machine().lower()
    system = sys.platform
    if system.startswith("linux"):
        return "linux-aarch64" if machine in ("aarch64", "arm64") else "linux-64"
    if system == "darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    if system.startswith("win"):
        return "win-64"
    return f"{system}-{machine}"


def check_platform(lock, platform: str | None) -> str:
    platform = platform or host_platform()
    if platform not in lock.platforms:
        have = ", ".join(sorted(lock.platforms)) or "none"
        raise InstallError(
            f"mlenv.lock has no packages for platform {platform} (it has: {have})",
            hint=f'add "{platform}" to [environment] platforms in mlenv.toml and run `mlenv lock`, or pass --platform',
        )
    return platform


def conda_python(lock, platform: str):
    return next((p for p in lock.for_platform(platform, "conda") if p.name == "python"), None)


def needs_interpreter(lock, platform: str) -> bool:
    return bool(lock.for_platform(platform, "pypi")) or bool(lock.inputs.get("needs-interpreter"))


def env_python(prefix: Path) -> Path:
    return prefix / ("python.exe" if sys.platform.startswith("win") else "bin/python")


def base_interpreter(lock, python: str | None) -> str:
    """The base Python a venv is created on: [image] python, else --python, else python3."""
    candidate = lock.image.get("python") or python
    if candidate:
        if os.path.isabs(candidate) and not os.path.exists(candidate):
            raise InstallError(
                f"the interpreter {candidate} does not exist",
                hint="set [image] python / --python to an existing interpreter",
            )
        found = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if not found:
            raise InstallError(f"interpreter {candidate!r} not found on PATH", hint="pass --python /path/to/python3")
        return found
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise InstallError("no python3 on PATH to create the environment's venv", hint="pass --python /path/to/python3")
    return found


def _python_version(interpreter: str | Path) -> str:
    proc = subprocess.run([str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, env=_clean_env())
    if proc.returncode != 0:
        raise InstallError(f"cannot run the interpreter {interpreter}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


def _check_python_version(lock, platform: str, interpreter: str | Path) -> str:
    have = _python_version(interpreter)
    want = lock.platform_python(platform)
    if want and ".".join(want.split(".")[:2]) != have:
        raise InstallError(
            f"the interpreter {interpreter} is Python {have} but mlenv.lock was solved for Python {want}",
            hint="pass --python (or set [image] python) to a matching interpreter, or change [environment] python and re-lock",
        )
    return have


# --- sub-locks (the image builder installs the env and PyPI parts as separate layers) --


def part_lock(lock, platform: str, part: str, packages=None, group: str | None = None):
    """A sealed lock holding only what one install step needs, so that a Docker
    layer built from it changes only when that part of the environment does
    (`packages`/`group`: one PyPI group of an image)."""
    from .lockfile import Lock

    manager = "conda" if part == PART_ENV else "pypi"
    inputs = {"part": part}
    if group:
        inputs["group"] = group
    if part == PART_ENV:
        inputs["needs-interpreter"] = needs_interpreter(lock, platform)
    image = {k: lock.image[k] for k in ("python",) if lock.image.get(k)}
    return Lock(
        spec_hash="sha256:" + "0" * 64,
        python=lock.python,
        platforms={platform: dict(lock.platforms[platform])},
        packages=list(packages) if packages is not None else [p for p in lock.for_platform(platform, manager)],
        variables={},
        image=image,
        inputs=inputs,
    ).seal()


# --- install ------------------------------------------------------------------------


@dataclass
class InstallResult:
    prefix: Path
    platform: str
    conda: int = 0
    pypi: int = 0
    interpreter: str | None = None
    pypi_prefix: Path | None = None
    removed: list[str] = field(default_factory=list)


def install(
    lock,
    prefix: str | os.PathLike[str],
    *,
    platform: str | None = None,
    python: str | None = None,
    pypi_prefix: str | os.PathLike[str] | None = None,
    parts: tuple[str, ...] = (PART_ENV, PART_PYPI),
    files_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    offline: bool = False,
    pypi_groups: bool = False,
    pypi_group: str | None = None,
    index_urls: tuple[str, ...] = (),
    artifact_url: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    fixed_mtime: int | None = None,
    expect_sha256: tuple[str, ...] | None = None,
    progress=None,
) -> InstallResult:
    """Materialize the lock's `parts` into prefix.

    pypi_groups (images): PyPI packages live in PYPI_PREFIX/<group>/, the env's
    .pth adds all of them; with pypi_group, the PyPI part installs this lock's
    PyPI packages (one group's sub-lock) into PYPI_PREFIX/<pypi_group>.

    Image build steps (`mlenv build`): artifact_url fetches every artifact from
    mlenv's build-time artifact server (ARTIFACT_URL<sha256>, sha256-checked while
    streamed); work_dir is a fixed scratch directory (so paths recorded in the
    prefix, e.g. direct_url.json, are the same on every run); fixed_mtime stamps
    everything this install wrote (and its parent directories) with that epoch, so
    the image layer is byte-reproducible; expect_sha256 must be exactly the set of
    the lock's artifacts for the parts (the build step's cache key names them)."""
    say = progress or (lambda msg: None)
    platform = check_platform(lock, platform)
    prefix = Path(prefix).absolute()
    pypi_prefix = Path(pypi_prefix).absolute() if pypi_prefix else None
    if (pypi_groups or pypi_group) and pypi_prefix is None:
        raise InstallError("PyPI groups need --pypi-prefix")
    groups = pypi_groups or bool(pypi_group)
    files = Path(files_dir) if files_dir else None
    result = InstallResult(prefix, platform, pypi_prefix=pypi_prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    if work_dir:
        tmp = str(Path(work_dir).absolute())
        os.makedirs(tmp)  # must not exist: it is removed afterwards
    else:
        tmp = tempfile.mkdtemp(prefix="mlenv-install-")
    written: list[Path] = []  # roots whose trees this install wrote (fixed_mtime)
    try:
        if no_cache:
            cache = Path(tmp) / "artifacts"
        elif cache_dir:
            cache = Path(cache_dir) / "artifacts" / "sha256"
        else:
            cache = artifact_cache_dir()
        wanted = []
        if PART_ENV in parts:
            wanted += lock.for_platform(platform, "conda")
        if PART_PYPI in parts:
            wanted += lock.for_platform(platform, "pypi")
        if expect_sha256 is not None and set(expect_sha256) != {p.sha256 for p in wanted}:
            raise InstallError("the artifacts named by the build step differ from its sub-lock's",
                               hint="a stale or altered Dockerfile: render it again with `mlenv build`")
        artifacts = fetch_artifacts(wanted, cache=cache, files=files, offline=offline, index_urls=index_urls,
                                    artifact_url=artifact_url, progress=say)

        if PART_ENV in parts:
            conda_pkgs = lock.for_platform(platform, "conda")
            if conda_pkgs:
                say(f"conda: linking {len(conda_pkgs)} verified packages with py-rattler")
                local = _named_links(conda_pkgs, artifacts, Path(tmp) / "conda")
                rcache = Path(tmp) / "rattler" if (no_cache or offline) else _default_cache() / "rattler-pkgs"
                _install_conda(conda_pkgs, prefix, platform, local, rcache)
                result.conda = len(conda_pkgs)
            written.append(prefix)
            if needs_interpreter(lock, platform):
                interp = _ensure_interpreter(lock, platform, prefix, python, say)
                result.interpreter = str(interp)
                if pypi_prefix is not None:
                    version = _check_python_version(lock, platform, interp)
                    _write_pth(interp, pypi_prefix, version, groups=groups)
                    if groups:  # the groups' parent: part of the env layer, so its metadata is stable
                        pypi_prefix.mkdir(parents=True, exist_ok=True)
                        written.append(pypi_prefix)

        if PART_PYPI in parts:
            pypi_pkgs = lock.for_platform(platform, "pypi")
            if pypi_pkgs:
                interp = env_python(prefix)
                if not interp.exists():
                    interp = _ensure_interpreter(lock, platform, prefix, python, say)
                version = _check_python_version(lock, platform, interp)
                local = _named_links(pypi_pkgs, artifacts, Path(tmp) / "pypi")
                uv_cache = Path(tmp) / "uv" if (no_cache or offline) else _default_cache() / "uv"
                if pypi_group:
                    target = pypi_prefix / pypi_group
                    say(f"pypi: installing group {pypi_group} ({len(pypi_pkgs)} packages) with uv (--require-hashes --no-deps)")
                    _install_pypi(pypi_pkgs, interp, target, local, uv_cache, True, offline)
                    links = _link_scripts(target / "bin", pypi_prefix / "bin")
                    written += [target, pypi_prefix / "bin", *links]
                else:
                    if pypi_prefix is not None:
                        _write_pth(interp, pypi_prefix, version, groups=groups)
                    say(f"pypi: installing {len(pypi_pkgs)} packages with uv (--require-hashes --no-deps)")
                    # A damaged or different installed distribution is reinstalled, not trusted.
                    inv = inventory(str(prefix), str(pypi_prefix) if pypi_prefix else None)
                    repair = [d.name for d in compare(lock, platform, inv) if d.manager == "pypi" and d.kind in ("files", "version")]
                    _install_pypi(pypi_pkgs, interp, pypi_prefix, local, uv_cache, no_cache, offline, repair)
                    result.removed = _remove_extra_pypi(lock, platform, prefix, pypi_prefix, interp)
                result.interpreter = str(interp)
                result.pypi = len(pypi_pkgs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if fixed_mtime is not None:
        if pypi_group and pypi_prefix is not None:
            _drop_uv_cache_info(pypi_prefix / pypi_group)
        fix_mtimes(written, fixed_mtime)
    return result


def _drop_uv_cache_info(target: Path) -> None:
    """uv records the install time of a file:// requirement in
    `*.dist-info/uv_cache.json` (for its own reinstall checks): the one byte of an
    installed group that differs between two runs. Reproducible installs (images)
    drop it, and its RECORD line."""
    for info in target.glob("lib/python*/site-packages/*.dist-info"):
        cache = info / "uv_cache.json"
        if not cache.is_file():
            continue
        cache.unlink()
        record = info / "RECORD"
        if record.is_file():
            rel = f"{info.name}/uv_cache.json,"
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            record.write_text("".join(ln for ln in lines if not ln.startswith(rel)), encoding="utf-8")


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


FIXED_MTIME = 1_700_000_000


def fix_mtimes(roots, epoch: int = FIXED_MTIME) -> None:
    """Every entry under each root (symlinks themselves, not their targets), the roots
    and all their parent directories get mtime = epoch: an image layer written by an
    install then has the same bytes on every run (a layer tar records mtimes only)."""
    ns = (epoch * 1_000_000_000, epoch * 1_000_000_000)
    parents = set()
    for root in roots:
        root = Path(root)
        if not os.path.lexists(root):
            continue
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    os.utime(os.path.join(dirpath, name), ns=ns, follow_symlinks=False)
        os.utime(root, ns=ns, follow_symlinks=False)
        parents.update(p for p in root.parents if p != Path(root.anchor))
    for p in sorted(parents):
        os.utime(p, ns=ns)


def _default_cache() -> Path:
    """platformdirs.user_cache_dir("mlenv") (XDG_CACHE_HOME, else ~/.cache/mlenv on Linux);
    stdlib fallback where platformdirs is absent (the image builder)."""
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("mlenv"))
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "mlenv"


def _ensure_interpreter(lock, platform: str, prefix: Path, python: str | None, say) -> Path:
    interp = env_python(prefix)
    if conda_python(lock, platform) is not None:
        if not interp.exists():
            raise InstallError(f"the lock's conda python is not installed in {prefix}", hint="install the env part first")
        return interp
    if not (prefix / "pyvenv.cfg").exists():
        base = base_interpreter(lock, python)
        say(f"creating a venv in {prefix} on {base}")
        _check_python_version(lock, platform, base)
        proc = subprocess.run([base, "-m", "venv", "--without-pip", str(prefix)], capture_output=True, text=True,
                              env=_clean_env())
        if proc.returncode != 0:
            raise InstallError(f"could not create a venv in {prefix} with {base}: {proc.stderr.strip()[-500:]}",
                               hint="on Debian/Ubuntu install python3-venv, or pass --python")
    return interp


def _clean_env() -> dict[str, str]:
    """The environment for child interpreters: no PYTHONPATH (the image builder
    puts mlenv itself there) and no active venv."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(var, None)
    return env


def _write_pth(interp: Path, pypi_prefix: Path, version: str, groups: bool = False) -> None:
    """The env's `_mlenv_pypi.pth`: addsitedir (so .pth files of PyPI packages work too)
    of PYPI_PREFIX's site-packages, or with groups of every PYPI_PREFIX/*/ one, sorted
    (it does not depend on the set of groups, so the env layer does not either)."""
    from .fsutil import atomic_write

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
                          capture_output=True, text=True, env=_clean_env())
    if proc.returncode != 0:
        raise InstallError(f"cannot run {interp}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


# --- the artifact cache -------------------------------------------------------------------


def artifact_cache_dir() -> Path:
    """<user cache>/mlenv/artifacts/sha256: files named by their sha256 only."""
    return _default_cache() / "artifacts" / "sha256"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_filename(pkg) -> str:
    from urllib.parse import unquote

    return unquote(pkg.url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0])


def _kind(pkg) -> str:
    return {"conda": "conda package", "apt": "Debian package"}.get(pkg.manager, "PyPI package")


def _mismatch(pkg, want: str, got: str, where: str) -> InstallError:
    return InstallError(
        f"sha256 mismatch for {_kind(pkg)} {pkg.name} {pkg.version} ({artifact_filename(pkg)}): "
        f"mlenv.lock says {want}, {where} has {got}",
        hint="the artifact or the lock was altered; re-lock (`mlenv lock --upgrade`) from a trusted channel or index",
    )


def link_or_copy(src: Path, dest: Path) -> None:
    """dest becomes src's content: a hard link when on one filesystem, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def fetch_artifacts(pkgs, *, cache: Path | None = None, files: Path | None = None, offline: bool = False,
                    index_urls: tuple[str, ...] = (), artifact_url: str | None = None, workers: int = 8,
                    progress=None) -> dict[str, Path]:
    """sha256 -> a local file with exactly that content, for every package.

    Looked up in order: `files/<filename>` (the image builder's context), the cache
    (`cache/<sha256>`), a file:// URL (hashed, then linked into the cache), a download
    (hashed while streamed; atomically renamed into the cache only when it matches).
    `offline`: never download. `artifact_url` (an image build step): every artifact not
    found locally comes from ARTIFACT_URL<sha256>, mlenv's build-time artifact server on
    the build host (no credentials), hashed while streamed as any download. Downloads
    run concurrently."""
    from urllib.parse import unquote, urlparse

    cache = cache or artifact_cache_dir()
    out: dict[str, Path] = {}
    todo = []
    for pkg in pkgs:
        if pkg.sha256 in out:
            continue
        filename = artifact_filename(pkg)
        if files is not None and (files / filename).is_file():
            got = sha256_file(files / filename)
            if got != pkg.sha256:
                raise _mismatch(pkg, pkg.sha256, got, "the file")
            out[pkg.sha256] = files / filename
            continue
        cached = cache / pkg.sha256
        if cached.is_file():
            out[pkg.sha256] = cached
            try:
                os.utime(cached)  # last use, for `mlenv cache prune`
            except OSError:
                pass
            continue
        parsed = urlparse(pkg.url)
        if artifact_url:
            todo.append(pkg)
            continue
        if parsed.scheme == "file":
            local = Path(unquote(parsed.path))
            if not local.is_file():
                raise InstallError(f"{_kind(pkg)} file {local} not found", hint="is the local channel or index still there? re-lock")
            got = sha256_file(local)
            if got != pkg.sha256:
                raise _mismatch(pkg, pkg.sha256, got, "the file")
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / f".{pkg.sha256}.{os.getpid()}.{threading_ident()}.part"
            link_or_copy(local, tmp)
            os.replace(tmp, cached)
            out[pkg.sha256] = cached
            continue
        if offline:
            raise InstallError(f"{_kind(pkg)} {pkg.name} {pkg.version}: {filename} is not in {files or cache}",
                               hint="the image builder installs offline from the build context; rebuild with `mlenv build`")
        todo.append(pkg)
    if todo:
        creds = _credentials(index_urls)
        ctx = _ssl_context()
        cache.mkdir(parents=True, exist_ok=True)
        say = progress or (lambda msg: None)
        total = sum(int(p.get("size") or 0) for p in todo)
        say(f"downloading {len(todo)} artifacts" + (f" ({total / 1e6:.1f} MB)" if total else ""))
        if len(todo) == 1 or workers <= 1:
            for pkg in todo:
                out[pkg.sha256] = _download_verified(pkg, cache, creds, ctx, artifact_url)
        else:
            from concurrent.futures import ThreadPoolExecutor

            # biggest first: the longest downloads start at once
            todo.sort(key=lambda p: -int(p.get("size") or 0))
            with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="mlenv-fetch") as pool:
                futures = [(pkg, pool.submit(_download_verified, pkg, cache, creds, ctx, artifact_url)) for pkg in todo]
                error = None
                for pkg, fut in futures:
                    try:
                        out[pkg.sha256] = fut.result()
                    except InstallError as exc:
                        error = error or exc
                if error:
                    raise error
    return out


def threading_ident() -> int:
    import threading

    return threading.get_ident()


def _ca_bundle() -> str | None:
    """MLENV_CA_BUNDLE, else `ca-bundle` of the user settings (mlenv.settings; not in
    an image's install step, where platformdirs is absent and the step sets the env)."""
    ca = os.environ.get("MLENV_CA_BUNDLE")
    if ca:
        return ca
    try:
        from . import settings

        return settings.get("ca-bundle")
    except ImportError:
        return None


def _ssl_context():
    """Verification against the CA bundle (_ca_bundle) if set, else the default paths
    (which honour SSL_CERT_FILE / SSL_CERT_DIR)."""
    import ssl

    ca = _ca_bundle()
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def _netrc_auth(host: str) -> str | None:
    import netrc

    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    if not entry:
        return None
    login, _, password = entry
    return f"{login or ''}:{password or ''}"


def _download_verified(pkg, cache: Path, creds: dict[str, str], ctx, artifact_url: str | None = None) -> Path:
    import base64
    import urllib.request
    from urllib.parse import urlsplit

    url = artifact_url + pkg.sha256 if artifact_url else pkg.url
    parts = urlsplit(url)
    headers = {"User-Agent": "mlenv"}
    auth = None
    if artifact_url:
        creds = {}  # the build host's artifact server: no credentials, ever
    elif parts.username:  # never in a lock, but a hand-made one may carry them
        auth = parts.netloc.rsplit("@", 1)[0]
        url = url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)
        parts = urlsplit(url)
    auth = auth or creds.get(parts.netloc) or creds.get(parts.hostname or "") or _netrc_auth(parts.hostname or "")
    req = urllib.request.Request(url, headers=headers)
    if auth:
        from urllib.parse import unquote

        raw = unquote(auth).encode()
        req.add_unredirected_header("Authorization", "Basic " + base64.b64encode(raw).decode())
    tmp = cache / f".{pkg.sha256}.{os.getpid()}.{threading_ident()}.part"
    h = hashlib.sha256()
    # the build host's artifact server is on 127.0.0.1: never through a proxy
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if artifact_url else None
    try:
        with (opener.open(req, timeout=120) if opener else
              urllib.request.urlopen(req, timeout=120, context=ctx if parts.scheme == "https" else None)) as resp, \
                open(tmp, "wb") as out:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
    except Exception as exc:  # URLError, HTTPError, SSL errors, timeouts
        tmp.unlink(missing_ok=True)
        text = _strip(str(exc))
        hint = None
        if "CERTIFICATE" in text.upper():
            hint = "a TLS-intercepting proxy? pass --ca-bundle FILE (or set MLENV_CA_BUNDLE / SSL_CERT_FILE)"
        elif re.search(r"\b(401|403)\b|Unauthorized|Forbidden", text):
            text = "the index refused the download (authentication): " + text
            hint = ("provide credentials in the environment: MLENV_INDEX_URL=https://user:token@host/simple, "
                    "the spec's ${VAR} index URL, or ~/.netrc")
        raise InstallError(f"could not download {_kind(pkg)} {pkg.name} {pkg.version} from {_strip(url)}: {text}",
                           hint=hint) from None
    got = h.hexdigest()
    if got != pkg.sha256:
        tmp.unlink(missing_ok=True)
        raise _mismatch(pkg, pkg.sha256, got, f"the download from {_strip(url)}")
    dest = cache / pkg.sha256
    os.replace(tmp, dest)
    return dest


def _named_links(pkgs, artifacts: dict[str, Path], directory: Path) -> Path:
    """directory/<filename> for each package (installers need the real file name)."""
    directory.mkdir(parents=True, exist_ok=True)
    for pkg in pkgs:
        src = artifacts[pkg.sha256]
        dest = directory / artifact_filename(pkg)
        if src != dest:
            try:
                dest.symlink_to(src.absolute())  # the cache may be on another filesystem than the temp dir
            except OSError:
                link_or_copy(src, dest)
    return directory


# --- conda ----------------------------------------------------------------------------


def _install_conda(pkgs, prefix: Path, platform: str, local: Path, rcache: Path) -> None:
    """Link verified local artifacts (local/<filename>) into prefix with py-rattler."""
    import asyncio

    import rattler

    from .solve.conda import to_record

    records = [to_record(replace(pkg, url=(local / artifact_filename(pkg)).absolute().as_uri())) for pkg in pkgs]
    tag_existed = (prefix / "CACHEDIR.TAG").exists()
    try:
        asyncio.run(rattler.install(records, str(prefix), cache_dir=str(rcache), show_progress=False,
                                    platform=rattler.Platform(platform)))
    except Exception as exc:
        raise InstallError(f"py-rattler could not install the conda packages into {prefix}: {_first(exc)}") from None
    if not tag_existed:  # py-rattler marks the prefix as a cache dir; an environment is not one
        (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)


# --- PyPI -------------------------------------------------------------------------------


def uv_command() -> str:
    """uv: $MLENV_UV, else the uv wheel's binary (mlenv dependency), else PATH."""
    env = os.environ.get("MLENV_UV")
    if env:
        return env
    try:
        from .solve.pypi import uv_binary

        return uv_binary()
    except Exception:
        found = shutil.which("uv")
        if not found:
            raise InstallError("uv not found", hint="pip install uv, or set MLENV_UV to its path") from None
        return found


def _credentials(index_urls: tuple[str, ...]) -> dict[str, str]:
    """host[:port] -> 'user:password' from credentialed index URLs (environment only)."""
    from urllib.parse import urlsplit

    urls = list(index_urls)
    urls += [u for u in os.environ.get("MLENV_INDEX_URL", "").split() if u]
    out = {}
    for url in urls:
        parts = urlsplit(url)
        if parts.username:
            out[parts.hostname + (f":{parts.port}" if parts.port else "")] = parts.netloc.rsplit("@", 1)[0]
    return out


def _strip(text: str) -> str:
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s`'\"]*@", r"\1", text)


def _install_pypi(pkgs, interp: Path, pypi_prefix: Path | None, local: Path, cache: Path, no_cache: bool,
                  offline: bool, reinstall: list[str] = ()) -> None:
    """uv installs verified local artifacts (local/<filename>), hashes required again.
    Wheels need no index at all; an sdist may need its build backend from PyPI
    (unless offline)."""
    lines = [f"{pkg.name} @ {(local / artifact_filename(pkg)).absolute().as_uri()} --hash=sha256:{pkg.sha256}\n"
             for pkg in pkgs]
    env = _clean_env()
    env["UV_NO_CONFIG"] = "1"
    ca = _ca_bundle()
    if ca:
        env["SSL_CERT_FILE"] = ca
    with tempfile.TemporaryDirectory(prefix="mlenv-install-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        fd = os.open(reqs, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(lines)
        cmd = [uv_command(), "pip", "install", "--python", str(interp), "--require-hashes", "--no-deps",
               "--no-progress", "--color", "never", "-r", str(reqs)]
        if all(artifact_filename(p).endswith(".whl") for p in pkgs):
            cmd += ["--no-index", "--offline"]  # nothing to fetch: every file is local
        if pypi_prefix is not None:
            cmd += ["--prefix", str(pypi_prefix)]
        for name in reinstall:
            cmd += ["--reinstall-package", name]
        if no_cache:
            cmd.append("--no-cache")
        else:
            env.setdefault("UV_CACHE_DIR", str(cache))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if pypi_prefix is not None:
        (pypi_prefix / ".lock").unlink(missing_ok=True)
    if proc.returncode != 0:
        raise InstallError(_explain_uv(proc.stderr, pkgs))


def _explain_uv(stderr: str, pkgs) -> str:
    text = _strip(stderr.strip())
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("Using ", "Resolved ", "Prepared "))
             and "--system-certs" not in ln]
    detail = "\n".join("  " + ln for ln in lines[-25:])
    m = re.search(r"Hash mismatch for `([^ `]+)", text)
    if m:
        exp = re.search(r"Expected:\s*(sha256:[0-9a-f]+)", text)
        got = re.search(r"Computed:\s*(sha256:[0-9a-f]+)", text)
        head = (f"sha256 mismatch for PyPI package {m.group(1)}: mlenv.lock says "
                f"{exp.group(1) if exp else '?'}, the artifact has {got.group(1) if got else '?'}")
        return head + "\n  hint: the artifact or the lock was altered; re-lock from a trusted index"
    if re.search(r"certificate|UnknownIssuer|CERTIFICATE_VERIFY_FAILED", text, re.I):
        return ("TLS certificate verification failed while downloading PyPI packages (a TLS-intercepting proxy?)\n"
                + detail + "\n  hint: pass --ca-bundle FILE or set MLENV_CA_BUNDLE to the proxy's CA bundle")
    if re.search(r"\b401\b|\b403\b|Unauthorized|Forbidden", text):
        return ("the package index refused the download (authentication)\n" + detail
                + "\n  hint: provide credentials in the environment: MLENV_INDEX_URL=https://user:token@host/simple, "
                "the spec's ${VAR} index URL, or ~/.netrc")
    return "uv could not install the locked PyPI packages\n" + detail


def _remove_extra_pypi(lock, platform, prefix: Path, pypi_prefix: Path | None, interp: Path) -> list[str]:
    inv = inventory(prefix, str(pypi_prefix) if pypi_prefix else None)
    want = {_norm(p.name) for p in lock.for_platform(platform, "pypi")}
    extra = sorted(n for n in inv["pypi"] if n not in want)
    if not extra:
        return []
    cmd = [uv_command(), "pip", "uninstall", "--python", str(interp), "--no-progress", "--color", "never", *extra]
    if pypi_prefix is not None:
        cmd += ["--prefix", str(pypi_prefix)]
    subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
    if pypi_prefix is not None:
        (pypi_prefix / ".lock").unlink(missing_ok=True)
    return extra


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- inventory (also runs inside an image: stdlib only, self-contained functions) ---


def site_dirs(prefix):
    """site-packages directories of a prefix, plus those a _mlenv_pypi.pth adds."""
    import glob
    import os
    import re

    out = []
    for pattern in ("lib/python*/site-packages", "lib/site-packages", "Lib/site-packages"):
        out += sorted(glob.glob(os.path.join(prefix, pattern)))
    for site in list(out):
        pth = os.path.join(site, "_mlenv_pypi.pth")
        if os.path.exists(pth):
            with open(pth, encoding="utf-8") as fh:
                text = fh.read()
            m = re.search(r"glob\.glob\((['\"])(.+?)\1\)", text)  # PyPI groups (images)
            if m:
                out += sorted(glob.glob(m.group(2)))
                continue
            m = re.search(r"addsitedir\((['\"])(.+?)\1\)", text)
            if m:
                out.append(m.group(2))
    return out


def inventory(prefix, pypi_prefix=None):
    """What a prefix holds: conda records (conda-meta) and PyPI distributions
    (*.dist-info in its site-packages), each with files that are missing."""
    import glob
    import json
    import os
    import re

    result = {"conda": {}, "pypi": {}}
    owned = set()
    for meta in sorted(glob.glob(os.path.join(prefix, "conda-meta", "*.json"))):
        try:
            with open(meta, encoding="utf-8") as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        files = rec.get("files", [])
        owned.update(files)
        missing = [f for f in files if not os.path.lexists(os.path.join(prefix, f))]
        result["conda"][rec.get("name", os.path.basename(meta))] = {"version": rec.get("version"), "missing_files": missing[:20]}
    dirs = site_dirs(prefix)
    if pypi_prefix:
        dirs += sorted(glob.glob(os.path.join(pypi_prefix, "lib", "python*", "site-packages")))
    seen = set()
    for site in dirs:
        real = os.path.realpath(site)
        if real in seen or not os.path.isdir(site):
            continue
        seen.add(real)
        for info in sorted(glob.glob(os.path.join(site, "*.dist-info"))):
            rel = os.path.relpath(os.path.join(info, "METADATA"), prefix)
            if rel in owned:
                continue  # installed by a conda package
            name = version = None
            try:
                with open(os.path.join(info, "METADATA"), encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        if not line.strip():
                            break
                        if line.startswith("Name:") and name is None:
                            name = line.split(":", 1)[1].strip()
                        elif line.startswith("Version:") and version is None:
                            version = line.split(":", 1)[1].strip()
            except OSError:
                pass
            if not name:
                name = os.path.basename(info)[: -len(".dist-info")].rsplit("-", 1)[0]
            missing = []
            try:
                with open(os.path.join(info, "RECORD"), encoding="utf-8") as fh:
                    for row in fh:
                        path = row.rsplit(",", 2)[0].strip().strip('"')
                        if not path or path.endswith(".pyc") or "__pycache__" in path:
                            continue
                        if not os.path.lexists(os.path.normpath(os.path.join(site, path))):
                            missing.append(path)
            except OSError:
                missing.append(os.path.basename(info) + "/RECORD")
            result["pypi"][re.sub(r"[-_.]+", "-", name).lower()] = {"version": version, "missing_files": missing[:20]}
    return result


INVENTORY_FUNCTIONS = (site_dirs, inventory)


def inventory_script(prefix: str, pypi_prefix: str | None = None) -> str:
    """Python source that prints inventory(prefix) as JSON: run inside an image."""
    import inspect
    import textwrap

    body = "\n\n".join(textwrap.dedent(inspect.getsource(fn)) for fn in INVENTORY_FUNCTIONS)
    return body + f"\n\nimport json\nprint(json.dumps(inventory({prefix!r}, {pypi_prefix!r})))\n"


# --- verify ---------------------------------------------------------------------------


@dataclass
class Difference:
    manager: str
    name: str
    kind: str  # "missing" | "extra" | "version" | "files"
    expected: str | None = None
    found: str | None = None
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.manager}: missing {self.name} {self.expected}"
        if self.kind == "extra":
            return f"{self.manager}: extra {self.name} {self.found} (not in mlenv.lock)"
        if self.kind == "version":
            return f"{self.manager}: {self.name} is {self.found}, mlenv.lock says {self.expected}"
        shown = ", ".join(self.files[:5]) + (" …" if len(self.files) > 5 else "")
        return f"{self.manager}: {self.name} {self.expected}: files missing: {shown}"

    def as_dict(self) -> dict:
        return {"manager": self.manager, "name": self.name, "kind": self.kind, "expected": self.expected,
                "found": self.found, "files": self.files}


def compare(lock, platform: str, inv: dict) -> list[Difference]:
    diffs: list[Difference] = []
    for manager in ("conda", "pypi", "apt"):
        if manager == "apt" and "apt" not in inv:
            continue  # a prefix has no dpkg database; images report theirs (mlenv.apt.verify)
        want = {(_norm(p.name) if manager == "pypi" else p.name): p.version for p in lock.for_platform(platform, manager)}
        have = inv.get(manager, {})
        for name, version in sorted(want.items()):
            got = have.get(name)
            if got is None:
                diffs.append(Difference(manager, name, "missing", expected=version))
            elif not _same_version(manager, got.get("version"), version):
                diffs.append(Difference(manager, name, "version", expected=version, found=got.get("version")))
            elif got.get("missing_files"):
                diffs.append(Difference(manager, name, "files", expected=version, files=list(got["missing_files"])))
        for name in sorted(set(have) - set(want)) if manager != "apt" else ():  # the base's packages are its own
            diffs.append(Difference(manager, name, "extra", found=have[name].get("version")))
    return diffs


def _same_version(manager: str, found: str | None, expected: str) -> bool:
    if found == expected:
        return True
    if found is None or manager != "pypi":
        return False
    try:
        from packaging.version import Version

        return Version(found) == Version(expected)
    except Exception:
        return False


def verify(lock, prefix, *, platform: str | None = None, pypi_prefix=None) -> list[Difference]:
    platform = check_platform(lock, platform)
    prefix = Path(prefix)
    if not prefix.is_dir():
        raise InstallError(f"{prefix}: no such directory", hint="run `mlenv install --prefix` first")
    return compare(lock, platform, inventory(str(prefix.absolute()), str(pypi_prefix) if pypi_prefix else None))


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- the builder-stage entry point: python3 -m mlenv.install ------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    if sys.version_info < (3, 11):
        print(f"error: the mlenv installer needs Python >= 3.11 (this is {sys.version.split()[0]})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m mlenv.install")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("install", "verify"):
        p = sub.add_parser(name)
        p.add_argument("--lock", required=True)
        p.add_argument("--prefix", required=True)
        p.add_argument("--platform")
        p.add_argument("--pypi-prefix")
        if name == "install":
            p.add_argument("--python")
            p.add_argument("--part", action="append", choices=[PART_ENV, PART_PYPI])
            p.add_argument("--files-dir")
            p.add_argument("--cache-dir")
            p.add_argument("--no-cache", action="store_true")
            p.add_argument("--offline", action="store_true", help="never download: every artifact is in --files-dir")
            p.add_argument("--pypi-groups", action="store_true", help="PyPI packages live in PYPI_PREFIX/<group>/")
            p.add_argument("--pypi-group", metavar="GROUP", help="install the PyPI part into PYPI_PREFIX/GROUP")
            p.add_argument("--artifact-url", metavar="URL", help="fetch artifacts from URL<sha256> (image build step)")
            p.add_argument("--work-dir", metavar="DIR", help="fixed scratch directory (must not exist)")
            p.add_argument("--fixed-mtime", type=int, metavar="EPOCH", help="stamp everything written with EPOCH")
            p.add_argument("--expect-sha256", metavar="SHA,...", help="the parts' artifacts, exactly")
    args = parser.parse_args(argv)
    from .lockfile import read_lock

    try:
        lock = read_lock(Path(args.lock))
        if args.cmd == "install":
            res = install(lock, args.prefix, platform=args.platform, python=args.python, pypi_prefix=args.pypi_prefix,
                          parts=tuple(args.part or (PART_ENV, PART_PYPI)), files_dir=args.files_dir,
                          cache_dir=args.cache_dir, no_cache=args.no_cache, offline=args.offline,
                          pypi_groups=args.pypi_groups, pypi_group=args.pypi_group, artifact_url=args.artifact_url,
                          work_dir=args.work_dir, fixed_mtime=args.fixed_mtime,
                          expect_sha256=tuple(filter(None, args.expect_sha256.split(","))) if args.expect_sha256 is not None else None,
                          progress=lambda m: print(f"mlenv-install: {m}", file=sys.stderr, flush=True))
            print(f"mlenv-install: installed {res.conda} conda + {res.pypi} PyPI packages into {res.prefix}", file=sys.stderr)
            return 0
        diffs = verify(lock, args.prefix, platform=args.platform, pypi_prefix=args.pypi_prefix)
        for d in diffs:
            print(d)
        return 1 if diffs else 0
    except MlenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["install", "verify", "inventory", "compare", "part_lock", "InstallError", "LockError", "host_platform"]
