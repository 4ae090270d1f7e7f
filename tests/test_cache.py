"""mlenv's host caches (mlenv.cache: info, prune, clean) on a private cache
(XDG_CACHE_HOME), filled by real API calls against the fixture index: lock, then
build with dockerfile_only, which fetches the artifacts and makes the build-tool tars
(no daemon needed); one test runs `mlenv cache info|prune|clean` for what they print."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cli_run import mlenv as cli

import mlenv
from mlenv.lockfile import read_lock


@pytest.fixture
def filled(tmp_path, pypi_server, monkeypatch):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "mlenv.toml").write_text(
        '[environment]\nname = "cachetest"\npython = "3.11"\nplatforms = ["linux-64"]\n'
        f'[pypi]\nindex-url = "{pypi_server}"\ndependencies = ["fixbeta"]\n'
        '[image]\nbase = "python:3.11-slim"\npython = "/usr/bin/python3"\n'
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlenv.lock(d)
    rendered = mlenv.build(d, builder="classic", dockerfile_only=tmp_path / "ctx")
    assert rendered.action == "rendered"
    return d, tmp_path / "cache" / "mlenv"


def info() -> dict:
    return {a.name: a for a in mlenv.cache.scan()}


def age(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_info_prune_and_clean(filled):
    d, root = filled
    assert mlenv.cache.cache_root() == root
    lock = read_lock(d / "mlenv.lock")
    areas = info()
    artifacts = root / "artifacts" / "sha256"
    assert areas["artifacts"].files == len(lock.packages) == 2
    assert areas["artifacts"].size == sum(p.stat().st_size for p in artifacts.iterdir())
    assert areas["build-tools"].files == 2 and areas["build-tools"].size > 1_000_000  # tar + sha256 (uv inside)

    # one artifact and the tools unused for 40 days: a dry run names them, yes=True removes them
    old = artifacts / lock.packages[0].sha256
    age(old, 40)
    for p in (root / "build-tools").iterdir():
        age(p, 40)
    dry = mlenv.cache.prune_unused()
    assert dry.older_than_days == 30
    assert dry.dry_run and dry.stale["artifacts"]["files"] == 1 and dry.stale["build-tools"]["files"] == 2
    assert old.exists() and dry.removed_files == 0
    assert mlenv.cache.prune_unused(50).stale == {}
    done = mlenv.cache.prune_unused(yes=True)
    assert not done.dry_run
    assert done.removed_files == 3 and not old.exists() and not list((root / "build-tools").iterdir())
    assert info()["artifacts"].files == 1

    # using an entry marks it: aged, then reused by a build, then not stale
    (keep,) = artifacts.iterdir()
    age(keep, 40)
    mlenv.build(d, builder="classic", dockerfile_only=d / "ctx2")
    assert old.exists()  # fetched again when needed
    stale = mlenv.cache.prune_unused().stale
    assert "artifacts" not in stale, stale

    where, total, removed = mlenv.cache.clean_all()  # a dry run
    assert (where, removed) == (root, 0) and total == sum(a.size for a in info().values()) > 0 and root.exists()
    where, total, removed = mlenv.cache.clean_all(yes=True)
    assert where == root and removed == total > 0
    assert not root.exists()


def test_cli_cache_commands_print_and_json(filled):
    """`mlenv cache info|prune|clean`: --json carries the API's numbers, the text says what
    would go and how to make it go."""
    d, root = filled
    info_json = json.loads(cli("cache", "info", "--json", cwd=d, check=True).stdout)
    assert info_json["root"] == str(root)
    assert {a["name"]: (a["files"], a["size"]) for a in info_json["areas"]} == {
        a.name: (a.files, a.size) for a in mlenv.cache.scan()
    }
    text = cli("cache", "info", cwd=d, check=True).stdout
    assert str(root) in text and "artifacts" in text and "total" in text

    assert "nothing unused for 30 days" in cli("cache", "prune", cwd=d, check=True).stdout
    old = next((root / "artifacts" / "sha256").iterdir())
    age(old, 40)
    assert "pass --yes" in cli("cache", "prune", cwd=d, check=True).stdout and old.exists()
    assert json.loads(cli("cache", "prune", "--json", cwd=d, check=True).stdout) == mlenv.cache.prune_unused().to_json()
    done = json.loads(cli("cache", "prune", "--yes", "--json", cwd=d, check=True).stdout)
    assert done["removed"]["files"] == 1 and not old.exists()

    assert "would remove" in cli("cache", "clean", cwd=d, check=True).stdout and root.exists()
    assert "removed" in cli("cache", "clean", "--yes", cwd=d, check=True).stdout
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
