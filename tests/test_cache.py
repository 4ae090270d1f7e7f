"""`mlenv cache info|prune|clean` on a private cache (XDG_CACHE_HOME), filled by real
commands against the fixture index: lock, then `build --dockerfile-only`, which fetches
the artifacts and makes the build-tool tars (no daemon needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlenv.lockfile import read_lock


def mlenv(*args, cwd, env):
    proc = subprocess.run(
        [sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}
    )
    assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def filled(tmp_path, pypi_server):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "mlenv.toml").write_text(
        '[environment]\nname = "cachetest"\npython = "3.11"\nplatforms = ["linux-64"]\n'
        f'[pypi]\nindex-url = "{pypi_server}"\ndependencies = ["fixbeta"]\n'
        '[image]\nbase = "python:3.11-slim"\npython = "/usr/bin/python3"\n'
    )
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "MLENV_BUILDER": "classic"}
    mlenv("lock", cwd=d, env=env)
    mlenv("build", "--dockerfile-only", str(tmp_path / "ctx"), cwd=d, env=env)
    return d, env, tmp_path / "cache" / "mlenv"


def info(d, env) -> dict:
    data = json.loads(mlenv("cache", "info", "--json", cwd=d, env=env).stdout)
    return {a["name"]: a for a in data["areas"]}


def age(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_info_prune_and_clean(filled):
    d, env, root = filled
    lock = read_lock(d / "mlenv.lock")
    areas = info(d, env)
    artifacts = root / "artifacts" / "sha256"
    assert areas["artifacts"]["files"] == len(lock.packages) == 2
    assert areas["artifacts"]["size"] == sum(p.stat().st_size for p in artifacts.iterdir())
    assert areas["build-tools"]["files"] == 2 and areas["build-tools"]["size"] > 1_000_000  # tar + sha256 (uv inside)
    text = mlenv("cache", "info", cwd=d, env=env).stdout
    assert str(root) in text and "artifacts" in text and "total" in text

    # one artifact and the tools unused for 40 days: a dry run names them, --yes removes them
    old = artifacts / lock.packages[0].sha256
    age(old, 40)
    for p in (root / "build-tools").iterdir():
        age(p, 40)
    dry = json.loads(mlenv("cache", "prune", "--json", cwd=d, env=env).stdout)
    assert dry["dry_run"] and dry["stale"]["artifacts"]["files"] == 1 and dry["stale"]["build-tools"]["files"] == 2
    assert old.exists() and dry["removed"]["files"] == 0
    assert "pass --yes" in mlenv("cache", "prune", cwd=d, env=env).stdout
    assert json.loads(mlenv("cache", "prune", "--older-than", "50", "--json", cwd=d, env=env).stdout)["stale"] == {}
    done = json.loads(mlenv("cache", "prune", "--yes", "--json", cwd=d, env=env).stdout)
    assert done["removed"]["files"] == 3 and not old.exists() and not list((root / "build-tools").iterdir())
    assert info(d, env)["artifacts"]["files"] == 1

    # using an entry marks it: aged, then reused by a build, then not stale
    (keep,) = artifacts.iterdir()
    age(keep, 40)
    mlenv("build", "--dockerfile-only", str(d / "ctx2"), cwd=d, env=env)
    assert old.exists()  # fetched again when needed
    stale = json.loads(mlenv("cache", "prune", "--json", cwd=d, env=env).stdout)["stale"]
    assert "artifacts" not in stale, stale

    assert "would remove" in mlenv("cache", "clean", cwd=d, env=env).stdout and root.exists()
    mlenv("cache", "clean", "--yes", cwd=d, env=env)
    assert not root.exists()


def test_tool_tars_are_shared_by_content_not_path(tmp_path, monkeypatch):
    from mlenv.image.context import _cached_tar

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    for d, when in ((a, 1_600_000_000), (b, 1_700_000_000)):
        d.mkdir()
        (d / "m.py").write_text("x = 1\n")
        (d / "big").write_bytes(b"\0" * (3 << 20) + b"end")
        for f in d.iterdir():
            os.utime(f, (when, when))
    one = _cached_tar("tools", [("lib/m.py", a / "m.py"), ("bin/big", a / "big")])
    two = _cached_tar("tools", [("lib/m.py", b / "m.py"), ("bin/big", b / "big")])
    assert one == two  # other paths, other mtimes, same bytes: one tar
    (b / "m.py").write_text("x = 2\n")
    three = _cached_tar("tools", [("lib/m.py", b / "m.py"), ("bin/big", b / "big")])
    assert three[0] != one[0] and three[1] != one[1]
