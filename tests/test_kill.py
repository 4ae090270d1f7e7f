"""Kill tests (issue 9, "Must show"): SIGKILL at random points of `mlenv lock`,
`mlenv register` and `mlenv restore` (100 each; MLENV_KILL_ROUNDS changes it), and
SIGTERM / SIGINT at random points of `lock` and `restore`.

Each kill must leave the old state or the new one, and no temporary file after the
next mlenv command in that directory:
- lock: mlenv.lock holds the old bytes or the new ones (and, after a completed solve, no
  scratch directory of a killed one is left in $TMPDIR);
- register: the registry answers `versions`, its numbers are 1..n without a gap, every
  version's content is one that was registered, each once;
- restore: mlenv.toml and mlenv.lock belong to the same version (after the next
  command: a kill between the two renames is completed by it, mlenv.runtime.journal).
SIGTERM and SIGINT run the cleanups at once: the same holds without a next command.

The kill times are uniform over the command's measured duration (half of them over its
last 30%, where it writes), so some land during interpreter start and most in the work
itself. Marked `kill` (about 5 minutes on 2 shared cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlenv.lockfile import Lock, Package
from mlenv.locking import inputs_of
from mlenv.spec import load_spec

pytestmark = pytest.mark.kill

ROUNDS = int(os.environ.get("MLENV_KILL_ROUNDS") or 100)
SIGNAL_ROUNDS = max(1, ROUNDS // 5)
UNRESOLVABLE = "127.0.0.1:9/mlenv-test/none:1"


def _env(tmp: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLENV_")}
    env.update({"XDG_CACHE_HOME": str(tmp / "cache"), "XDG_DATA_HOME": str(tmp / "data"), "TMPDIR": str(tmp / "tmp")})
    env.update(extra)
    (tmp / "tmp").mkdir(exist_ok=True)
    return env


def run(args, cwd, env, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mlenv.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    if check:
        assert proc.returncode == 0, f"mlenv {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def interrupted(args, cwd, env, delay: float, sig=signal.SIGKILL) -> int:
    """Start `mlenv ARGS`, send `sig` after `delay` seconds (unless it ended); its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "mlenv.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if "Traceback" in err:  # only Python's own, for a Ctrl-C before mlenv's code runs (interpreter start)
        assert sig == signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt") and "mlenv/api" not in err, err
    if sig != signal.SIGKILL:
        # a Ctrl-C while CPython itself starts (init_import_site, init_sys_streams, ...): exit 1, by CPython
        before_mlenv = sig == signal.SIGINT and "Fatal Python error: init_" in err
        assert proc.returncode in (0, 130, 143, -signal.SIGTERM, -signal.SIGINT) or before_mlenv, (proc.returncode, err)
    return proc.returncode


def kill_time(rng: random.Random, t: float) -> float:
    """Uniform over the command's run, half of the time over its last 30% (where it writes)."""
    return rng.uniform(0, 1.1 * t) if rng.random() < 0.5 else rng.uniform(0.7 * t, 1.1 * t)


def duration(args, cwd, env, setup=lambda: None) -> float:
    times = []
    for _ in range(2):
        setup()
        t0 = time.perf_counter()
        run(args, cwd, env)
        times.append(time.perf_counter() - t0)
    return max(times)


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --- lock -----------------------------------------------------------------------------------------

LOCK_SPEC = """\
    [environment]
    name = "kill-lock"
    python = "3.11"
    platforms = ["linux-64"]
    [pypi]
    index-url = "{index}"
    dependencies = ["{dep}"]
    [image]
    base = "{base}"
"""
VARIANTS = ["fixalpha==1.0.0", "fixbeta"]  # each one's lock does not satisfy the other's spec


def _lock_project(tmp_path, pypi_index_path):
    d = tmp_path / "proj"
    d.mkdir()
    env = _env(tmp_path)

    def spec(dep: str) -> str:
        return textwrap.dedent(LOCK_SPEC.format(index=pypi_index_path.as_uri(), dep=dep, base=UNRESOLVABLE))

    locks = {}
    for dep in VARIANTS:  # the two results, solved once each (a solve is deterministic)
        (d / "mlenv.toml").write_text(spec(dep))
        run(["lock", "--offline"], d, env)
        locks[dep] = (d / "mlenv.lock").read_bytes()
    assert locks[VARIANTS[0]] != locks[VARIANTS[1]]
    return d, env, spec, locks


def _other(locks: dict, current: bytes) -> str:
    return next(dep for dep, data in locks.items() if data != current)


def test_sigkill_during_lock(tmp_path, pypi_index_path):
    d, env, spec, locks = _lock_project(tmp_path, pypi_index_path)
    t = duration(["lock", "--offline"], d, env, setup=lambda: (d / "mlenv.toml").write_text(
        spec(_other(locks, (d / "mlenv.lock").read_bytes()))))  # fmt: skip
    rng = random.Random(9)
    outcomes = {"old": 0, "new": 0}
    for _ in range(ROUNDS):
        old = (d / "mlenv.lock").read_bytes()
        dep = _other(locks, old)
        (d / "mlenv.toml").write_text(spec(dep))
        interrupted(["lock", "--offline"], d, env, kill_time(rng, t))
        now = (d / "mlenv.lock").read_bytes()
        assert now in (old, locks[dep]), "a partial or foreign lock"
        outcomes["old" if now == old else "new"] += 1
        run(["lock", "--check"], d, env, check=False)  # the next command
        assert temp_files(d) == [], temp_files(d)
    (d / "mlenv.toml").write_text(spec(_other(locks, (d / "mlenv.lock").read_bytes())))
    run(["lock", "--offline"], d, env)  # a solve: its scratch directory replaces the killed ones'
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("mlenv-")] == []
    print(f"lock kills: {outcomes}")
    assert outcomes["old"] and outcomes["new"]  # kills landed before and after the write


def test_sigterm_and_sigint_during_lock_clean_up_at_once(tmp_path, pypi_index_path):
    d, env, spec, locks = _lock_project(tmp_path, pypi_index_path)
    t = duration(["lock", "--offline"], d, env, setup=lambda: (d / "mlenv.toml").write_text(
        spec(_other(locks, (d / "mlenv.lock").read_bytes()))))  # fmt: skip
    rng = random.Random(15)
    for i in range(SIGNAL_ROUNDS):
        old = (d / "mlenv.lock").read_bytes()
        dep = _other(locks, old)
        (d / "mlenv.toml").write_text(spec(dep))
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        interrupted(["lock", "--offline"], d, env, kill_time(rng, t), sig)  # checks the exit code
        assert (d / "mlenv.lock").read_bytes() in (old, locks[dep])
        assert temp_files(d) == [], temp_files(d)  # no next command needed


# --- register ---------------------------------------------------------------------------------


def _reg_project(directory: Path, i: int) -> str:
    """A spec and a current lock (no solve: the package is made up, on PyPI's file host)."""
    directory.mkdir(parents=True)
    (directory / "mlenv.toml").write_text(
        textwrap.dedent(f"""\
        [environment]
        name = "kill-reg"
        python = "3.11"
        platforms = ["linux-64"]
        [variables]
        ROUND = "{i}"
        [image]
        base = "python:3.11-slim-bookworm"
    """)
    )
    spec = load_spec(directory / "mlenv.toml")
    sha = hashlib.sha256(f"fixalpha-{i}".encode()).hexdigest()
    pkg = Package("pypi", "linux-64", "fixalpha", "1.1.0",
                  f"https://files.pythonhosted.org/packages/{sha[:2]}/fixalpha-1.1.0-py3-none-any.whl", sha,
                  {"size": 1, "index": "https://pypi.org/simple"})  # fmt: skip
    lock = Lock(spec_hash=spec.spec_hash(), python="3.11", platforms={"linux-64": {"python": "3.11"}}, packages=[pkg],
                variables={"ROUND": str(i)}, image={"base": spec.base_image, "apt-packages": [], "steps": []},
                inputs=inputs_of(spec)).seal()  # fmt: skip
    lock.write(directory / "mlenv.lock")
    return lock.content_hash


def test_sigkill_during_register(tmp_path):
    registry = tmp_path / "registry"
    env = _env(tmp_path, MLENV_REGISTRY=str(registry))
    hashes = {i: _reg_project(tmp_path / f"p{i}", i) for i in range(ROUNDS + 2)}
    t = duration(["register", "--no-image"], tmp_path / f"p{ROUNDS}", env) * 1.0
    run(["register", "--no-image"], tmp_path / f"p{ROUNDS + 1}", env)
    registered = [hashes[ROUNDS], hashes[ROUNDS + 1]]
    rng = random.Random(7)
    committed = 0
    for i in range(ROUNDS):
        interrupted(["register", "--no-image"], tmp_path / f"p{i}", env, kill_time(rng, t))
        versions = json.loads(run(["versions", "kill-reg", "--json"], tmp_path, env).stdout)["versions"]
        numbers = [v["version"] for v in versions]
        assert numbers == list(range(1, len(numbers) + 1)), numbers  # gap-free
        got = [v["content_hash"] for v in versions]
        assert len(set(got)) == len(got) and set(got) <= set(hashes.values())
        assert len(got) in (len(registered), len(registered) + 1)
        committed += len(got) - len(registered)
        run(["register", "--no-image"], tmp_path / f"p{i}", env)  # the next command: completes or is idempotent
        registered.append(hashes[i])
        blobs = registry / "blobs" / "sha256"
        assert [p.name for p in blobs.iterdir() if p.name.startswith(".")] == []
    final = json.loads(run(["versions", "kill-reg", "--json"], tmp_path, env).stdout)["versions"]
    assert [v["content_hash"] for v in final] == registered  # each once, in the order they were registered
    detail = json.loads(run(["show", f"kill-reg@{len(final)}", "--json"], tmp_path, env).stdout)
    assert detail["content_hash"] in hashes.values()  # blobs verified on read
    print(f"register kills: {committed} committed before the kill, {ROUNDS - committed} not")


# --- restore ----------------------------------------------------------------------------------


def _restore_setup(tmp_path):
    registry = tmp_path / "registry"
    env = _env(tmp_path, MLENV_REGISTRY=str(registry))
    pairs = {}
    for i in (1, 2):
        _reg_project(tmp_path / f"v{i}", i)
        run(["register", "--no-image"], tmp_path / f"v{i}", env)
        pairs[i] = ((tmp_path / f"v{i}" / "mlenv.toml").read_bytes(), (tmp_path / f"v{i}" / "mlenv.lock").read_bytes())
    into = tmp_path / "restored"
    run(["restore", "kill-reg@1", "--into", into], tmp_path, env)
    return env, pairs, into


def _pair(into: Path) -> tuple[bytes, bytes]:
    return (into / "mlenv.toml").read_bytes(), (into / "mlenv.lock").read_bytes()


def _version_of(pairs: dict, into: Path) -> int:
    return next(v for v, p in pairs.items() if p == _pair(into))


def _restore_duration(tmp_path, env, pairs, into) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run(["restore", f"kill-reg@{3 - _version_of(pairs, into)}", "--into", into], tmp_path, env)
        times.append(time.perf_counter() - t0)
    return max(times)


def test_sigkill_during_restore(tmp_path):
    env, pairs, into = _restore_setup(tmp_path)
    t = _restore_duration(tmp_path, env, pairs, into)
    rng = random.Random(5)
    seen = {"old": 0, "new": 0, "completed by the next command": 0}
    for _ in range(ROUNDS):
        old = _version_of(pairs, into)
        target = 3 - old
        interrupted(["restore", f"kill-reg@{target}", "--into", into], tmp_path, env, kill_time(rng, t))
        raw = _pair(into)
        if raw not in pairs.values():
            seen["completed by the next command"] += 1  # killed between the two renames
            assert (into / ".mlenv.journal").exists()
        run(["hash"], into, env)  # the next command in that directory
        assert _pair(into) in (pairs[old], pairs[target])
        seen["old" if _pair(into) == pairs[old] else "new"] += 1
        assert temp_files(into) == [], temp_files(into)
    print(f"restore kills: {seen}")
    assert seen["old"] and seen["new"]


def test_sigterm_and_sigint_during_restore_clean_up_at_once(tmp_path):
    env, pairs, into = _restore_setup(tmp_path)
    t = _restore_duration(tmp_path, env, pairs, into)
    rng = random.Random(11)
    for i in range(SIGNAL_ROUNDS * 2):
        old = _version_of(pairs, into)
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        interrupted(["restore", f"kill-reg@{3 - old}", "--into", into], tmp_path, env, kill_time(rng, t), sig)
        assert _pair(into) in pairs.values() and temp_files(into) == []  # no next command needed
