"""`mlenv install` / `mlenv verify`: materialize mlenv.lock into a prefix, exactly.

One installer for laptops and images: the image's builder stage runs this very
module (`python3 -m mlenv.install ...`), so a laptop env and an image agree.
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

Every artifact is checked against the lock's sha256 (conda: by mlenv before
rattler links it; PyPI: by uv --require-hashes). Nothing is resolved afresh.
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


def part_lock(lock, platform: str, part: str):
    """A sealed lock holding only what one install step needs, so that a Docker
    layer built from it changes only when that part of the environment does."""
    from .lockfile import Lock

    manager = "conda" if part == PART_ENV else "pypi"
    inputs = {"part": part}
    if part == PART_ENV:
        inputs["needs-interpreter"] = needs_interpreter(lock, platform)
    image = {k: lock.image[k] for k in ("python",) if lock.image.get(k)}
    return Lock(
        spec_hash="sha256:" + "0" * 64,
        python=lock.python,
        platforms={platform: dict(lock.platforms[platform])},
        packages=[p for p in lock.for_platform(platform, manager)],
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
    index_urls: tuple[str, ...] = (),
    progress=None,
) -> InstallResult:
    say = progress or (lambda msg: None)
    platform = check_platform(lock, platform)
    prefix = Path(prefix).absolute()
    pypi_prefix = Path(pypi_prefix).absolute() if pypi_prefix else None
    files = Path(files_dir) if files_dir else None
    cache = Path(cache_dir) if cache_dir else _default_cache()
    result = InstallResult(prefix, platform, pypi_prefix=pypi_prefix)
    prefix.mkdir(parents=True, exist_ok=True)

    if PART_ENV in parts:
        conda_pkgs = lock.for_platform(platform, "conda")
        if conda_pkgs:
            say(f"conda: verifying and linking {len(conda_pkgs)} packages with py-rattler")
            _install_conda(conda_pkgs, prefix, platform, files, cache, no_cache)
            result.conda = len(conda_pkgs)
        if needs_interpreter(lock, platform):
            interp = _ensure_interpreter(lock, platform, prefix, python, say)
            result.interpreter = str(interp)
            if pypi_prefix is not None:
                version = _check_python_version(lock, platform, interp)
                _write_pth(interp, pypi_prefix, version)

    if PART_PYPI in parts:
        pypi_pkgs = lock.for_platform(platform, "pypi")
        if pypi_pkgs:
            interp = env_python(prefix)
            if not interp.exists():
                interp = _ensure_interpreter(lock, platform, prefix, python, say)
            version = _check_python_version(lock, platform, interp)
            if pypi_prefix is not None:
                _write_pth(interp, pypi_prefix, version)
            say(f"pypi: installing {len(pypi_pkgs)} packages with uv (--require-hashes --no-deps)")
            # A damaged or different installed distribution is reinstalled, not trusted.
            inv = inventory(str(prefix), str(pypi_prefix) if pypi_prefix else None)
            repair = [d.name for d in compare(lock, platform, inv) if d.manager == "pypi" and d.kind in ("files", "version")]
            _install_pypi(pypi_pkgs, interp, pypi_prefix, files, cache, no_cache, index_urls, repair)
            result.interpreter = str(interp)
            result.pypi = len(pypi_pkgs)
            result.removed = _remove_extra_pypi(lock, platform, prefix, pypi_prefix, interp)
    return result


def _default_cache() -> Path:
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


def _write_pth(interp: Path, pypi_prefix: Path, version: str) -> None:
    from .fsutil import atomic_write

    site = _purelib(interp)
    target = pypi_prefix / "lib" / f"python{version}" / "site-packages"
    atomic_write(Path(site) / PTH_NAME, f"import site; site.addsitedir({str(target)!r})\n")


def _purelib(interp: Path) -> str:
    proc = subprocess.run([str(interp), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, env=_clean_env())
    if proc.returncode != 0:
        raise InstallError(f"cannot run {interp}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


# --- conda ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_verified(pkg, files: Path | None, store: Path) -> Path:
    """A local copy of pkg's artifact whose sha256 equals the lock's."""
    from urllib.parse import unquote, urlparse

    filename = pkg.url.rsplit("/", 1)[-1]
    candidates: list[Path] = []
    if files is not None:
        candidates.append(files / filename)
    parsed = urlparse(pkg.url)
    if parsed.scheme == "file":
        candidates.append(Path(unquote(parsed.path)))
    cached = store / f"{pkg.sha256[:16]}-{filename}"
    candidates.append(cached)
    for path in candidates:
        if path.is_file():
            got = sha256_file(path)
            if got == pkg.sha256:
                return path
            if path != cached:
                raise InstallError(
                    f"sha256 mismatch for conda package {pkg.name} {pkg.version} ({filename}): "
                    f"mlenv.lock says {pkg.sha256}, the file has {got}",
                    hint="the artifact or the lock was altered; re-lock with `mlenv lock --upgrade` from a trusted channel",
                )
    if parsed.scheme == "file":
        raise InstallError(f"conda package file {unquote(parsed.path)} not found", hint="is the local channel still there?")
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{filename}.{os.getpid()}.part"
    _download(pkg.url, tmp)
    got = sha256_file(tmp)
    if got != pkg.sha256:
        tmp.unlink(missing_ok=True)
        raise InstallError(
            f"sha256 mismatch for conda package {pkg.name} {pkg.version} downloaded from {_strip(pkg.url)}: "
            f"mlenv.lock says {pkg.sha256}, the download has {got}",
            hint="the channel serves a different file than when the lock was made; re-lock or check the channel",
        )
    os.replace(tmp, cached)
    return cached


def _download(url: str, dest: Path) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=120) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except Exception as exc:  # URLError, SSL errors, timeouts
        dest.unlink(missing_ok=True)
        hint = None
        if "CERTIFICATE" in str(exc).upper():
            hint = "a TLS-intercepting proxy? pass --ca-bundle FILE (or set MLENV_CA_BUNDLE / SSL_CERT_FILE)"
        raise InstallError(f"could not download {_strip(url)}: {exc}", hint=hint) from None


def _install_conda(pkgs, prefix: Path, platform: str, files: Path | None, cache: Path, no_cache: bool) -> None:
    import asyncio

    import rattler

    from .solve.conda import to_record

    tmp = tempfile.mkdtemp(prefix="mlenv-conda-") if no_cache else None
    try:
        store = Path(tmp) / "pkgs" if tmp else cache / "conda-pkgs"
        records = []
        for pkg in pkgs:
            local = _fetch_verified(pkg, files, store)
            records.append(to_record(replace(pkg, url=local.absolute().as_uri())))
        rcache = Path(tmp) / "rattler" if tmp else cache / "rattler-pkgs"
        tag_existed = (prefix / "CACHEDIR.TAG").exists()
        try:
            asyncio.run(rattler.install(records, str(prefix), cache_dir=str(rcache), show_progress=False,
                                        platform=rattler.Platform(platform)))
        except Exception as exc:
            raise InstallError(f"py-rattler could not install the conda packages into {prefix}: {_first(exc)}") from None
        if not tag_existed:  # py-rattler marks the prefix as a cache dir; an environment is not one
            (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


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
    for var in ("MLENV_INDEX_URL", "MLENV_INDEX_CREDENTIALS"):
        urls += [u for u in os.environ.get(var, "").split() if u]
    out = {}
    for url in urls:
        parts = urlsplit(url)
        if parts.username:
            out[parts.hostname + (f":{parts.port}" if parts.port else "")] = parts.netloc.rsplit("@", 1)[0]
    return out


def _with_credentials(url: str, creds: dict[str, str]) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return url
    auth = creds.get(parts.netloc)
    if not auth:
        return url
    return urlunsplit((parts.scheme, f"{auth}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def _strip(text: str) -> str:
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s`'\"]*@", r"\1", text)


def _install_pypi(pkgs, interp: Path, pypi_prefix: Path | None, files: Path | None, cache: Path, no_cache: bool,
                  index_urls: tuple[str, ...], reinstall: list[str] = ()) -> None:
    creds = _credentials(index_urls)
    lines = []
    for pkg in pkgs:
        url = pkg.url
        filename = url.rsplit("/", 1)[-1]
        if files is not None and (files / filename).is_file():
            url = (files / filename).absolute().as_uri()
        url = _with_credentials(url, creds)
        lines.append(f"{pkg.name} @ {url} --hash=sha256:{pkg.sha256}\n")
    env = _clean_env()
    env["UV_NO_CONFIG"] = "1"
    ca = os.environ.get("MLENV_CA_BUNDLE")
    if ca:
        env["SSL_CERT_FILE"] = ca
    with tempfile.TemporaryDirectory(prefix="mlenv-install-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        fd = os.open(reqs, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # may hold credentials: private, temporary
        with os.fdopen(fd, "w") as fh:
            fh.writelines(lines)
        cmd = [uv_command(), "pip", "install", "--python", str(interp), "--require-hashes", "--no-deps",
               "--no-progress", "--color", "never", "-r", str(reqs)]
        if all(p.url.endswith(".whl") for p in pkgs):
            cmd.append("--no-index")
        if pypi_prefix is not None:
            cmd += ["--prefix", str(pypi_prefix)]
        for name in reinstall:
            cmd += ["--reinstall-package", name]
        if no_cache:
            cmd.append("--no-cache")
        else:
            env.setdefault("UV_CACHE_DIR", str(cache / "uv"))
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
                m = re.search(r"addsitedir\((['\"])(.+?)\1\)", fh.read())
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
    for manager in ("conda", "pypi"):
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
        for name in sorted(set(have) - set(want)):
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
    args = parser.parse_args(argv)
    from .lockfile import read_lock

    try:
        lock = read_lock(Path(args.lock))
        if args.cmd == "install":
            res = install(lock, args.prefix, platform=args.platform, python=args.python, pypi_prefix=args.pypi_prefix,
                          parts=tuple(args.part or (PART_ENV, PART_PYPI)), files_dir=args.files_dir,
                          cache_dir=args.cache_dir, no_cache=args.no_cache,
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
