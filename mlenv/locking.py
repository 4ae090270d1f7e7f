"""Spec -> lock: freshness, the satisfiability check, and the solve itself.

Freshness is decided in three steps, cheapest first:
1. the spec hash in the lock equals the spec's: fresh, nothing imported beyond tomllib;
2. otherwise a satisfiability check (pixi's rule): every locked package still
   satisfies the spec, and platforms, channels, indexes and [system] match.
   A satisfied lock is rewritten without solving (new spec hash, and new
   variables/image fields when only those changed);
3. otherwise conda is solved with rattler, then PyPI with uv given the conda result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import LockError, SpecError
from .lockfile import Lock, Package
from .spec import Spec, inputs_of

Progress = Callable[[str], None]


@dataclass
class Status:
    state: str  # "fresh" | "satisfied" | "stale" | "missing"
    reasons: list[str] = field(default_factory=list)
    env_changed: bool = False  # variables / image / python fields differ from the spec
    move: set[str] = field(default_factory=set)  # git packages whose tag moved: re-resolved (mlenv.solve.moved)
    notes: list[str] = field(default_factory=list)  # moved branches, unreachable repositories

    @property
    def check_ok(self) -> bool:
        return self.state == "fresh" or (self.state == "satisfied" and not self.env_changed)


@dataclass
class LockResult:
    lock: Lock
    action: str  # "fresh" | "rewritten" | "solved"
    status: Status
    warnings: list[str] = field(default_factory=list)


def _env_fields(spec: Spec) -> dict:
    return {
        "python": spec.python,
        "variables": dict(sorted(spec.variables.items())),
        "base": spec.base_image,
        "apt-packages": sorted(set(spec.apt_packages)),
        "interpreter": spec.interpreter,
        "steps": list(spec.steps),
    }


def _lock_env_fields(lock: Lock) -> dict:
    return {
        "python": lock.python,
        "variables": dict(sorted(lock.variables.items())),
        "base": lock.image.get("base"),
        "apt-packages": sorted(set(lock.image.get("apt-packages", []))),
        "interpreter": lock.image.get("python"),
        "steps": list(lock.image.get("steps", [])),
    }


def status(spec: Spec, lock: Lock | None, *, offline: bool = False) -> Status:
    """fresh / satisfied / stale / missing. Local packages and git tags are checked too
    (mlenv.solve.moved): a changed source or a moved tag makes a lock stale although its
    spec hash matches; offline: git refs are not read."""
    if lock is None:
        return Status("missing", ["no mlenv.lock yet"])
    drift = _drift(spec, lock, offline=offline)
    if lock.spec_hash == spec.spec_hash():
        if drift.reasons:
            return Status("stale", drift.reasons, move=drift.move, notes=drift.notes)
        return Status("fresh", notes=drift.notes)
    spec.validate_requirements()
    reasons = satisfiability(spec, lock) + drift.reasons
    env_changed = _env_fields(spec) != _lock_env_fields(lock)
    if reasons:
        return Status("stale", reasons, env_changed, move=drift.move, notes=drift.notes)
    return Status("satisfied", [], env_changed, notes=drift.notes)


def _drift(spec: Spec, lock: Lock, *, offline: bool):
    from .solve.moved import check

    return check(spec, lock, offline=offline)


def require_current(spec: Spec, lock: Lock, *, path, doing: str) -> None:
    """Refuse to act on a lock that no longer matches its spec (build, register, export)."""
    if lock.spec_hash == spec.spec_hash():
        from .solve.moved import local_changes

        changed = local_changes(spec, lock, missing_ok=True) if lock.has_moving_sources() else []
        if changed:
            raise LockError(f"{path} is not current for {spec.path.name} (stale: {'; '.join(changed)}); refusing to "
                            f"{doing}", hint="run `mlenv lock` first")  # fmt: skip
        return
    st = status(spec, lock, offline=True)
    if not st.check_ok:
        reasons = "; ".join(st.reasons) or "variables, image or python changed"
        raise LockError(
            f"{path} is not current for {spec.path.name} (stale: {reasons}); refusing to {doing}",
            hint="run `mlenv lock` first",
        )


def satisfiability(spec: Spec, lock: Lock) -> list[str]:
    """Why the lock no longer satisfies the spec; empty when it still does."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    from .solve.names import pypi_name

    reasons: list[str] = []
    old = lock.inputs
    new = inputs_of(spec)
    for key, label in (("platforms", "platforms"), ("channels", "conda channels"), ("system", "[system] requirements"),
                       ("index-url", "index-url"), ("extra-index-urls", "extra-index-urls"),
                       ("find-links", "find-links"), ("constraints", "constraints"), ("overrides", "overrides")):  # fmt: skip
        if old.get(key) != new.get(key):
            reasons.append(f"{label} changed")
    if sorted(lock.platforms) != sorted(spec.platforms):
        reasons.append("platforms changed")
    if (lock.python or None) != (spec.python or None):
        reasons.append("python changed")
    removed_conda = {_conda_name(d) for d in old.get("conda-dependencies", [])} - {
        _conda_name(d) for d in new["conda-dependencies"]
    }
    from packaging.requirements import InvalidRequirement

    try:  # the lock's [inputs] are only typed as strings: parse them here, tolerantly
        locked_pypi = {canonicalize_name(Requirement(d).name) for d in old.get("pypi-dependencies", [])}
    except InvalidRequirement:
        locked_pypi = set()
        reasons.append("the lock's [inputs] pypi-dependencies are not PEP 508 requirements")
    removed_pypi = locked_pypi - {canonicalize_name(Requirement(d).name) for d in new["pypi-dependencies"]}
    for name in sorted(removed_conda | removed_pypi):
        reasons.append(f"{name} was removed from the spec")
    if reasons:
        return reasons

    for platform in spec.platforms:
        conda = {p.name: p for p in lock.for_platform(platform, "conda")}
        if spec.has_conda and new["conda-dependencies"]:
            from rattler import MatchSpec

            from .solve.conda import to_record

            for dep in new["conda-dependencies"]:
                ms = MatchSpec(dep)
                pkg = conda.get(ms.name.normalized) if ms.name else None
                if pkg is None or not ms.matches(to_record(pkg)):
                    have = f"{pkg.version} is locked" if pkg else "nothing is locked"
                    reasons.append(f"{platform}: conda {dep!r} is not satisfied ({have})")
        provided = {}
        for p in conda.values():
            mapped = pypi_name(p.name, noarch=p.get("noarch"), depends=p.get("depends", []))
            if mapped:
                provided[mapped] = p.version
        by_name = {canonicalize_name(p.name): p for p in lock.for_platform(platform, "pypi")}
        pypi = {n: p.version for n, p in by_name.items()}
        for dep in new["pypi-dependencies"]:
            req = Requirement(dep)
            name = canonicalize_name(req.name)
            why = _source_mismatch(dep, by_name.get(name))
            if why:
                reasons.append(f"{platform}: {dep!r}: {why}")
                continue
            version = pypi.get(name) or provided.get(name)
            if version is None:
                if req.marker is not None:
                    continue  # may be excluded by its marker on this platform
                reasons.append(f"{platform}: {dep!r} is not in the lock")
                continue
            try:
                if not req.specifier.contains(Version(version), prereleases=True):
                    reasons.append(f"{platform}: {dep!r} is not satisfied ({version} is locked)")
            except InvalidVersion:
                reasons.append(f"{platform}: locked {name} {version} is not a PEP 440 version")
    return reasons


def _conda_name(dep: str) -> str:
    from .spec import _conda_name as name

    return name(dep)


def _source_mismatch(dep: str, pkg: Package | None) -> str | None:
    """Does the locked package come from where the requirement says (an index, this git
    repository and ref, this URL and hash, this path)? None when it does."""
    from .reqforms import GIT, INDEX, PATH, URL, parse, strip_userinfo

    try:
        form = parse(dep)
    except ValueError as exc:
        return str(exc)
    if pkg is None:
        return None  # absence is judged by the caller
    source = pkg.get("source")
    if form.kind == INDEX:
        return f"the lock has it from {source} {pkg.url}" if source else None
    if form.kind == GIT:
        repo = strip_userinfo(form.url or "")
        url = str(pkg.url)
        if source != "git" or not url.startswith(f"git+{repo}@"):
            return "the lock has it from another source"
        if (pkg.get("requested") or None) != form.ref or (pkg.get("subdirectory") or None) != form.subdirectory:
            return "the git ref or subdirectory changed"
        return None
    if form.kind == URL:
        if source != "url" or pkg.url != strip_userinfo(form.url or ""):
            return "the lock has it from another source"
        if form.sha256 and form.sha256 != pkg.sha256:
            return "the #sha256= changed"
        return None
    if form.kind == PATH:
        shown = "." if form.path == "." else f"./{form.path}"
        if source != "path" or pkg.url != shown:
            return "the lock has it from another source"
    return None


def lock_spec(
    spec: Spec,
    *,
    platforms: tuple[str, ...] = (),
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    offline: bool = False,
    resolver: str = "uv",
    progress: Progress | None = None,
    existing: Lock | None = None,
    force_solve: bool = False,
) -> LockResult:
    """Produce the lock for spec (not written). Solves only what must be solved."""
    say = progress or (lambda msg: None)
    for p in platforms:
        if p not in spec.platforms:
            raise SpecError(
                f"--platform {p} is not one of the spec's platforms ({', '.join(spec.platforms)})",
                hint=f"add it to [environment] platforms in {spec.path}",
            )
    warnings: list[str] = []
    st = status(spec, existing, offline=offline)
    warnings += st.notes
    if st.move and not upgrade:
        # a tag now names another commit: that package is re-resolved (the move is reported below)
        upgrade_packages = tuple(sorted(set(upgrade_packages) | st.move))
    if not (upgrade or upgrade_packages or force_solve):
        if existing is not None and st.state == "fresh" and _apt_current(existing):
            return LockResult(existing, "fresh", st, warnings)
        if existing is not None and st.state in ("fresh", "satisfied"):  # both need a lock (status)
            say("lock still satisfies the spec: updating without solving")
            lock, relock_warnings = _relock_env(spec, existing, offline, say)
            return LockResult(lock, "rewritten", st, warnings + relock_warnings)
    from .solve import pypi as pypi_solver

    keep_old = set(spec.platforms) - set(platforms) if platforms and existing else set()
    to_solve = [p for p in spec.platforms if not (existing and p in keep_old and p in existing.platforms)]
    locked = {p: existing.for_platform(p) if existing else [] for p in spec.platforms}

    def start_pypi(platform: str, python: str | None, provided: dict[str, str]):
        if spec.pypi_dependencies and not python:
            raise SpecError(
                f"{spec.where('environment')}: PyPI packages need a Python version",
                hint='set [environment] python = "3.11"',
            )
        if spec.pypi_dependencies:
            say(f"{platform}: resolving PyPI packages with {resolver} (Python {python})")
        previous = [p for p in locked[platform] if p.manager == "pypi"]
        return pypi_solver.start(spec, platform, python or "", provided=provided, upgrade=upgrade,
                                 upgrade_packages=upgrade_packages, offline=offline, resolver=resolver,
                                 locked=previous)  # fmt: skip

    # Without conda, every platform's uv run starts at once, before mlenv's own
    # validation and image pinning, which then overlap with the resolution; so does
    # the check that every declared index, find-links page and git repository answers.
    from concurrent.futures import ThreadPoolExecutor

    jobs = {}
    checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlenv-sources")
    health = checker.submit(probe_sources, spec, offline=offline) if spec.pypi_dependencies else None
    try:
        if not spec.has_conda:
            for platform in to_solve:
                jobs[platform] = start_pypi(platform, spec.python, {})
        spec.validate_requirements()
        image, warnings = resolve_image(spec, existing, offline=offline, upgrade=upgrade)
        conda_pkgs: dict[str, list[Package]] = {}
        pythons: dict[str, str | None] = dict.fromkeys(to_solve, spec.python)
        if spec.has_conda:
            from .solve import conda as conda_solver
            from .solve.names import pypi_name

            for platform in to_solve:
                say(f"{platform}: solving conda packages with rattler")
                pkgs = conda_solver.solve(
                    spec,
                    platform,
                    locked=locked[platform],
                    upgrade=upgrade,
                    upgrade_packages=upgrade_packages,
                    offline=offline,
                )
                conda_pkgs[platform] = pkgs
                pythons[platform] = next((p.version for p in pkgs if p.name == "python"), None) or spec.python
                provided = {}
                for pkg in pkgs:
                    mapped = pypi_name(pkg.name, noarch=pkg.get("noarch"), depends=pkg.get("depends", []))
                    if mapped:
                        provided[mapped] = pkg.version
                jobs[platform] = start_pypi(platform, pythons[platform], provided)
        all_404 = health.result() if health is not None else []  # a failing source is the error, not uv's
        packages: list[Package] = []
        plat_info: dict[str, dict] = {}
        directs: dict = {}
        requires: dict[tuple[str, str], str] = {}
        for platform in spec.platforms:
            if platform not in to_solve:
                assert existing is not None  # a platform is kept only from an existing lock
                packages += [p for p in existing.for_platform(platform) if p.manager != "apt"]
                plat_info[platform] = dict(existing.platforms[platform])
                continue
            packages += conda_pkgs.get(platform, [])
            for r in jobs.pop(platform).finish():
                if r.direct is not None:
                    directs.setdefault(platform, []).append(r.direct)
                    if r.requires_python:
                        requires[(platform, r.name)] = r.requires_python
                    continue
                extra = (
                    {"size": r.size, "index": r.index}
                    if not r.find_links
                    else {"size": r.size, "find-links": r.find_links}
                )
                if r.requires_python:
                    extra["requires-python"] = r.requires_python
                packages.append(Package("pypi", platform, r.name, r.version, r.url, r.sha256, extra))
            plat_info[platform] = {"python": pythons[platform]}
        if directs:
            from .solve.direct import realize

            for platform, items in realize(spec, directs, pythons, offline=offline, progress=say).items():
                for f in items:
                    extra = {k: v for k, v in f.items() if k not in ("name", "version", "url", "sha256")}
                    if requires.get((platform, f["name"])):
                        extra["requires-python"] = requires[(platform, f["name"])]
                    packages.append(Package("pypi", platform, f["name"], f["version"], f["url"], f["sha256"], extra))
    finally:
        for job in jobs.values():
            job.kill()
        checker.shutdown(wait=False, cancel_futures=True)
    from .apt.lock import lock_apt

    apt_pkgs, apt_inputs, apt_warnings = lock_apt(
        spec,
        image,
        existing,
        keep_platforms=keep_old,
        upgrade=upgrade,
        upgrade_packages=upgrade_packages,
        offline=offline,
        progress=say,
    )
    warnings += apt_warnings

    lock = Lock(
        spec_hash=spec.spec_hash(),
        python=spec.python,
        platforms=plat_info,
        packages=packages + apt_pkgs,
        variables=dict(spec.variables),
        image=image,
        inputs={**inputs_of(spec), **apt_inputs},
    ).seal()
    warnings += unused_indexes(spec, packages, all_404)
    warnings += _moves(existing, lock, st.move)
    return LockResult(lock, "solved", st, warnings)


def probe_sources(spec: Spec, *, offline: bool = False) -> list[str]:
    """Every declared index, find-links page and git repository answers (mlenv.solve.health,
    git ls-remote), checked in parallel; SolveError naming the first that does not.
    Returns the indexes that answered 404 to every probe (for the unused-index warning)."""
    if offline:
        return []
    from concurrent.futures import ThreadPoolExecutor

    from .reqforms import GIT, INDEX
    from .solve import health
    from .solve.direct import forms_of
    from .spec import expand_env

    forms = forms_of(spec)
    probes = [health.Probe("index", expand_env(u)) for u in ([spec.index_url] if spec.index_url else [])]
    probes += [health.Probe("index", expand_env(u)) for u in spec.extra_index_urls]
    probes += [health.Probe("find-links", expand_env(u)) for u in getattr(spec, "find_links", [])]
    projects = sorted({f.name for f in forms if f.kind == INDEX})
    gits = [f for f in forms if f.kind == GIT]
    ca = None
    if probes or gits:
        from .settings import ca_bundle

        ca = ca_bundle()

    def git_check(form) -> None:
        from .wheelbuild.git import check_ref

        check_ref(expand_env(form.url or ""), form.ref, ca_bundle=ca)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(gits))), thread_name_prefix="mlenv-git") as pool:
        futures = [pool.submit(git_check, f) for f in gits]
        all_404 = health.check(probes, projects, ca_bundle=ca)
        for fut in futures:
            fut.result()
    return all_404


def _moves(existing: Lock | None, lock: Lock, moved: set[str]) -> list[str]:
    """One line per git package whose tag moved: from which commit to which."""
    if not existing or not moved:
        return []
    from .solve.names import normalize

    old = {(p.platform, normalize(p.name)): p for p in existing.packages if p.get("source") == "git"}
    out = []
    seen = set()
    for p in lock.packages:
        if p.get("source") != "git" or normalize(p.name) not in moved:
            continue
        before = old.get((p.platform, normalize(p.name)))
        if before is None or (p.name, before.get("commit")) in seen:
            continue
        seen.add((p.name, before.get("commit")))
        out.append(f"{p.name}: tag {p.get('requested')} was moved (history rewritten under the same tag): "
                   f"the lock now pins {str(p.get('commit'))[:12]} instead of {str(before.get('commit'))[:12]} "
                   f"(wheel sha256 {p.sha256[:12]}…, was {before.sha256[:12]}…); installs from the previous lock "
                   "keep using its wheel")  # fmt: skip
    return out


def unused_indexes(spec: Spec, packages: list[Package], all_404: list[str] | None = None) -> list[str]:
    """A warning per declared index (of two or more) that no locked package comes from
    and that answered 404 to every probe of the health check (probe_sources): it
    works, but seems to hold nothing this spec asks for (a wrong path?). An index that
    answers with an error or not at all already failed the lock."""
    from .runtime.secrets import strip_credentials
    from .spec import expand_env

    declared = ([spec.index_url] if spec.index_url else []) + list(spec.extra_index_urls)
    if len(declared) + (0 if spec.index_url else 1) < 2 or not spec.pypi_dependencies:
        return []
    used = {str(p.get("index") or "").rstrip("/") for p in packages if p.manager == "pypi"}
    out = []
    for url in declared:
        try:
            plain = strip_credentials(expand_env(url)).rstrip("/")
        except Exception:
            continue
        if plain not in used and (all_404 is None or plain.rstrip("/") in {u.rstrip("/") for u in all_404}):
            out.append(
                f"no locked package comes from index {plain}, which answers 404 for its root and for the "
                "projects mlenv asked it about: check its URL if some package should come from it"
            )
    return out


def _apt_current(lock: Lock | None) -> bool:
    """The lock's apt pins answer its apt-packages and base (mlenv.apt.pins_current); a lock
    written before mlenv pinned Debian packages counts as current (it builds as before)."""
    from .apt import legacy_unpinned, pins_current

    return lock is None or legacy_unpinned(lock) or pins_current(lock)


def _relock_env(spec: Spec, existing: Lock, offline: bool, say: Progress | None = None) -> tuple[Lock, list[str]]:
    from .apt.lock import lock_apt

    image, warnings = resolve_image(spec, existing, offline=offline, upgrade=False)
    apt_pkgs, apt_inputs, apt_warnings = lock_apt(spec, image, existing, offline=offline, progress=say)
    warnings += apt_warnings
    lock = Lock(
        spec_hash=spec.spec_hash(),
        python=spec.python,
        platforms={k: dict(v) for k, v in existing.platforms.items()},
        packages=[p for p in existing.packages if p.manager != "apt"] + apt_pkgs,
        variables=dict(spec.variables),
        image=image,
        inputs={**inputs_of(spec), **apt_inputs},
    ).seal()
    return lock, warnings


def resolve_image(spec: Spec, existing: Lock | None, *, offline: bool, upgrade: bool) -> tuple[dict, list[str]]:
    from . import image_ref

    warnings: list[str] = []
    base = spec.base_image
    try:
        ref = image_ref.parse(base)
    except ValueError as exc:
        raise SpecError(f"{spec.where('image', 'base')}: {exc}") from None
    digest = ref.digest
    previous = existing.image if existing else {}
    if digest is None and not upgrade and previous.get("base") == base and previous.get("digest"):
        digest = previous["digest"]  # keep the pin; `--upgrade` re-reads the tag
    elif digest is None and offline:
        warnings.append(f"base image {base} is not pinned to a digest (--offline); the lock records the tag")
    elif digest is None:
        from .oci.client import ResolveError, resolve_digest

        try:
            digest = resolve_digest(ref)
        except ResolveError as exc:
            warnings.append(f"base image {base} is not pinned to a digest: {exc}; the lock records the tag")
    image: dict[str, str | list[str]] = {
        "base": base,
        "reference": ref.with_digest(digest).pinned if digest else str(ref),
    }
    if digest:
        image["digest"] = digest
    image["apt-packages"] = sorted(set(spec.apt_packages))
    if spec.interpreter:
        image["python"] = spec.interpreter
    image["steps"] = list(spec.steps)
    return image, warnings


__all__ = ["LockResult", "Status", "lock_spec", "status", "require_current", "satisfiability"]
