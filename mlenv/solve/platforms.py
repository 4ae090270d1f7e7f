"""Target platforms: conda subdirs, uv's --python-platform, wheel tags and the
virtual packages a solve may assume. Defaults follow pixi (glibc 2.28, macOS
13 / 11 on arm64); [system] overrides them, nothing is detected from the host."""

from __future__ import annotations

DEFAULT_GLIBC = "2.28"
DEFAULT_OSX = {"osx-64": "13.0", "osx-arm64": "13.0"}
DEFAULT_LINUX = "5.10"


def _major_minor(version: str) -> tuple[int, int]:
    """(major, minor) of a [system] version ("2.28", "11" is 11.0): the spec allows 1 to 4 parts."""
    parts = version.split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


_ARCH = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "osx-64": "x86_64", "osx-arm64": "arm64", "win-64": "AMD64"}


def python_platform(platform: str, *, glibc: str | None = None, osx: str | None = None) -> str:
    """uv's --python-platform for a conda subdir."""
    if platform in ("linux-64", "linux-aarch64"):
        major, minor = _major_minor(glibc or DEFAULT_GLIBC)
        arch = "x86_64" if platform == "linux-64" else "aarch64"
        return f"{arch}-manylinux_{major}_{minor}"
    if platform == "osx-64":
        return "x86_64-apple-darwin"
    if platform == "osx-arm64":
        return "aarch64-apple-darwin"
    if platform == "win-64":
        return "x86_64-pc-windows-msvc"
    raise ValueError(platform)


def wheel_tags(platform: str, python_version: str, *, glibc: str | None = None, osx: str | None = None) -> list:
    """Wheel tags a target accepts, most preferred first (packaging.tags order)."""
    from packaging import tags

    py = tuple(int(x) for x in python_version.split(".")[:2])
    arch = _ARCH[platform]
    plats: list[str] = []
    if platform.startswith("linux"):
        major, minor = _major_minor(glibc or DEFAULT_GLIBC)
        for m in range(minor, 16, -1):
            plats.append(f"manylinux_{major}_{m}_{arch}")
            if (major, m) == (2, 17):
                plats.append(f"manylinux2014_{arch}")
        for legacy, m in (("manylinux2010", 12), ("manylinux1", 5)):
            if minor >= m:
                plats.append(f"{legacy}_{arch}")
        plats.append(f"linux_{arch}")
    elif platform.startswith("osx"):
        plats = list(
            tags.mac_platforms(
                _major_minor(osx or DEFAULT_OSX[platform]), "arm64" if platform == "osx-arm64" else "x86_64"
            )
        )
    else:
        plats = ["win_amd64"]
    return list(tags.cpython_tags(py, platforms=plats)) + list(tags.compatible_tags(py, platforms=plats))


def virtual_packages(platform: str, system: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, version, build) virtual packages for a conda solve. CUDA is only
    assumed when [system] cuda says so, never guessed from the host."""
    out: list[tuple[str, str, str]] = []
    if platform.startswith("linux"):
        out.append(("__linux", system.get("linux", DEFAULT_LINUX), "0"))
        out.append(("__glibc", system.get("glibc", DEFAULT_GLIBC), "0"))
        out.append(("__unix", "0", "0"))
        out.append(("__archspec", "1", "x86_64" if platform == "linux-64" else "aarch64"))
    elif platform.startswith("osx"):
        out.append(("__osx", system.get("osx", DEFAULT_OSX[platform]), "0"))
        out.append(("__unix", "0", "0"))
        out.append(("__archspec", "1", "arm64" if platform == "osx-arm64" else "x86_64"))
    elif platform.startswith("win"):
        out.append(("__win", "0", "0"))
        out.append(("__archspec", "1", "x86_64"))
    if "cuda" in system and not platform.startswith("osx"):
        out.append(("__cuda", system["cuda"], "0"))
    return out
