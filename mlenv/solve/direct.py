"""Requirements that do not come from an index: git repositories, archive URLs, local
paths (mlenv.reqforms). uv resolves them with everything else; this module prepares
what uv is given and turns uv's answer into lock entries:

- uv gets the expanded URL (credentials in memory only), a local path as an
  absolute file URL, and, as preferences, the commits the previous lock pinned (so
  a re-lock keeps them unless `--upgrade`/`--upgrade-package NAME` or a moved tag);
- uv answers with pylock entries of kind `vcs` (with the commit), `directory`,
  `archive` (with a hash) or `wheels` (find-links);
- mlenv then builds the git and directory ones into wheels (mlenv.wheelbuild, once
  per commit or source tree), downloads and checks every archive URL against its
  `#sha256=` (recording the sha256 when the requirement gives none), and checks that
  a built wheel installs on every target platform.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SolveError, SpecError
from ..reqforms import GIT, INDEX, PATH, URL, Form, git_url, requirement_text
from ..wheelbuild import build_options, project_dir, project_excludes

GIT_SOURCE, PATH_SOURCE, URL_SOURCE = "git", "path", "url"


@dataclass
class Direct:
    """A non-index package of uv's answer, before (and after) mlenv builds or fetches it."""

    kind: str  # git | path | url
    name: str
    version: str | None = None
    repo: str = ""  # git: the repository URL without credentials
    repo_expanded: str = ""  # git: with credentials (memory only)
    commit: str = ""
    requested: str | None = None
    subdirectory: str | None = None
    path: str = ""  # path: relative to the project (mlenv.toml's directory), '/'-separated
    url: str = ""  # url: without credentials or fragment
    url_expanded: str = ""
    sha256: str | None = None  # url: from the requirement (#sha256=) or uv
    archive: bool = False
    extra: dict = field(default_factory=dict)


def resolve_path(spec, form: Form) -> Path:
    """The absolute, real location of a path requirement; SpecError when it leaves the project."""
    root = project_dir(spec)
    target = Path(os.path.realpath(root / (form.path or ".")))
    if target != root and root not in target.parents:
        raise SpecError(f"{spec.where('pypi', 'dependencies', form.text)}: {form.text!r} points outside the project "
                        f"({form.describe()} is not under {spec.path.name}'s directory)",
                        hint="local packages must live inside the project, so the lock means the same everywhere")  # fmt: skip
    if form.archive:
        if not target.is_file():
            raise SpecError(f"{spec.where('pypi', 'dependencies', form.text)}: {form.describe()}: no such file")
    elif not target.is_dir():
        raise SpecError(f"{spec.where('pypi', 'dependencies', form.text)}: {form.describe()}: no such directory")
    return target


def forms_of(spec) -> list[Form]:
    """Every [pypi] dependency, classified (SpecError with file:line when one is unusable)."""
    from ..reqforms import parse

    out = []
    for dep in spec.pypi_dependencies:
        try:
            out.append(parse(dep))
        except ValueError as exc:
            raise SpecError(f"{spec.where('pypi', 'dependencies', dep)}: {exc}") from None
    return out


def uv_line(spec, form: Form) -> str:
    """The requirement line uv is given for a form (credentials expanded, in memory)."""
    from ..spec import expand_env

    if form.kind == INDEX:
        return form.text
    if form.kind == GIT:
        return requirement_text(form, url=git_url(form, repo_url=expand_env(form.url or "")))
    if form.kind == URL:
        return requirement_text(form, url=expand_env(form.url or ""))
    return requirement_text(form, url=resolve_path(spec, form).as_uri())


def preference_lines(locked: list, forms: list[Form], upgrade_packages: set[str]) -> str:
    """pylock [[packages]] entries that make uv keep the previous lock's choices: name and
    version, and for a git package its commit (uv keeps a preferred commit for the same
    repository and ref)."""
    from ..lockfile import _s as toml_str
    from .names import normalize

    git_forms = {normalize(f.name): f for f in forms if f.kind == GIT}
    out = []
    for p in sorted(locked, key=lambda p: p.name):
        if p.manager != "pypi" or normalize(p.name) in upgrade_packages:
            continue
        source = p.get("source")
        if source == GIT_SOURCE and normalize(p.name) in git_forms:
            form = git_forms[normalize(p.name)]
            if form.ref != p.get("requested") or (form.subdirectory or None) != (p.get("subdirectory") or None):
                continue  # the requirement changed: uv resolves it afresh
            from ..spec import expand_env

            vcs = {"type": "git", "url": expand_env(form.url or ""), "commit-id": str(p.get("commit") or "")}
            if form.ref:
                vcs["requested-revision"] = form.ref
            if form.subdirectory:
                vcs["subdirectory"] = form.subdirectory
            inline = ", ".join(f"{k} = {toml_str(v)}" for k, v in vcs.items())
            out.append(
                f"\n[[packages]]\nname = {toml_str(p.name)}\nversion = {toml_str(p.version)}\nvcs = {{ {inline} }}\n"
            )
        elif source in (PATH_SOURCE, URL_SOURCE):
            continue  # uv reads the path or URL itself
        else:
            out.append(f"\n[[packages]]\nname = {toml_str(p.name)}\nversion = {toml_str(p.version)}\n")
    return "".join(out)


def classify(pkg: dict, spec, forms: list[Form]) -> Direct | None:
    """A pylock package of kind vcs / directory / archive as a Direct; None for index
    and find-links packages (wheels/sdist)."""
    from ..runtime.secrets import strip_credentials
    from .names import normalize

    name = str(pkg.get("name", ""))
    by_name = {normalize(f.name): f for f in forms}
    form = by_name.get(normalize(name))
    if isinstance(pkg.get("vcs"), dict):
        vcs = pkg["vcs"]
        if form is None or form.kind != GIT:
            raise SolveError(f"{name}: uv resolved it from git, but the spec does not ask for a git requirement",
                             hint="a dependency's own git requirement: add it to [pypi] dependencies yourself")  # fmt: skip
        from ..spec import expand_env

        commit = str(vcs.get("commit-id") or "")
        if len(commit) != 40:
            raise SolveError(f"{name}: uv gave no commit for {form.describe()}")
        return Direct(GIT_SOURCE, name, str(pkg.get("version") or "") or None, repo=strip_credentials(form.url or ""),
                      repo_expanded=expand_env(form.url or ""), commit=commit, requested=form.ref,
                      subdirectory=form.subdirectory)  # fmt: skip
    if isinstance(pkg.get("directory"), dict) or (
        isinstance(pkg.get("archive"), dict) and form is not None and form.kind == PATH
    ):
        if form is None or form.kind != PATH:
            raise SolveError(f"{name}: uv resolved it from a local directory the spec does not name",
                             hint="a dependency's own path requirement: add it to [pypi] dependencies yourself")  # fmt: skip
        return Direct(PATH_SOURCE, name, None, path=form.path or ".", archive=form.archive)
    if isinstance(pkg.get("archive"), dict):
        if form is None or form.kind != URL:
            raise SolveError(f"{name}: uv resolved it from an archive URL the spec does not name",
                             hint="a dependency's own URL requirement: add it to [pypi] dependencies yourself")  # fmt: skip
        from ..spec import expand_env

        uv_hash = (pkg["archive"].get("hashes") or {}).get("sha256")
        return Direct(URL_SOURCE, name, str(pkg.get("version") or "") or None, url=strip_credentials(form.url or ""),
                      url_expanded=expand_env(form.url or ""), sha256=form.sha256 or uv_hash, archive=True,
                      extra={"given": bool(form.sha256)})  # fmt: skip
    return None


def _fetch_url(d: Direct, ca_bundle: str | None) -> tuple[str, int]:
    """Download an archive URL into the artifact cache, checking the requirement's
    #sha256= (or recording the file's sha256 when it gives none): (sha256, size)."""
    import hashlib
    import re
    import tempfile

    from ..runtime.errors import InstallError
    from ..runtime.fetch import artifact_cache_dir, download_verified, sha256_file
    from ..runtime.plan import Artifact

    filename = d.url.split("?", 1)[0].rsplit("/", 1)[-1]
    expected = d.sha256 or "0" * 64
    cached = artifact_cache_dir() / expected
    if d.sha256 and cached.is_file() and sha256_file(cached) == d.sha256:
        return d.sha256, cached.stat().st_size
    art = Artifact("pypi", d.name, d.version or "", d.url_expanded, expected, {"filename": filename})
    with tempfile.TemporaryDirectory(prefix="mlenv-url-") as tmp:
        try:
            path = download_verified(art, Path(tmp), {}, _ssl(ca_bundle))
            got = expected
        except InstallError as exc:
            m = re.search(r"has ([0-9a-f]{64})", exc.message)
            if not m:
                raise SolveError(exc.message, hint=exc.hint) from None
            got = m.group(1)
            if d.extra.get("given"):
                raise SolveError(f"{d.name}: the file at {d.url} has sha256 {got}, but the requirement says "
                                 f"#sha256={d.sha256}", hint="fix the hash in mlenv.toml, or check where the URL "
                                                             "points (the file changed or was replaced)") from None  # fmt: skip
            # no hash given: uv's was only a hint; download again, recording what the file is
            art = Artifact("pypi", d.name, d.version or "", d.url_expanded, got, {"filename": filename})
            path = download_verified(art, Path(tmp), {}, _ssl(ca_bundle))
        data_path = Path(path)
        size = data_path.stat().st_size
        from ..wheelbuild.build import store

        if hashlib.sha256(data_path.read_bytes()).hexdigest() != got:  # paranoia: the cache is keyed by it
            raise SolveError(f"{d.name}: the download from {d.url} changed while mlenv read it")
        store(data_path.read_bytes(), got)
    return got, size


def _ssl(ca_bundle: str | None):
    from ..runtime.fetch import ssl_context

    return ssl_context(ca_bundle)


def _check_tags(filename: str, name: str, what: str, platform: str, python: str, spec) -> None:
    """A wheel mlenv built (or a local wheel) must install on the target platform and Python."""
    from packaging.utils import parse_wheel_filename

    from .platforms import wheel_tags

    if not filename.endswith(".whl"):
        return
    _, _, _, tagset = parse_wheel_filename(filename)
    accepted = set(wheel_tags(platform, python, glibc=spec.system.get("glibc"), osx=spec.system.get("osx")))
    if not tagset & accepted:
        shown = ", ".join(sorted(str(t) for t in tagset))
        raise SolveError(f"{name} ({what}) builds the wheel {filename} ({shown}), which does not install on "
                         f"{platform} with Python {python}",
                         hint="mlenv builds wheels on this host: lock only platforms this host can build for, "
                              "or publish wheels for each target to an index")  # fmt: skip


def realize(spec, directs: dict[str, list[Direct]], pythons: dict[str, str | None], *, offline: bool,
            progress=None) -> dict[str, list[dict]]:  # fmt: skip
    """Build (git, directories), copy (local archives) or download and check (URLs) every
    Direct once, then give per platform the lock fields of each:
    {name, version, url, sha256, size, source, ...}."""
    from concurrent.futures import ThreadPoolExecutor

    from .. import wheelbuild

    say = progress or (lambda msg: None)
    first_python = next((v for v in pythons.values() if v), None)
    opts = build_options(spec, first_python, offline=offline)
    jobs: dict[tuple, Direct] = {}
    for items in directs.values():
        for d in items:
            key = (d.kind, d.repo_expanded, d.commit, d.subdirectory, d.path, d.url_expanded, d.sha256)
            jobs.setdefault(key, d)

    def run(d: Direct) -> dict:
        if d.kind == GIT_SOURCE:
            say(f"building {d.name} from {d.repo}@{d.commit[:12]}")
            b = wheelbuild.build_git(d.repo_expanded, d.commit, d.subdirectory, opts)
            url = f"git+{d.repo}@{d.commit}" + (f"#subdirectory={d.subdirectory}" if d.subdirectory else "")
            fields = {"source": GIT_SOURCE, "commit": d.commit, "filename": b.filename}
            if d.requested:
                fields["requested"] = d.requested
            if d.subdirectory:
                fields["subdirectory"] = d.subdirectory
            return {"name": b.name, "version": b.version, "url": url, "sha256": b.sha256, "size": b.size, **fields}
        if d.kind == PATH_SOURCE:
            root = project_dir(spec)
            target = Path(os.path.realpath(root / d.path))
            shown = "." if d.path == "." else f"./{d.path}"
            if d.archive:
                b = wheelbuild.local_archive(target, what=shown)
                return {"name": b.name, "version": b.version, "url": shown, "sha256": b.sha256, "size": b.size,
                        "source": PATH_SOURCE, "filename": b.filename}  # fmt: skip
            say(f"building {d.name} from {shown}")
            tree, b = wheelbuild.build_path(target, opts, what=shown, exclude=project_excludes(spec, target))
            return {"name": b.name, "version": b.version, "url": shown, "sha256": b.sha256, "size": b.size,
                    "source": PATH_SOURCE, "filename": b.filename, "source-tree": tree}  # fmt: skip
        say(f"downloading {d.name} from {d.url}")
        sha, size = _fetch_url(d, opts.ca_bundle)
        filename = d.url.split("?", 1)[0].rsplit("/", 1)[-1]
        version = d.version or _version_from_filename(filename, d.name)
        return {"name": d.name, "version": version, "url": d.url, "sha256": sha, "size": size, "source": URL_SOURCE}

    with ThreadPoolExecutor(max_workers=min(4, max(1, len(jobs))), thread_name_prefix="mlenv-build") as pool:
        done = dict(zip(jobs, pool.map(run, jobs.values()), strict=True))
    from .names import normalize

    out: dict[str, list[dict]] = {}
    for platform, items in directs.items():
        for d in items:
            key = (d.kind, d.repo_expanded, d.commit, d.subdirectory, d.path, d.url_expanded, d.sha256)
            fields = dict(done[key])
            if normalize(fields["name"]) != normalize(d.name):
                raise SolveError(f"the requirement {d.name!r} ({fields['url']}) builds a package named "
                                 f"{fields['name']!r}", hint=f"write `{fields['name']} @ ...` in mlenv.toml")  # fmt: skip
            fields["name"] = normalize(d.name)
            if fields.get("filename"):
                _check_tags(fields["filename"], d.name, fields["url"], platform, pythons.get(platform) or "", spec)
            out.setdefault(platform, []).append(fields)
    return out


def _version_from_filename(filename: str, name: str) -> str:
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except Exception:
        raise SolveError(f"{name}: cannot tell the version from the file name {filename!r}") from None
