"""PyPI resolution with uv (default) or pip-tools, for one target platform.

uv resolves for a target platform from any host (`--python-platform`) and
emits PEP 751 pylock.toml with the URL and hash of every artifact, which is
exactly what the lock records. Packages the conda solve already provides are
pinned as constraints and then left out of the result, so they are never
installed twice.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import SolveError
from ..runtime.fsutil import drop_scratch, make_scratch
from ..runtime.secrets import referenced_values, scrub, strip_credentials
from ..spec import Spec, expand_env
from ..uvtool import uv_binary, uv_env
from .direct import Direct
from .names import normalize as normalize_name
from .platforms import python_platform, wheel_tags

PYPI_SIMPLE = "https://pypi.org/simple"


@dataclass
class PypiPackage:
    name: str
    version: str
    url: str
    sha256: str
    size: int | None
    index: str
    requires_python: str | None = None
    sdist: bool = False
    find_links: str | None = None  # the find-links page it was found on (when not an index's)
    direct: Direct | None = None  # git / path / URL: built or fetched by mlenv.solve.direct.realize


def resolve(spec: Spec, platform: str, python_version: str, **kwargs) -> list[PypiPackage]:
    """Resolve spec's [pypi] dependencies for `platform` and `python_version`
    (start() then finish(); see UvJob)."""
    return start(spec, platform, python_version, **kwargs).finish()


class UvJob:
    """One `uv pip compile` run in the background: mlenv starts it as early as
    it can and does its own work (validation, image pinning) while uv resolves."""

    def __init__(self, spec, platform, python_version, provided, index, tmpdir, proc, offline, extras, scratch_fd=-1,
                 forms=(), find_links=()):  # fmt: skip
        self.spec, self.platform, self.python_version = spec, platform, python_version
        self.provided, self.index, self.tmpdir, self.proc = provided, index, tmpdir, proc
        self.offline, self.extras, self.scratch_fd = offline, extras, scratch_fd
        self.forms, self.find_links = list(forms), list(find_links)

    def finish(self) -> list[PypiPackage]:
        try:
            if self.proc is None:
                return []
            glibc, osx = self.spec.system.get("glibc"), self.spec.system.get("osx")
            tags = wheel_tags(self.platform, self.python_version, glibc=glibc, osx=osx)  # computed while uv runs
            _, stderr = self.proc.communicate()
            if self.proc.returncode != 0:
                secrets = referenced_values(
                    [
                        self.spec.index_url,
                        *self.spec.extra_index_urls,
                        *self.spec.find_links,
                        *self.spec.pypi_dependencies,
                    ]
                )
                raise SolveError(
                    _explain_uv_failure(
                        stderr, self.platform, self.python_version, self.index, self.extras, self.offline, secrets
                    )
                )
            data = tomllib.loads((self.tmpdir / "pylock.toml").read_text(encoding="utf-8"))
            return _select_artifacts(
                data,
                self.platform,
                self.python_version,
                tags,
                self.provided,
                self.index,
                self.extras,
                spec=self.spec,
                forms=self.forms,
                find_links=self.find_links,
            )
        finally:
            drop_scratch(self.tmpdir, self.scratch_fd)
            self.scratch_fd = -1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        drop_scratch(self.tmpdir, self.scratch_fd)
        self.scratch_fd = -1


def start(
    spec: Spec,
    platform: str,
    python_version: str,
    *,
    provided: dict[str, str] | None = None,
    preferences: dict[str, str] | None = None,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    offline: bool = False,
    resolver: str = "uv",
    cache_dir: str | None = None,
    locked: list | None = None,
) -> UvJob:
    """Start resolving spec's [pypi] dependencies for one platform.

    provided: PyPI name -> version of Python packages the conda solve installs.
    preferences: name -> version from the previous lock (kept unless upgraded).
    locked: the previous lock's PyPI packages of this platform (preferences, git
    commits included: mlenv.solve.direct.preference_lines); overrides `preferences`.
    """
    from . import direct

    provided = {normalize_name(k): v for k, v in (provided or {}).items()}
    index = expand_env(spec.index_url) if spec.index_url else PYPI_SIMPLE
    extras = [expand_env(u) for u in spec.extra_index_urls]
    find_links = [expand_env(u) for u in getattr(spec, "find_links", [])]
    forms = direct.forms_of(spec)
    tmpdir, scratch_fd = make_scratch("uv")  # locked while in use: a killed lock's is removed by the next one
    if not spec.pypi_dependencies:
        return UvJob(spec, platform, python_version, provided, index, tmpdir, None, offline, extras, scratch_fd)
    target = python_platform(platform, glibc=spec.system.get("glibc"), osx=spec.system.get("osx"))
    reqs = tmpdir / "requirements.in"
    reqs.write_text("".join(direct.uv_line(spec, f) + "\n" for f in forms), encoding="utf-8")
    constraints = tmpdir / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(provided.items()))
                           + "".join(c + "\n" for c in getattr(spec, "constraints", [])), encoding="utf-8")  # fmt: skip
    overrides = tmpdir / "overrides.txt"
    if getattr(spec, "overrides", []):
        overrides.write_text("".join(o + "\n" for o in spec.overrides), encoding="utf-8")
    out = tmpdir / "pylock.toml"
    if resolver == "pip-tools":
        pins = _pip_compile(reqs, constraints, index, extras, offline, python_version, platform)
        reqs.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), encoding="utf-8")
    elif resolver != "uv":
        raise SolveError(f"unknown resolver {resolver!r}", hint="use uv or pip-tools")
    wanted = direct.preference_lines(locked, forms, {normalize_name(n) for n in upgrade_packages}) if locked else ""
    if wanted and not upgrade:
        # uv treats an existing output file as preferences: the previous pins (and git
        # commits) survive a re-lock unless a requirement moved or --upgrade-package names them.
        out.write_text('lock-version = "1.0"\ncreated-by = "mlenv"\n' + wanted, encoding="utf-8")
    elif preferences and not upgrade:
        out.write_text(
            'lock-version = "1.0"\ncreated-by = "mlenv"\n'
            + "".join(f'\n[[packages]]\nname = "{n}"\nversion = "{v}"\n' for n, v in sorted(preferences.items())),
            encoding="utf-8",
        )
    cmd = [
        uv_binary(), "pip", "compile", str(reqs),
        "--constraints", str(constraints),
        "--python-version", python_version,
        "--python-platform", target,
        "--format", "pylock.toml",
        "--output-file", str(out),
        "--index-url", index,
        "--no-header", "--quiet", "--no-progress", "--color", "never",
    ]  # fmt: skip
    for url in extras:
        cmd += ["--extra-index-url", url]
    for url in find_links:
        cmd += ["--find-links", url]
    if getattr(spec, "overrides", []):
        cmd += ["--overrides", str(overrides)]
    if upgrade:
        cmd.append("--upgrade")
    for name in upgrade_packages:
        cmd += ["--upgrade-package", name]
    if offline:
        cmd.append("--offline")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=uv_env(cache_dir),
        cwd=str(direct.project_dir(spec)),
    )
    return UvJob(
        spec, platform, python_version, provided, index, tmpdir, proc, offline, extras, scratch_fd, forms, find_links
    )


def _index_of(pkg: dict, url: str, index: str, extras: list[str]) -> str:
    """The index a package came from: uv's own record when present, else the
    index whose host serves the file (files.pythonhosted.org is PyPI's)."""
    from urllib.parse import urlsplit

    if pkg.get("index"):
        return strip_credentials(pkg["index"])
    indexes = [index, *extras]
    host = urlsplit(url).hostname or ""
    if host == "files.pythonhosted.org":
        for candidate in indexes:
            if urlsplit(candidate).hostname == "pypi.org":
                return strip_credentials(candidate)

    def origin(u: str) -> tuple:  # host and port: two local indexes differ by port only
        parts = urlsplit(u)
        return parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)

    for candidate in indexes:
        if origin(candidate) == origin(url):
            return strip_credentials(candidate)
    return strip_credentials(index) if len(indexes) == 1 else ""


def _select_artifacts(data, platform, python_version, tag_list, provided, index, extras=(), *, spec=None, forms=(),
                      find_links=()) -> list[PypiPackage]:  # fmt: skip
    from packaging.utils import parse_wheel_filename

    from .direct import classify

    tags = {t: i for i, t in enumerate(tag_list)}
    result = []
    for pkg in data.get("packages", []):
        name = normalize_name(pkg["name"])
        if name in provided:
            continue
        found = classify(pkg, spec, list(forms)) if spec is not None else None
        if found is not None:
            result.append(PypiPackage(name, found.version or "", "", "", None, "", pkg.get("requires-python"),
                                      direct=found))  # fmt: skip
            continue
        best = None
        for wheel in pkg.get("wheels", []):
            filename = wheel["url"].rsplit("/", 1)[-1].split("#", 1)[0]
            try:
                _, _, _, wheel_tagset = parse_wheel_filename(filename)
            except Exception:
                continue
            rank = min((tags[t] for t in wheel_tagset if t in tags), default=None)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, wheel)
        if best is not None:
            artifact, sdist = best[1], False
        elif pkg.get("sdist"):
            artifact, sdist = pkg["sdist"], True
        else:
            raise SolveError(
                f"{pkg['name']} {pkg['version']} has no wheel for {platform} (Python {python_version}) and no sdist",
                hint="pin another version, or set [system] glibc/osx to match your target",
            )
        sha = artifact.get("hashes", {}).get("sha256")
        if not sha:
            raise SolveError(f"{pkg['name']} {pkg['version']}: the index gives no sha256 for {artifact['url']}")
        source_index = _index_of(pkg, artifact["url"], index, extras)
        page = _find_links_of(artifact["url"], list(find_links), by_host=not source_index) if find_links else None
        if page:
            source_index = ""
        result.append(
            PypiPackage(
                name=name,
                version=str(pkg["version"]),
                url=strip_credentials(artifact["url"]),
                sha256=sha,
                size=artifact.get("size"),
                index=source_index,
                requires_python=pkg.get("requires-python"),
                sdist=sdist,
                find_links=page,
            )
        )
    return sorted(result, key=lambda p: p.name)


def _same_origin(a: str, b: str) -> bool:
    from urllib.parse import urlsplit

    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _find_links_of(url: str, pages: list[str], *, by_host: bool) -> str | None:
    """The find-links page a file was found on: the page whose directory holds the file,
    else (by_host: no index claims it) the one page on the file's host. A page that
    links to another host is not recorded (the lock's `find-links` is informational)."""
    plain = strip_credentials(url)
    for page in pages:
        base = strip_credentials(page)
        directory = base if base.endswith("/") else base.rsplit("/", 1)[0] + "/"
        if plain.startswith(directory):
            return base
    same = [strip_credentials(p) for p in pages if _same_origin(p, url)] if by_host else []
    return same[0] if len(same) == 1 else None


def _explain_uv_failure(
    stderr: str,
    platform: str,
    python_version: str,
    index: str,
    extras: list[str],
    offline: bool = False,
    secrets: tuple[str, ...] | list[str] = (),
) -> str:
    text = scrub(stderr.strip(), secrets)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head = f"PyPI resolution failed for {platform} (Python {python_version})"
    if offline and "network was disabled" in text:
        m = re.search(r"Because (\S+) was not found in the cache", text)
        what = m.group(1) if m else "a package"
        head = f"--offline: {what} is not in uv's cache; run `mlenv lock` once without --offline"
    elif any("Failed to fetch" in ln or "error sending request" in ln or "dns error" in ln.lower() for ln in lines):
        urls = re.findall(r"`(https?://[^`]+|file://[^`]+)`", text)
        where = urls[0] if urls else scrub(strip_credentials(index), secrets)
        head = f"network failure while resolving PyPI packages: could not fetch {where}"
    elif any(
        "not found in the package registry" in ln or "was not found in the package registry" in ln for ln in lines
    ):
        m = re.search(r"Because (\S+) was not found in the package registry", text)
        if m:
            head = f"unknown PyPI package {m.group(1)!r} (not found on {scrub(strip_credentials(index), secrets)})"
    detail = "\n".join("  " + ln for ln in lines[:40])
    return f"{head}\n{detail}" if detail else head


def _pip_compile(
    reqs: Path, constraints: Path, index: str, extras: list[str], offline: bool, python_version: str, platform: str
) -> dict[str, str]:
    """pip-tools resolves with the pip resolver on the *host* interpreter; mlenv
    then takes its pins and lets uv pick the artifacts for each target."""
    import importlib.util

    if importlib.util.find_spec("piptools") is None:
        raise SolveError("--resolver pip-tools needs pip-tools", hint="pip install 'mlenv[pip-tools]'")
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if ".".join(python_version.split(".")[:2]) != host:
        raise SolveError(
            f"pip-tools resolves for the interpreter it runs on (Python {host}), but the lock targets Python {python_version}",
            hint="use the default resolver (uv), which resolves for any target, or run mlenv under that Python",
        )
    out = reqs.with_name("pins.txt")
    cmd = [
        sys.executable, "-m", "piptools", "compile", str(reqs), "-c", str(constraints),
        "--output-file", str(out), "--no-header", "--no-annotate", "--strip-extras", "--allow-unsafe",
        "--index-url", index, "--quiet", "--no-emit-index-url",
    ]  # fmt: skip
    for url in extras:
        cmd += ["--extra-index-url", url]
    if offline:
        cmd += ["--no-index"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SolveError(
            f"pip-compile failed for {platform}:\n"
            + "\n".join("  " + ln for ln in scrub(proc.stderr).strip().splitlines()[-30:])
        )
    pins = {}
    for line in out.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize_name(name.split("[")[0].strip())] = version.split(";")[0].strip()
    return pins
