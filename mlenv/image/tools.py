"""The target's own uv (and py-rattler) wheels, for install steps that cannot run
this host's: a linux-aarch64 target, a macOS or Windows host (Docker Desktop), or
MLENV_BUILD_TOOLS=pypi.

The host resolves the wheel of the same version as its own uv / py-rattler that the
target's tags select, from PyPI's simple JSON API (PEP 691; through the CA bundle, like every
download), downloads it into the content-addressed artifact cache (sha256 from
PyPI, checked while streaming) and the artifact server serves it as /a/<sha256>. The
install step unzips it into its scratch directory. So an install step needs no pip
in the base image and no network, whatever the host. A choice is remembered in
<user cache>/mlenv/build-tools/wheel-<name>-<version>-<platform>-py<X.Y>.json.
"""

from __future__ import annotations

import json
import os
import re
import sys

from ..errors import MlenvError
from ..lockfile import Package

PYPI_SIMPLE_JSON = "https://pypi.org/simple/{name}/"  # PEP 691


def host_tools_run_in(platform: str) -> bool:
    """Can this installation's uv (and py-rattler) run in the image? A linux-64 target
    built from an x86_64 Linux host, unless MLENV_BUILD_TOOLS=pypi."""
    import platform as _platform

    if os.environ.get("MLENV_BUILD_TOOLS", "host") == "pypi":
        return False
    return platform == "linux-64" and sys.platform.startswith("linux") and _platform.machine() in ("x86_64", "AMD64")


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _choose(name: str, version: str, platform: str, python: str, glibc: str | None, ca_bundle: str | None) -> dict:
    from packaging.utils import parse_wheel_filename

    from ..runtime.fetch import default_cache_root, ssl_context
    from ..runtime.secrets import scrub
    from ..solve.platforms import wheel_tags

    if not re.fullmatch(r"[0-9]{1,3}\.[0-9]{1,3}", python, re.ASCII) or not re.fullmatch(r"[a-z0-9_-]{1,40}", platform):
        raise MlenvError(f"the lock's Python {python!r} / platform {platform!r} cannot name a build tool",
                         hint="re-lock from a trusted spec")  # fmt: skip
    cache = default_cache_root() / "build-tools" / f"wheel-{name}-{version}-{platform}-py{python}.json"
    try:
        cached = json.loads(cache.read_text())
        if isinstance(cached, dict) and _from_pypi(cached.get("url")):
            return cached
    except (OSError, ValueError):
        pass
    import urllib.request

    url = PYPI_SIMPLE_JSON.format(name=name)
    headers = {"User-Agent": "mlenv", "Accept": "application/vnd.pypi.simple.v1+json"}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=60, context=ssl_context(ca_bundle)
        ) as resp:
            files = json.load(resp)["files"]
    except Exception as exc:  # URLError, HTTPError, SSL errors, bad JSON
        hint = (
            "a TLS-intercepting proxy? pass --ca-bundle FILE (or the ca-bundle setting)"
            if "CERTIFICATE" in str(exc).upper()
            else None
        )
        raise MlenvError(
            f"could not look up the {platform} wheel of {name} {version} (the image's install tool) at {url}: {exc}",
            hint=hint,
        ) from None
    rank = {t: i for i, t in enumerate(wheel_tags(platform, python, glibc=glibc))}
    best = None
    for f in files:
        if not f["filename"].endswith(".whl") or not (f.get("hashes") or {}).get("sha256") or f.get("yanked"):
            continue
        _, wheel_version, _, tags = parse_wheel_filename(f["filename"])
        if str(wheel_version) != version:
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, f)
    if best is None:
        raise MlenvError(
            f"{name} {version} has no wheel for {platform} (Python {python}) on PyPI",
            hint="build this image from a linux-64 (x86_64 Linux) host, or pin another mlenv/uv version",
        )
    f = best[1]
    from urllib.parse import urljoin

    choice = {
        "filename": f["filename"],
        "url": urljoin(url, f["url"]),
        "sha256": f["hashes"]["sha256"],
        "size": f.get("size", 0),
    }
    if not _from_pypi(choice["url"]):  # the JSON is a remote document: its URL obeys the sources rule
        raise MlenvError(f"PyPI's page for {name} links {scrub(str(choice['url']))[:200]}, which is not PyPI's file host",
                         hint="check the network path to pypi.org (a proxy rewriting pages?)")  # fmt: skip
    from ..runtime.fsutil import atomic_write

    atomic_write(cache, json.dumps(choice, sort_keys=True) + "\n")
    return choice


def _from_pypi(url) -> bool:
    """A URL on PyPI's own hosts (mlenv.sources: the default index and its file host)."""
    from ..sources import DEFAULT_INDEX, index_sources, matches, url_problem

    return (
        isinstance(url, str) and url_problem(url) is None and any(matches(url, s) for s in index_sources(DEFAULT_INDEX))
    )


def tool_wheels(plan, lock, *, ca_bundle: str | None = None) -> list[Package]:
    """The wheels the plan's install steps unzip (uv; py-rattler when the lock has conda
    packages); fills plan.uv_wheel_sha / plan.rattler_wheel_sha."""
    python = (lock.platforms.get(plan.platform) or {}).get("python") or lock.python or "3.11"
    python = ".".join(str(python).split(".")[:2])
    glibc = (lock.inputs.get("system") or {}).get("glibc")
    out = []
    for name in ["uv"] + (["py-rattler"] if plan.has_conda else []):  # distribution name = PyPI project name
        version = _version(name)
        c = _choose(name, version, plan.platform, python, glibc, ca_bundle)
        out.append(Package("pypi", plan.platform, name, version, c["url"], c["sha256"], {"size": c["size"]}))
    plan.uv_wheel_sha = out[0].sha256
    plan.rattler_wheel_sha = out[1].sha256 if len(out) > 1 else ""
    return out
