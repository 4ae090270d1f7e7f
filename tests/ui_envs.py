"""Environments for the catalog and search tests: a spec and a *current* lock (no solve,
as test_registry_local.make_env does) with conda and PyPI packages on several
platforms, sizes and sources, so search, the package tables and the size chart have
something real to show. Registered with the real CLI (`mlenv register`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlenv
from mlenv.lockfile import Lock, Package
from mlenv.spec import inputs_of, load_spec

PYPI_INDEX = "https://pypi.org/simple"
CONDA_CHANNEL = "https://conda.anaconda.org/conda-forge"


def pkg(
    name: str, version: str, *, manager: str = "pypi", platform: str = "linux-64", size: int = 1_000_000, **extra
) -> Package:
    sha = hashlib.sha256(f"{platform}-{manager}-{name}-{version}".encode()).hexdigest()
    if manager == "pypi":
        url = f"https://files.pythonhosted.org/packages/{sha[:2]}/{name}-{version}-py3-none-any.whl"
        fields = {"size": size, "index": PYPI_INDEX}
    else:
        url = f"{CONDA_CHANNEL}/{platform}/{name}-{version}-h0_0.conda"
        fields = {"size": size, "channel": CONDA_CHANNEL, "build": "h0_0", "subdir": platform}
    fields.update(extra)
    return Package(manager, platform, name, version, url, sha, fields)


def make_rich_env(
    directory: Path,
    name: str,
    packages: list[Package],
    *,
    platforms=("linux-64",),
    variables: dict | None = None,
    description: str = "",
    system: dict | None = None,
    pypi_dependencies: list[str] | None = None,
    pypi_index_url: str | None = None,
    base: str = "python:3.11-slim-bookworm",
) -> tuple[bytes, bytes, str]:
    """mlenv.toml + a current mlenv.lock holding exactly `packages`. Returns (spec, lock, content hash)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "[environment]",
        f"name = {json.dumps(name)}",
        f"description = {json.dumps(description)}",
        'python = "3.11"',
        f"platforms = {json.dumps(list(platforms))}",
        "",
    ]
    conda_names = sorted({p.name for p in packages if p.manager == "conda"})
    if conda_names:  # the channel the conda packages come from is declared (mlenv.sources checks it)
        lines += ["[conda]", 'channels = ["conda-forge"]', f"dependencies = {json.dumps(conda_names)}", ""]
    if pypi_dependencies or pypi_index_url:
        lines += ["[pypi]", f"dependencies = {json.dumps(pypi_dependencies or [])}"]
        lines += [f"index-url = {json.dumps(pypi_index_url)}"] if pypi_index_url else []
        lines += [""]
    lines += ["[variables]"] + [f"{k} = {json.dumps(v)}" for k, v in sorted((variables or {}).items())] + [""]
    if system:
        lines += ["[system]"] + [f"{k} = {json.dumps(v)}" for k, v in sorted(system.items())] + [""]
    lines += ["[image]", f"base = {json.dumps(base)}", ""]
    (directory / "mlenv.toml").write_text("\n".join(lines))
    spec = load_spec(directory / "mlenv.toml")
    lock = Lock(
        spec_hash=spec.spec_hash(),
        python="3.11",
        platforms={p: {"python": "3.11"} for p in platforms},
        packages=packages,
        variables=dict(variables or {}),
        image={
            "base": spec.base_image,
            "reference": "docker.io/library/" + base,
            "apt-packages": [],
            "steps": [],
        },
        inputs=inputs_of(spec),
    ).seal()
    lock.write(directory / "mlenv.lock")
    return (directory / "mlenv.toml").read_bytes(), (directory / "mlenv.lock").read_bytes(), lock.content_hash


def register(directory: Path, registry: str, description: str | None = None) -> dict:
    """directory's spec and lock registered (no image), in-process; the record as `--json` prints it."""
    return mlenv.register(directory / "mlenv.toml", registry=registry, description=description, image=False).to_json()


def fraud_train(base: Path, registry: str, name: str = "fraud-train") -> None:
    """Two versions of one environment: 1 (numpy 1.26.4, urllib3 2.2.1, six 1.16.0, conda
    openssl 3.0.13) and 2 (numpy 2.0.1, urllib3 2.2.3, pandas added, six removed, openssl
    3.0.14, a variable changed, another base image); labelled prod -> 2, described.
    linux-64 and osx-arm64."""
    common = {"platforms": ("linux-64", "osx-arm64"), "pypi_dependencies": ["numpy", "urllib3", "scikit-learn"]}
    v1 = []
    v2 = []
    for plat in ("linux-64", "osx-arm64"):
        v1 += [
            pkg("numpy", "1.26.4", platform=plat, size=18_200_000),
            pkg("urllib3", "2.2.1", platform=plat, size=121_000),
            pkg("six", "1.16.0", platform=plat, size=11_000),
            pkg("scikit-learn", "1.5.1", platform=plat, size=13_300_000),
            pkg("openssl", "3.0.13", manager="conda", platform=plat, size=2_900_000),
            pkg(
                "pytorch",
                "2.5.1",
                manager="conda",
                platform=plat,
                size=60_000_000,
                noarch="",
                depends=["python >=3.11,<3.12"],
            ),
        ]
        v2 += [
            pkg("numpy", "2.0.1", platform=plat, size=19_500_000),
            pkg("urllib3", "2.2.3", platform=plat, size=126_000),
            pkg("scikit-learn", "1.5.2", platform=plat, size=13_400_000),
            pkg("pandas", "2.2.3", platform=plat, size=12_700_000),
            pkg("openssl", "3.0.14", manager="conda", platform=plat, size=2_950_000),
            pkg(
                "pytorch",
                "2.5.1",
                manager="conda",
                platform=plat,
                size=60_000_000,
                noarch="",
                depends=["python >=3.11,<3.12"],
            ),
        ]
    v2 = [p for p in v2 if not (p.platform == "osx-arm64" and p.name == "pandas")]  # a platform difference
    make_rich_env(base / "v1", name, v1, variables={"OMP_NUM_THREADS": "4"}, description="nightly retrain", **common)
    register(base / "v1", registry, description="first cut")
    make_rich_env(base / "v2", name, v2, variables={"OMP_NUM_THREADS": "8"}, description="nightly retrain",
                  base="python:3.11.9-slim-bookworm", **common)  # fmt: skip
    register(base / "v2", registry, description="numpy 2 and pandas")
    mlenv.label(f"{name}@2", "prod", registry=registry)
