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

from .errors import LockError, SolveError, SpecError
from .lockfile import Lock, Package
from .spec import Spec

Progress = Callable[[str], None]


@dataclass
class Status:
    state: str  # "fresh" | "satisfied" | "stale" | "missing"
    reasons: list[str] = field(default_factory=list)
    env_changed: bool = False  # variables / image / python fields differ from the spec

    @property
    def check_ok(self) -> bool:
        return self.state == "fresh" or (self.state == "satisfied" and not self.env_changed)


@dataclass
class LockResult:
    lock: Lock
    action: str  # "fresh" | "rewritten" | "solved"
    status: Status
    warnings: list[str] = field(default_factory=list)


def inputs_of(spec: Spec) -> dict:
    inputs: dict = {
        "platforms": sorted(spec.platforms),
        "channels": spec.normalized()["conda"]["channels"] if spec.has_conda else [],
        "conda-dependencies": sorted(spec.conda_specs()),
        "pypi-dependencies": sorted(spec.pypi_dependencies),
        "system": dict(sorted(spec.system.items())),
    }
    norm = spec.normalized()["pypi"]
    if norm["index-url"]:
        inputs["index-url"] = norm["index-url"]
    inputs["extra-index-urls"] = norm["extra-index-urls"]
    return inputs


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


def status(spec: Spec, lock: Lock | None) -> Status:
    if lock is None:
        return Status("missing", ["no mlenv.lock yet"])
    if lock.spec_hash == spec.spec_hash():
        return Status("fresh")
    spec.validate_requirements()
    reasons = satisfiability(spec, lock)
    env_changed = _env_fields(spec) != _lock_env_fields(lock)
    if reasons:
        return Status("stale", reasons, env_changed)
    return Status("satisfied", [], env_changed)


def require_current(spec: Spec, lock: Lock, *, path, doing: str) -> None:
    """Refuse to act on a lock that no longer matches its spec (build, register, export)."""
    if lock.spec_hash == spec.spec_hash():
        return
    st = status(spec, lock)
    if not st.check_ok:
        reasons = "; ".join(st.reasons) or "variables, image or python changed"
        raise LockError(f"{path} is not current for {spec.path.name} (stale: {reasons}); refusing to {doing}",
                        hint="run `mlenv lock` first")


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
                       ("index-url", "index-url"), ("extra-index-urls", "extra-index-urls")):  # fmt: skip
        if old.get(key) != new.get(key):
            reasons.append(f"{label} changed")
    if sorted(lock.platforms) != sorted(spec.platforms):
        reasons.append("platforms changed")
    if (lock.python or None) != (spec.python or None):
        reasons.append("python changed")
    removed_conda = {_conda_name(d) for d in old.get("conda-dependencies", [])} - {_conda_name(d) for d in new["conda-dependencies"]}
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
                name = ms.name.normalized if ms.name else None
                pkg = conda.get(name)
                if pkg is None or not ms.matches(to_record(pkg)):
                    have = f"{pkg.version} is locked" if pkg else "nothing is locked"
                    reasons.append(f"{platform}: conda {dep!r} is not satisfied ({have})")
        provided = {}
        for p in conda.values():
            mapped = pypi_name(p.name, noarch=p.get("noarch"), depends=p.get("depends", []))
            if mapped:
                provided[mapped] = p.version
        pypi = {canonicalize_name(p.name): p.version for p in lock.for_platform(platform, "pypi")}
        for dep in new["pypi-dependencies"]:
            req = Requirement(dep)
            name = canonicalize_name(req.name)
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
            raise SpecError(f"--platform {p} is not one of the spec's platforms ({', '.join(spec.platforms)})",
                            hint=f"add it to [environment] platforms in {spec.path}")
    warnings: list[str] = []
    st = status(spec, existing)
    if not (upgrade or upgrade_packages or force_solve):
        if st.state == "fresh" and _apt_current(existing):
            return LockResult(existing, "fresh", st)
        if st.state in ("fresh", "satisfied"):
            say("lock still satisfies the spec: updating without solving")
            lock, warnings = _relock_env(spec, existing, offline, say)
            return LockResult(lock, "rewritten", st, warnings)
    from .solve import pypi as pypi_solver

    keep_old = set(spec.platforms) - set(platforms) if platforms and existing else set()
    to_solve = [p for p in spec.platforms if not (p in keep_old and p in existing.platforms)]
    locked = {p: existing.for_platform(p) if existing else [] for p in spec.platforms}

    def start_pypi(platform: str, python: str | None, provided: dict[str, str]):
        if spec.pypi_dependencies and not python:
            raise SpecError(f"{spec.where('environment')}: PyPI packages need a Python version",
                            hint='set [environment] python = "3.11"')
        if spec.pypi_dependencies:
            say(f"{platform}: resolving PyPI packages with {resolver} (Python {python})")
        prefs = {p.name: p.version for p in locked[platform] if p.manager == "pypi"}
        return pypi_solver.start(spec, platform, python or "", provided=provided, preferences=prefs, upgrade=upgrade,
                                 upgrade_packages=upgrade_packages, offline=offline, resolver=resolver)

    # Without conda, every platform's uv run starts at once, before mlenv's own
    # validation and image pinning, which then overlap with the resolution.
    jobs = {}
    try:
        if not spec.has_conda:
            for platform in to_solve:
                jobs[platform] = start_pypi(platform, spec.python, {})
        spec.validate_requirements()
        image, warnings = resolve_image(spec, existing, offline=offline, upgrade=upgrade)
        conda_pkgs: dict[str, list[Package]] = {}
        pythons: dict[str, str | None] = {p: spec.python for p in to_solve}
        if spec.has_conda:
            from .solve import conda as conda_solver
            from .solve.names import pypi_name

            for platform in to_solve:
                say(f"{platform}: solving conda packages with rattler")
                pkgs = conda_solver.solve(spec, platform, locked=locked[platform], upgrade=upgrade,
                                          upgrade_packages=upgrade_packages, offline=offline)
                conda_pkgs[platform] = pkgs
                pythons[platform] = next((p.version for p in pkgs if p.name == "python"), None) or spec.python
                provided = {}
                for p in pkgs:
                    mapped = pypi_name(p.name, noarch=p.get("noarch"), depends=p.get("depends", []))
                    if mapped:
                        provided[mapped] = p.version
                jobs[platform] = start_pypi(platform, pythons[platform], provided)
        packages: list[Package] = []
        plat_info: dict[str, dict] = {}
        for platform in spec.platforms:
            if platform not in to_solve:
                packages += [p for p in existing.for_platform(platform) if p.manager != "apt"]
                plat_info[platform] = dict(existing.platforms[platform])
                continue
            packages += conda_pkgs.get(platform, [])
            for r in jobs.pop(platform).finish():
                extra = {"size": r.size, "index": r.index}
                if r.requires_python:
                    extra["requires-python"] = r.requires_python
                packages.append(Package("pypi", platform, r.name, r.version, r.url, r.sha256, extra))
            plat_info[platform] = {"python": pythons[platform]}
    finally:
        for job in jobs.values():
            job.kill()
    from .apt.lock import lock_apt

    apt_pkgs, apt_inputs, apt_warnings = lock_apt(spec, image, existing, keep_platforms=keep_old, upgrade=upgrade,
                                                  upgrade_packages=upgrade_packages, offline=offline, progress=say)
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
    warnings += unused_indexes(spec, packages)
    return LockResult(lock, "solved", st, warnings)


def unused_indexes(spec: Spec, packages: list[Package]) -> list[str]:
    """A warning per declared index (of two or more) that no locked package comes from.
    uv moves on to the next index when one answers a package's page with an error
    status (a proxy that blocks the host, a 403): a CPU-only index that cannot be
    reached then silently yields PyPI's (CUDA) build. mlenv cannot tell that from an
    index that has nothing to offer, so it says so, without failing."""
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
        if plain not in used:
            out.append(f"no locked package comes from index {plain}: if some should (e.g. a CPU or private "
                       "build), check that it answers from here; uv uses the next index when one answers "
                       "with an error")
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
        try:
            digest = image_ref.resolve_digest(ref)
        except image_ref.ResolveError as exc:
            warnings.append(f"base image {base} is not pinned to a digest: {exc}; the lock records the tag")
    image = {"base": base, "reference": ref.with_digest(digest).pinned if digest else str(ref)}
    if digest:
        image["digest"] = digest
    image["apt-packages"] = sorted(set(spec.apt_packages))
    if spec.interpreter:
        image["python"] = spec.interpreter
    image["steps"] = list(spec.steps)
    return image, warnings


__all__ = ["LockResult", "Status", "lock_spec", "status", "require_current", "satisfiability"]
