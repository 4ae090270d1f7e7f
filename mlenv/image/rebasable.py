"""What makes a daemonless image rebasable, recorded when it is built
(mlenv.image.daemonless) and checked when it is rebased (mlenv.image.rebase, whose
docstring states the rules): the labels, the glibc floor of a lock, the rebase
contract, the checks of a new base and of the lock's other fields."""

from __future__ import annotations

import re

from ..errors import MlenvError

LABEL_REBASE = "org.mlenv.rebase"
LABEL_FLOOR = "org.mlenv.glibc-floor"
LABEL_BASE_LAYERS = "org.mlenv.base.layers"
REBASE_OK = "conda-self-contained"

_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class RebaseRefused(MlenvError):
    """This image cannot be rebased soundly (the message says why)."""


def conda_glibc_floor(depends: list[str]) -> tuple[int, int] | None:
    """The lowest glibc a conda record's dependencies accept (`__glibc >=2.17,<3.0.a0`)."""
    best = None
    for dep in depends or []:
        m = re.match(r"\s*__glibc\s*(.*)$", str(dep))
        if not m:
            continue
        for _op, major, minor in re.findall(r"(>=|>|==|=|~=)\s*(\d+)\.(\d+)", m.group(1)):
            v = (int(major), int(minor))
            if best is None or v > best:
                best = v
    return best


def wheel_glibc_floor(filename: str) -> tuple[int, int] | None:
    """The lowest glibc a wheel's manylinux tags accept (None: not a manylinux wheel)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    floors = []
    for t in tags:
        m = re.match(r"manylinux_(\d+)_(\d+)_", t.platform)
        if m:
            floors.append((int(m.group(1)), int(m.group(2))))
            continue
        for legacy, v in _LEGACY.items():
            if t.platform.startswith(legacy + "_"):
                floors.append(v)
    return min(floors) if floors else None


def glibc_floor(lock, platform: str) -> tuple[str | None, str | None]:
    """(X.Y, the package that sets it) over the lock's packages for platform."""
    from ..runtime.fetch import artifact_filename

    best: tuple[tuple[int, int], str] | None = None
    for pkg in lock.for_platform(platform):
        if pkg.manager == "conda":
            v = conda_glibc_floor(pkg.get("depends") or [])
        else:
            v = wheel_glibc_floor(artifact_filename(pkg))
        if v is not None and (best is None or v > best[0]):
            best = (v, f"{pkg.name} {pkg.version}")
    if best is None:
        return None, None
    return f"{best[0][0]}.{best[0][1]}", best[1]


def contract(lock, platform: str, target) -> str:
    """The org.mlenv.rebase label of an image of this lock (target: PyTarget or None)."""
    from ..installing import conda_python

    if lock.for_platform(platform, "apt"):
        return "no: Debian packages unpacked against the base's dpkg database"
    if target is not None and target.venv:
        return "no: venv on the base image's Python"
    if target is None and not lock.for_platform(platform, "conda"):
        return "no: nothing of the environment is self-contained"
    if target is not None and conda_python(lock, platform) is None:
        return "no: venv on the base image's Python"
    return REBASE_OK


def check_base(facts, floor: str | None, why: str | None) -> None:
    """Refuse a new base whose C library does not meet the floor."""
    if floor is None:
        return
    if facts.libc != "glibc" or not facts.glibc:
        what = "musl" if facts.libc == "musl" else "no C library mlenv can read"
        raise RebaseRefused(
            f"the new base has {what}, but {why} needs glibc >= {floor}",
            hint="rebase onto a glibc-based image, or rebuild with `mlenv build`",
        )
    have = tuple(int(x) for x in facts.glibc.split(".")[:2])
    need = tuple(int(x) for x in floor.split("."))
    if have < need:
        raise RebaseRefused(
            f"the new base's glibc {facts.glibc} is older than {floor}, which {why} needs",
            hint="pick a newer base image",
        )


def same_environment(old, new, platform: str) -> list[str]:
    """What differs between two locks apart from the base image (empty: rebase-able)."""
    out = []
    if sorted(p.key() for p in old.for_platform(platform)) != sorted(p.key() for p in new.for_platform(platform)):
        out.append("packages")
    if old.platform_python(platform) != new.platform_python(platform):
        out.append("python")
    if dict(old.variables) != dict(new.variables):
        out.append("variables")
    for key in ("apt-packages", "steps", "python"):
        if (old.image.get(key) or None) != (new.image.get(key) or None):
            out.append(f"[image] {key}")
    return out
