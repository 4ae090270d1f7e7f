"""Locking with real solvers: uv against a local PEP 503 index (and PyPI, marked
network), rattler against a local conda channel. The library is called in-process
(`mlenv.lock`, `mlenv.check`, `mlenv.content_hash`); the tests whose subject is the
`mlenv lock` / `mlenv hash` command itself (what it prints, --json, exit codes, the
console script's fast path and exit, SIGKILL) run it as a subprocess."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_run import mlenv as run_cli
from fresh_imports import imported_by, roots
from refusals import mlenv_error
from solve_api import Said

import mlenv
from mlenv.errors import LockError, SolveError, SpecError
from mlenv.lockfile import read_lock

ROOT = Path(__file__).resolve().parents[2]


def write_spec(
    directory: Path,
    body: str,
    *,
    name="demo",
    python='"3.11"',
    platforms='["linux-64"]',
    base='"python:3.11-slim-bookworm"',
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = f'[environment]\nname = "{name}"\npython = {python}\nplatforms = {platforms}\n\n' + textwrap.dedent(body)
    if "[image]" not in text:
        text += f"\n[image]\nbase = {base}\n"
    path = directory / "mlenv.toml"
    path.write_text(text)
    return path


def pypi_spec(index: str, deps: list[str]) -> str:
    return f'[pypi]\nindex-url = "{index}"\ndependencies = {json.dumps(deps)}\n'


def pins(lock, platform="linux-64", manager=None):
    return {p.name: p.version for p in lock.for_platform(platform, manager)}


# --- PyPI via uv, local index ---------------------------------------------------------


def test_lock_resolves_local_index_with_urls_and_hashes(tmp_path, pypi_server, pypi_index_path):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixbeta"]))
    outcome = mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert outcome.action == "solved" and outcome.changed and outcome.path == tmp_path / "mlenv.lock"
    assert pins(lock) == {"fixalpha": "1.1.0", "fixbeta": "1.0.0"}
    assert outcome.content_hash == lock.content_hash and outcome.short_hash == lock.short_hash
    files = pypi_index_path.parent / "files"
    for pkg in lock.packages:
        filename = pkg.url.rsplit("/", 1)[-1]
        assert pkg.url.startswith("http://127.0.0.1:")
        assert hashlib.sha256((files / filename).read_bytes()).hexdigest() == pkg.sha256


def test_per_platform_artifacts(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixplat"]), platforms='["linux-64", "osx-arm64"]')
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    linux = lock.for_platform("linux-64")[0]
    mac = lock.for_platform("osx-arm64")[0]
    assert "manylinux" in linux.url and "macosx" in mac.url
    assert linux.sha256 != mac.sha256


def test_same_packages_same_hash_whatever_the_name_and_order(tmp_path, pypi_server):
    a = tmp_path / "a"
    b = tmp_path / "b"
    write_spec(a, pypi_spec(pypi_server, ["fixbeta", "fixalpha>=1"]), name="first")
    write_spec(
        b, "# another team's spec\n" + pypi_spec(pypi_server, ["fixalpha>=1.0", "fixbeta==1.0.0"]), name="second"
    )
    mlenv.lock(a)
    mlenv.lock(b)
    la, lb = read_lock(a / "mlenv.lock"), read_lock(b / "mlenv.lock")
    assert la.spec_hash != lb.spec_hash
    assert la.content_hash == lb.content_hash


def test_noop_lock_is_fast_and_writes_nothing(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixbeta"]))
    mlenv.lock(tmp_path)
    lock_path = tmp_path / "mlenv.lock"
    stat = lock_path.stat()
    n = len(pypi_server.requests)
    again = mlenv.lock(tmp_path)
    assert again.action == "fresh" and not again.changed and not again.warnings
    assert lock_path.stat().st_mtime_ns == stat.st_mtime_ns
    assert len(pypi_server.requests) == n
    # the console script's fast path (the subject here: a fresh interpreter) says so, writes nothing,
    # and imports neither rattler, uv, packaging nor rich
    new, err = imported_by("import mlenv.cli.main as c; c.main(['lock'])", tmp_path)
    heavy = {"rattler", "packaging", "rich", "requests", "tomlkit", "docker"}
    assert not heavy & roots(new), (sorted(heavy & roots(new)), err)
    # nor what only other paths need: the other results' dataclasses, the solver's orchestration, the
    # moving-sources checks of a lock without local or git packages, `signal`'s enums and OpenSSL (each 1-5 ms)
    avoidable = {"mlenv.api.results", "mlenv.locking", "mlenv.solve.moved", "signal", "tempfile", "shutil", "hashlib"}
    assert not avoidable & new, sorted(avoidable & new)
    assert "is up to date" in err
    assert lock_path.stat().st_mtime_ns == stat.st_mtime_ns


def test_satisfied_change_rewrites_without_solving(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha>=1,<2"]))
    mlenv.lock(tmp_path)
    before = read_lock(tmp_path / "mlenv.lock")
    assert pins(before) == {"fixalpha": "1.1.0"}
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha>=1.1,<2"]))
    checked = mlenv.check(tmp_path)
    assert checked.ok and checked.state == "satisfied"  # still satisfied: pixi's rule
    n = len(pypi_server.requests)
    outcome = mlenv.lock(tmp_path)
    assert outcome.action == "rewritten" and outcome.changed
    assert len(pypi_server.requests) == n, "a satisfied lock must not hit the index"
    after = read_lock(tmp_path / "mlenv.lock")
    assert after.content_hash == before.content_hash and after.spec_hash != before.spec_hash


def test_check_reports_stale_and_writes_nothing(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    mlenv.lock(tmp_path)
    original = (tmp_path / "mlenv.lock").read_bytes()
    assert mlenv.check(tmp_path).ok
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha", "fixbeta"]))
    res = mlenv.check(tmp_path)
    assert not res.ok and res.state == "stale"
    assert any("'fixbeta' is not in the lock" in r for r in res.reasons), res.reasons
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha<1.1"]))
    res = mlenv.check(tmp_path)
    assert not res.ok and any("is not satisfied (2.0.0 is locked)" in r for r in res.reasons), res.reasons
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]) + '[variables]\nX = "1"\n')
    assert not mlenv.check(tmp_path).ok  # content would change
    assert (tmp_path / "mlenv.lock").read_bytes() == original
    (tmp_path / "mlenv.lock").unlink()
    res = mlenv.check(tmp_path)
    assert not res.ok and res.state == "missing"


def test_relock_keeps_pins_until_upgrade_package(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha<1.1", "fixnum", "numpy<2"]))
    mlenv.lock(tmp_path)
    assert pins(read_lock(tmp_path / "mlenv.lock")) == {"fixalpha": "1.0.0", "fixnum": "1.0.0", "numpy": "1.26.4"}
    # a re-solve (numpy left the spec) prefers what was locked
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha", "fixnum"]))
    mlenv.lock(tmp_path)
    assert pins(read_lock(tmp_path / "mlenv.lock")) == {"fixalpha": "1.0.0", "fixnum": "1.0.0", "numpy": "1.26.4"}
    mlenv.lock(tmp_path, upgrade_packages=["fixalpha"])
    assert pins(read_lock(tmp_path / "mlenv.lock")) == {"fixalpha": "2.0.0", "fixnum": "1.0.0", "numpy": "1.26.4"}
    mlenv.lock(tmp_path, upgrade=True)
    assert pins(read_lock(tmp_path / "mlenv.lock"))["numpy"] == "2.0.0"


def test_removed_dependency_is_stale_and_dropped(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha", "fixbeta"]))
    mlenv.lock(tmp_path)
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    res = mlenv.check(tmp_path)
    assert not res.ok and any("fixbeta was removed" in r for r in res.reasons), res.reasons
    mlenv.lock(tmp_path)
    assert "fixbeta" not in pins(read_lock(tmp_path / "mlenv.lock"))


def test_unsatisfiable_pypi_explains_and_keeps_old_lock(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    mlenv.lock(tmp_path)
    original = (tmp_path / "mlenv.lock").read_bytes()
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha>=1", "fixconflict"]))
    with mlenv_error(SolveError) as e:
        mlenv.lock(tmp_path)
    assert "PyPI resolution failed for linux-64" in str(e.value)
    assert "fixconflict" in str(e.value) and "unsatisfiable" in str(e.value).lower()
    assert (tmp_path / "mlenv.lock").read_bytes() == original
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unknown_pypi_package(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["no-such-package-xyz"]))
    with mlenv_error(SolveError) as e:
        mlenv.lock(tmp_path)
    assert "no-such-package-xyz" in str(e.value) and "not found" in str(e.value)
    assert not (tmp_path / "mlenv.lock").exists()


def test_network_failure_names_the_url(tmp_path):
    write_spec(tmp_path, pypi_spec("http://127.0.0.1:9/simple", ["fixalpha"]))
    with mlenv_error() as e:
        mlenv.lock(tmp_path)
    assert "http://127.0.0.1:9/simple" in str(e.value)


def test_index_credentials_work_and_never_reach_the_lock(tmp_path, pypi_auth_server, monkeypatch):
    url = pypi_auth_server.url.replace("http://", "http://${IDX_USER}:${IDX_PASS}@")
    write_spec(tmp_path, pypi_spec(url, ["fixbeta"]))
    monkeypatch.setenv("IDX_USER", pypi_auth_server.username)
    monkeypatch.setenv("IDX_PASS", pypi_auth_server.password)
    said = Said()
    outcome = mlenv.lock(tmp_path, progress=said, on_warning=said)
    text = (tmp_path / "mlenv.lock").read_text()
    assert pins(read_lock(tmp_path / "mlenv.lock")) == {"fixalpha": "1.1.0", "fixbeta": "1.0.0"}
    reported = said.text + "\n".join(outcome.warnings) + json.dumps(outcome.to_json())
    assert said.lines  # progress was reported (and is checked below)
    for secret in (pypi_auth_server.password, pypi_auth_server.username):
        assert secret not in text and secret not in reported
    # literal credentials in the spec are refused (issue 9), without echoing them
    literal = pypi_auth_server.url.replace(
        "http://", f"http://{pypi_auth_server.username}:{pypi_auth_server.password}@"
    )
    write_spec(tmp_path / "lit", pypi_spec(literal, ["fixalpha"]))
    with mlenv_error(SpecError) as e:
        mlenv.lock(tmp_path / "lit")
    assert "literal credential" in str(e.value) and "${" in str(e.value)
    assert pypi_auth_server.password not in str(e.value) and not (tmp_path / "lit" / "mlenv.lock").exists()
    # without credentials the index refuses, and the error carries no secret
    write_spec(tmp_path / "noauth", pypi_spec(pypi_auth_server.url, ["fixalpha"]))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "fresh-cache"))
    said = Said()
    with mlenv_error() as e:
        mlenv.lock(tmp_path / "noauth", progress=said, on_warning=said)
    assert pypi_auth_server.password not in str(e.value) + said.text


def test_missing_env_var_for_index_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN_XYZ", raising=False)
    write_spec(tmp_path, pypi_spec("https://${NOPE_TOKEN_XYZ}@pypi.example/simple", ["fixalpha"]))
    with mlenv_error() as e:
        mlenv.lock(tmp_path)
    assert "NOPE_TOKEN_XYZ is not set" in str(e.value)


def test_json_summary(tmp_path, pypi_server):
    """The --json output of `mlenv lock` (its shape is the CLI's contract)."""
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixbeta"]), platforms='["linux-64", "osx-arm64"]')
    proc = run_cli("lock", "--json", cwd=tmp_path, check=True)
    data = json.loads(proc.stdout)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert data["content_hash"] == lock.content_hash and data["short_hash"] == lock.short_hash
    assert data["action"] == "solved"
    assert data["platforms"]["osx-arm64"] == {"python": "3.11", "conda": 0, "pypi": 2}
    again = json.loads(run_cli("lock", "--json", cwd=tmp_path, check=True).stdout)
    assert again["action"] == "fresh" and again["content_hash"] == lock.content_hash


def test_cli_lock_prints_hashes_and_check_exits_1_when_stale(tmp_path, pypi_server):
    """What `mlenv lock` prints, and `--check`'s exit codes (0 current, 1 stale, with the
    reasons and a hint on stderr; 2 for an error, one line, no traceback)."""
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha>=1,<2"]))
    proc = run_cli("lock", cwd=tmp_path, check=True)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert proc.stdout.startswith("Locked demo -> mlenv.lock (linux-64: 0 conda + 1 pypi)")
    assert lock.short_hash in proc.stdout and lock.content_hash in proc.stdout
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha>=1.1,<2"]))
    proc = run_cli("lock", "--check", cwd=tmp_path)
    assert proc.returncode == 0 and f"(content hash {lock.short_hash})" in proc.stderr
    assert "Updated" in run_cli("lock", cwd=tmp_path, check=True).stdout
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha", "fixbeta"]))
    proc = run_cli("lock", "--check", cwd=tmp_path)
    assert proc.returncode == 1
    assert "stale" in proc.stderr and "'fixbeta' is not in the lock" in proc.stderr and "hint:" in proc.stderr
    write_spec(tmp_path, pypi_spec(pypi_server, ["no-such-package-xyz"]))
    proc = run_cli("lock", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no-such-package-xyz" in errors[0], proc.stderr


def test_hash_verifies_the_lock(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    got = mlenv.content_hash(spec=tmp_path)
    assert (got.content_hash, got.short_hash) == (lock.content_hash, lock.short_hash)
    assert mlenv.content_hash(tmp_path / "mlenv.lock").content_hash == lock.content_hash
    path = tmp_path / "mlenv.lock"
    path.write_text(path.read_text().replace(lock.packages[0].sha256, "0" * 64))
    with mlenv_error(LockError) as e:
        mlenv.content_hash(spec=tmp_path)
    assert "content hash mismatch" in str(e.value)


def test_hash_command(tmp_path, pypi_server):
    """What `mlenv hash` prints, and its error (one line, exit 2)."""
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert run_cli("hash", "--short", cwd=tmp_path, check=True).stdout.strip() == lock.short_hash
    assert run_cli("hash", cwd=tmp_path, check=True).stdout.splitlines()[0] == lock.content_hash
    path = tmp_path / "mlenv.lock"
    path.write_text(path.read_text().replace(lock.packages[0].sha256, "0" * 64))
    proc = run_cli("hash", cwd=tmp_path)
    assert proc.returncode == 2 and "content hash mismatch" in proc.stderr and "Traceback" not in proc.stderr


def test_platform_option_resolves_only_that_platform(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha<1.1"]), platforms='["linux-64", "osx-arm64"]')
    mlenv.lock(tmp_path)
    with mlenv_error() as e:
        mlenv.lock(tmp_path, platforms=["win-64"])
    assert "not one of the spec's platforms" in str(e.value)
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]), platforms='["linux-64", "osx-arm64"]')
    mlenv.lock(tmp_path, platforms=["osx-arm64"], upgrade=True)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert pins(lock, "osx-arm64") == {"fixalpha": "2.0.0"}
    assert pins(lock, "linux-64") == {"fixalpha": "1.0.0"}


def test_failed_write_leaves_previous_lock(tmp_path, monkeypatch):
    from mlenv.runtime import fsutil

    path = tmp_path / "mlenv.lock"
    path.write_bytes(b"previous")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError):
        fsutil.atomic_write(path, "new content")
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["mlenv.lock"]


def test_interrupted_lock_leaves_previous_lock(tmp_path, pypi_server):
    """SIGKILL while mlenv is resolving: the previous lock is untouched (a process to kill: the CLI)."""
    import signal

    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    mlenv.lock(tmp_path)
    original = (tmp_path / "mlenv.lock").read_bytes()
    write_spec(
        tmp_path,
        pypi_spec(pypi_server, ["fixalpha", "fixbeta", "fixnum"]),
        platforms='["linux-64", "osx-arm64", "win-64"]',
    )
    for delay in (0.15, 0.3, 0.45):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlenv.cli", "lock", "-q"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        current = (tmp_path / "mlenv.lock").read_bytes()
        assert current == original or read_lock(tmp_path / "mlenv.lock").packages  # old, or a complete new one
        if current != original:
            break


# --- conda via rattler, local channel ---------------------------------------------------


def conda_spec(channel: str, deps: list[str], extra: str = "") -> str:
    return f'[conda]\nchannels = ["{channel}"]\ndependencies = {json.dumps(deps)}\n{extra}'


def test_conda_lock_records_md5_sha256_and_urls(tmp_path, conda_channel):
    write_spec(
        tmp_path,
        conda_spec(conda_channel, ["mlenv-hello"]),
        python='"3.11"',
        platforms='["linux-64", "osx-arm64"]',
        base='"debian:bookworm-slim"',
    )
    mlenv.lock(tmp_path, offline=True)
    lock = read_lock(tmp_path / "mlenv.lock")
    for plat in ("linux-64", "osx-arm64"):
        got = pins(lock, plat, "conda")
        assert got["mlenv-hello"] == "1.0.0" and got["python"] == "3.11.9" and "libfix" in got
        assert lock.platforms[plat]["python"] == "3.11.9"
    for pkg in lock.packages:
        local = Path(pkg.url.removeprefix("file://"))
        data = local.read_bytes()
        assert hashlib.sha256(data).hexdigest() == pkg.sha256
        assert hashlib.md5(data).hexdigest() == pkg.get("md5")
        assert pkg.get("subdir") in ("linux-64", "osx-arm64", "noarch")


def test_conda_virtual_packages_come_only_from_system(tmp_path, conda_channel):
    write_spec(tmp_path, conda_spec(conda_channel, ["fixcuda"]), base='"debian:bookworm-slim"')
    with mlenv_error(SolveError) as e:
        mlenv.lock(tmp_path)
    assert "cannot be solved" in str(e.value) and "__cuda" in str(e.value)
    write_spec(
        tmp_path, conda_spec(conda_channel, ["fixcuda"], '\n[system]\ncuda = "12.4"\n'), base='"debian:bookworm-slim"'
    )
    mlenv.lock(tmp_path)
    assert "fixcuda" in pins(read_lock(tmp_path / "mlenv.lock"))
    write_spec(
        tmp_path, conda_spec(conda_channel, ["fixcuda"], '\n[system]\ncuda = "11.8"\n'), base='"debian:bookworm-slim"'
    )
    with mlenv_error(SolveError):
        mlenv.lock(tmp_path)


def test_conda_conflict_prints_solver_explanation(tmp_path, conda_channel):
    write_spec(tmp_path, conda_spec(conda_channel, ["conflict-a", "conflict-b"]), base='"debian:bookworm-slim"')
    with mlenv_error(SolveError) as e:
        mlenv.lock(tmp_path)
    assert "cannot be solved" in str(e.value) and "conflict-a" in str(e.value) and "libfix" in str(e.value)
    assert not (tmp_path / "mlenv.lock").exists()


def test_conda_unknown_package(tmp_path, conda_channel):
    write_spec(tmp_path, conda_spec(conda_channel, ["no-such-conda-pkg"]), base='"debian:bookworm-slim"')
    with mlenv_error(SolveError) as e:
        mlenv.lock(tmp_path)
    assert "no-such-conda-pkg" in str(e.value)


def test_conda_missing_channel_names_it(tmp_path):
    write_spec(tmp_path, conda_spec("file:///nonexistent/channel", ["numpy"]), base='"debian:bookworm-slim"')
    with mlenv_error() as e:
        mlenv.lock(tmp_path)
    assert "nonexistent/channel" in str(e.value)


def test_conda_python_and_numpy_with_pypi_package_no_second_numpy(tmp_path, conda_channel, pypi_server):
    """The combined case: conda provides python and numpy; PyPI's fixnum needs numpy.
    numpy is a constraint on the PyPI resolution, and is installed once, from conda."""
    body = conda_spec(conda_channel, ["python 3.11.*", "numpy 1.26.*"]) + "\n" + pypi_spec(pypi_server, ["fixnum"])
    write_spec(tmp_path, body, base='"debian:bookworm-slim"')
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert pins(lock, manager="conda")["numpy"] == "1.26.4"
    assert pins(lock, manager="pypi") == {"fixnum": "1.0.0"}
    assert lock.platforms["linux-64"]["python"] == "3.11.9"
    # conda numpy 2.0.0 makes PyPI resolution use numpy 2.0.0 as well (still only one numpy)
    body = conda_spec(conda_channel, ["python 3.11.*", "numpy 2.*"]) + "\n" + pypi_spec(pypi_server, ["fixnum"])
    write_spec(tmp_path, body, base='"debian:bookworm-slim"')
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    assert pins(lock, manager="conda")["numpy"] == "2.0.0"
    assert "numpy" not in pins(lock, manager="pypi")


def test_conda_relock_prefers_locked_versions(tmp_path, conda_channel):
    write_spec(tmp_path, conda_spec(conda_channel, ["libfix 1.0.*"]), base='"debian:bookworm-slim"')
    mlenv.lock(tmp_path)
    write_spec(tmp_path, conda_spec(conda_channel, ["libfix", "mlenv-hello"]), base='"debian:bookworm-slim"')
    mlenv.lock(tmp_path)
    assert pins(read_lock(tmp_path / "mlenv.lock"))["libfix"] == "1.0.0"
    mlenv.lock(tmp_path, upgrade_packages=["libfix"])
    assert pins(read_lock(tmp_path / "mlenv.lock"))["libfix"] == "2.0.0"


# --- base image digest ---------------------------------------------------------------------


def test_base_image_pinned_to_registry_digest(tmp_path, pypi_server, base_image_remote, test_registry):
    import requests

    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]), base=f'"{base_image_remote}"')
    outcome = mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    repo, tag = base_image_remote.split("/", 1)[1].rsplit(":", 1)
    head = requests.head(
        f"http://{test_registry}/v2/{repo}/manifests/{tag}",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    assert lock.image["digest"] == head.headers["Docker-Content-Digest"]
    assert lock.image["reference"] == f"{test_registry}/{repo}@{lock.image['digest']}"
    assert outcome.warnings == []


def test_unreachable_base_image_registry_warns_and_records_tag(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]), base='"127.0.0.1:9/some/image:1.0"')
    warned = Said()
    outcome = mlenv.lock(tmp_path, on_warning=warned)
    assert any(w.startswith("base image 127.0.0.1:9/some/image:1.0 is not pinned to a digest") for w in warned.lines)
    assert outcome.warnings == warned.lines
    lock = read_lock(tmp_path / "mlenv.lock")
    assert "digest" not in lock.image and lock.image["reference"] == "127.0.0.1:9/some/image:1.0"


def test_offline_never_touches_the_network(tmp_path, pypi_server, monkeypatch):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]), base='"127.0.0.1:9/some/image:1.0"')
    mlenv.lock(tmp_path)  # warms uv's cache
    write_spec(tmp_path / "off", pypi_spec(pypi_server, ["fixalpha"]), base='"127.0.0.1:9/some/image:1.0"')
    n = len(pypi_server.requests)
    outcome = mlenv.lock(tmp_path / "off", offline=True)
    assert len(pypi_server.requests) == n
    assert any("--offline" in w for w in outcome.warnings)  # the image warning says why it is unpinned
    write_spec(tmp_path / "cold", pypi_spec(pypi_server, ["fixbeta"]))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-cache"))
    with mlenv_error(SolveError) as e:
        mlenv.lock(tmp_path / "cold", offline=True)
    assert "not in uv's cache" in str(e.value) and "without --offline" in str(e.value)
    assert len(pypi_server.requests) == n


# --- real PyPI ---------------------------------------------------------------------------


@pytest.mark.network
def test_real_pypi_ml_spec(tmp_path):
    write_spec(
        tmp_path,
        '[pypi]\ndependencies = ["scikit-learn==1.5.2", "pandas>=2,<3"]\n',
        platforms='["linux-64", "osx-arm64", "win-64"]',
    )
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    for plat, marker in (("linux-64", "manylinux"), ("osx-arm64", "macosx"), ("win-64", "win_amd64")):
        got = {p.name: p for p in lock.for_platform(plat)}
        assert got["scikit-learn"].version == "1.5.2"
        assert {"numpy", "scipy", "pandas", "joblib"} <= set(got)
        assert marker in got["scikit-learn"].url and got["scikit-learn"].url.startswith(
            "https://files.pythonhosted.org/"
        )


@pytest.mark.network
def test_pip_tools_resolver_agrees_with_uv(tmp_path):
    if sys.version_info[:2] != (3, 11):
        pytest.skip("pip-tools resolves for the running interpreter; the spec targets 3.11")
    body = '[pypi]\ndependencies = ["requests==2.32.3", "urllib3<2.3", "idna==3.10", "certifi==2024.8.30", "charset-normalizer==3.4.0"]\n'
    write_spec(tmp_path / "uv", body)
    write_spec(tmp_path / "pt", body)
    mlenv.lock(tmp_path / "uv")
    mlenv.lock(tmp_path / "pt", resolver="pip-tools")
    a, b = read_lock(tmp_path / "uv" / "mlenv.lock"), read_lock(tmp_path / "pt" / "mlenv.lock")
    assert pins(a) == pins(b)
    assert a.content_hash == b.content_hash


def test_conda_noarch_kinds_are_recorded(tmp_path, conda_channel):
    write_spec(
        tmp_path, conda_spec(conda_channel, ["mlenv-hello", "fixpy-utils", "libfix"]), base='"debian:bookworm-slim"'
    )
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    kinds = {p.name: p.get("noarch", "") for p in lock.for_platform("linux-64", "conda")}
    assert kinds["mlenv-hello"] == "generic" and kinds["fixpy-utils"] == "python"
    assert kinds["libfix"] == "" and kinds["python"] == ""


def test_conda_channel_over_http(tmp_path, conda_channel_server):
    """A remote (URL) channel: the same fixture channel served over HTTP."""
    write_spec(tmp_path, conda_spec(conda_channel_server.url, ["mlenv-hello"]), base='"debian:bookworm-slim"')
    mlenv.lock(tmp_path)
    lock = read_lock(tmp_path / "mlenv.lock")
    hello = next(p for p in lock.packages if p.name == "mlenv-hello")
    assert hello.url.startswith(conda_channel_server.url + "/noarch/mlenv-hello-1.0.0")
    assert hello.get("channel").rstrip("/") == conda_channel_server.url
    assert any(r.endswith("repodata.json") or "repodata" in r for r in conda_channel_server.requests)


def test_named_channel_that_cannot_be_reached_names_the_url(tmp_path):
    """Named channels resolve against conda.anaconda.org; unreachable here, the error says which URL."""
    write_spec(tmp_path, conda_spec("conda-forge", ["numpy"]), base='"debian:bookworm-slim"')
    try:
        mlenv.lock(tmp_path)
    except mlenv.MlenvError as exc:
        err = exc
    else:
        pytest.skip("conda-forge is reachable from this machine")
    assert err.exit_code == 2 and "\n" not in err.message
    assert "https://conda.anaconda.org/conda-forge/" in str(err)


def test_conda_channel_credentials_never_reach_the_lock(tmp_path, conda_channel_path, monkeypatch):
    from plugin_fixtures import IndexServer

    with IndexServer(conda_channel_path, "chan-user", "chan-Secr3t") as server:
        # ${VAR} references are expanded in memory at solve time (literal ones are refused)
        authed = server.url.replace("http://", "http://${CHAN_USER}:${CHAN_PASS}@")
        write_spec(tmp_path, conda_spec(authed, ["mlenv-hello"]), base='"debian:bookworm-slim"')
        cache = tmp_path / "cache"
        monkeypatch.setenv("CHAN_USER", "chan-user")
        monkeypatch.setenv("CHAN_PASS", "chan-Secr3t")
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
        said = Said()
        outcome = mlenv.lock(tmp_path, progress=said, on_warning=said)
        text = (tmp_path / "mlenv.lock").read_text()
        assert "chan-Secr3t" not in text and "chan-user" not in text
        assert said.lines and "chan-Secr3t" not in said.text + json.dumps(outcome.to_json())
        assert server.url + "/noarch/mlenv-hello-1.0.0" in text
        assert server.requests and not server.rejected  # the credentials were used, on every request
        # rattler's repodata cache records the URLs it fetched: it was never given the userinfo
        cached = [p for p in cache.rglob("*") if p.is_file()]
        assert any(p.name.endswith(".info.json") for p in cached)
        assert not [p for p in cached if b"chan-Secr3t" in p.read_bytes() or b"chan-user" in p.read_bytes()]


def test_conda_channel_credentials_go_only_where_they_belong():
    """rattler's header hook sees a request's host and path, not its port: a credentialed
    channel that shares host and path with a channel on another port is refused."""
    import base64

    from mlenv.solve.conda import channel_auth

    (auth,) = channel_auth(["http://u:p%40ss@127.0.0.1:8001/team/", "http://127.0.0.1:8002/other", "conda-forge"])
    assert (auth.host, auth.prefix) == ("127.0.0.1", "/team/")
    assert auth.authorization == "Basic " + base64.b64encode(b"u:p@ss").decode()
    for other in ("http://127.0.0.1:8002/team/sub", "http://127.0.0.1:8002/", "https://127.0.0.1:8001/team"):
        with pytest.raises(SolveError, match="share a host and a path") as exc:
            channel_auth(["http://u:p%40ss@127.0.0.1:8001/team", other])
        assert "p%40ss" not in str(exc.value) and "p@ss" not in str(exc.value)


def test_corrupt_lock_is_regenerated_by_lock_and_fails_check(tmp_path, pypi_server):
    write_spec(tmp_path, pypi_spec(pypi_server, ["fixalpha"]))
    mlenv.lock(tmp_path)
    good = read_lock(tmp_path / "mlenv.lock")
    path = tmp_path / "mlenv.lock"
    path.write_text(path.read_text().replace(good.packages[0].sha256, "f" * 64))
    with mlenv_error(LockError, exit_code=1) as e:
        mlenv.check(tmp_path)
    assert "content hash mismatch" in str(e.value)
    outcome = mlenv.lock(tmp_path)
    assert any("content hash mismatch" in w and "solving from scratch" in w for w in outcome.warnings)
    assert outcome.changed and read_lock(path).content_hash == good.content_hash


def test_failed_conda_solve_always_exits_2(tmp_path, conda_channel):
    """py-rattler 0.28 crashes in ~1 of 30 interpreter exits after a failed solve;
    mlenv's entry point leaves without finalization once rattler is loaded (the subject is
    the console script's exit: a subprocess each time)."""
    write_spec(
        tmp_path, conda_spec(conda_channel, ["fixcuda"], '\n[system]\ncuda = "11.8"\n'), base='"debian:bookworm-slim"'
    )
    codes = [run_cli("lock", "-q", cwd=tmp_path).returncode for _ in range(40)]
    assert set(codes) == {2}, codes


def test_output_is_complete_when_rattler_was_loaded(tmp_path, conda_channel):
    """The console script flushes its output before it leaves without finalization."""
    write_spec(
        tmp_path,
        conda_spec(conda_channel, ["mlenv-hello"]),
        base='"debian:bookworm-slim"',
        platforms='["linux-64", "osx-arm64"]',
    )
    proc = run_cli("lock", "--json", cwd=tmp_path, check=True)
    data = json.loads(proc.stdout)  # flushed in full before the process leaves
    assert data["platforms"]["osx-arm64"]["conda"] >= 4


def test_an_index_that_provides_no_package_is_named(tmp_path, pypi_server):
    """uv moves on to the next index when one answers with an error (a blocked CPU-only
    index: PyPI's CUDA build instead); mlenv names a declared index nothing came from."""
    blocked = pypi_server.rsplit("/simple", 1)[0] + "/blocked/simple"  # answers 404 to every page
    write_spec(
        tmp_path, f'[pypi]\nindex-url = "{pypi_server}"\nextra-index-urls = ["{blocked}"]\ndependencies = ["fixbeta"]\n'
    )
    outcome = mlenv.lock(tmp_path)
    assert pins(read_lock(tmp_path / "mlenv.lock")) == {"fixalpha": "1.1.0", "fixbeta": "1.0.0"}
    warnings = [w for w in outcome.warnings if "no locked package comes from index" in w]
    assert len(warnings) == 1 and blocked in warnings[0] and pypi_server not in warnings[0]
    # one index: nothing to say
    write_spec(tmp_path / "one", pypi_spec(pypi_server, ["fixbeta"]))
    assert not [w for w in mlenv.lock(tmp_path / "one").warnings if "no locked package comes from" in w]
