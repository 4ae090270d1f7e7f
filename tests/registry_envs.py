"""Environments to register without solving (a spec and a current lock of made-up
packages), and many registers at once: shared by the registry, UI and security tests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mlenv.lockfile import Lock, Package
from mlenv.locking import inputs_of
from mlenv.spec import load_spec


def make_env(
    directory: Path, *, name="demo", variables: dict | None = None, packages: dict | None = None, description: str = ""
) -> tuple[bytes, bytes, str]:
    """Write mlenv.toml and a *current* mlenv.lock (no solve: the packages are
    made up, the spec hash matches) into directory. Returns (spec, lock, content hash)."""
    directory.mkdir(parents=True, exist_ok=True)
    variables = variables or {}
    var_lines = "".join(f'{k} = "{v}"\n' for k, v in sorted(variables.items()))
    text = (
        textwrap.dedent(f"""\
        [environment]
        name = "{name}"
        description = "{description}"
        python = "3.11"
        platforms = ["linux-64"]

        [variables]
        """)
        + var_lines
        + '\n[image]\nbase = "python:3.11-slim-bookworm"\n'
    )
    (directory / "mlenv.toml").write_text(text)
    spec = load_spec(directory / "mlenv.toml")
    pkgs = [
        Package(
            "pypi",
            "linux-64",
            pkg,
            ver,
            f"https://files.pythonhosted.org/packages/{pkg}-{ver}-py3-none-any.whl",
            hashlib.sha256(f"{pkg}-{ver}".encode()).hexdigest(),
            {"size": 100},
        )
        for pkg, ver in sorted((packages or {}).items())
    ]
    lock = Lock(
        spec_hash=spec.spec_hash(),
        python="3.11",
        platforms={"linux-64": {"python": "3.11"}},
        packages=pkgs,
        variables=dict(variables),
        image={
            "base": spec.base_image,
            "reference": "docker.io/library/python:3.11-slim-bookworm",
            "apt-packages": [],
            "steps": [],
        },
        inputs=inputs_of(spec),
    ).seal()
    lock.write(directory / "mlenv.lock")
    return (directory / "mlenv.toml").read_bytes(), (directory / "mlenv.lock").read_bytes(), lock.content_hash


def register_all(dirs, registry: str) -> list[dict]:
    """`mlenv register --json --no-image` in every directory at once (one process each)."""
    env = dict(os.environ, MLENV_REGISTRY=registry)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mlenv.cli", "register", "--json", "--no-image"],
            cwd=d,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in dirs
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return results


def fake(n: int) -> tuple[bytes, bytes, str]:
    spec = f"spec {n}\n".encode()
    lock = f"lock {n}\n".encode()
    return spec, lock, "sha256:" + hashlib.sha256(lock).hexdigest()
