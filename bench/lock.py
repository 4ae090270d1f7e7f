"""Lock benchmark: mlenv lock vs uv pip compile vs pip-compile, one run, side by side.

One ML spec (scikit-learn, pandas, matplotlib, xgboost, requests) on real PyPI,
one target (linux-64, Python 3.11). Cold means an empty resolver cache for
every tool; warm means the cache of a previous run. Prints medians and ratios
and writes them into docs/benchmarks.md (section "lock").

    python bench/lock.py [--repeat 5] [--pip-compile-repeat 2] [--apt-only] [--sources-only]

With the test services up (MLENV_TEST_BASE_IMAGE_REMOTE, a Docker Engine), it also
locks `[image] apt-packages = ["libgomp1", "curl"]` on that Debian base and writes
section "lock-apt": cold (empty mlenv cache: the base read from the Engine, InRelease,
the Packages index), warm (caches kept, the lock re-resolved) and the no-op.

`--sources-only` (also run by a full run; section "lock-sources"): a spec with one git
dependency (a repository served over git's smart HTTP on 127.0.0.1 by
fixtures/git_server.py) and one local package, on the fixture index: cold lock, no-op
lock, and the no-ops that must look at the sources (a ref read, a touched file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import console_floor, median, run, table, timed, write_section

DEPS = ["scikit-learn", "pandas", "matplotlib", "xgboost", "requests"]
SPEC = """\
[environment]
name = "bench-lock"
python = "3.11"
platforms = ["linux-64"]

[pypi]
dependencies = {deps}

[image]
base = "python:3.11-slim-bookworm@sha256:{digest}"
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pip-compile-repeat", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--apt-only", action="store_true", help="only the apt-packages part (section lock-apt)")
    ap.add_argument("--sources-only", action="store_true", help="only the git + local package part (lock-sources)")
    ap.add_argument(
        "--editable",
        action="store_true",
        help="measure the mlenv of this (editable, dev) venv instead of a regular install",
    )
    args = ap.parse_args()

    venv_bin = Path(sys.executable).parent
    mlenv = [str(venv_bin / "mlenv")]
    if not args.editable:
        # What users run: a regular install (`pip install mlenv`). A dev venv's
        # editable-install finder adds ~10 ms to every start.
        release = Path(tempfile.mkdtemp(prefix="mlenv-bench-venv-"))
        run([sys.executable, "-m", "venv", str(release)])
        run(
            [str(release / "bin" / "python"), "-m", "pip", "install", "-q", str(Path(__file__).resolve().parent.parent)]
        )
        mlenv = [str(release / "bin" / "mlenv")]
    if args.apt_only:
        apt_bench(mlenv, args)
        return
    if args.sources_only:
        sources_bench(mlenv, args)
        return
    from mlenv.uvtool import uv_binary

    uv = uv_binary()
    pip_compile = str(venv_bin / "pip-compile")
    work = Path(tempfile.mkdtemp(prefix="mlenv-bench-lock-"))
    import json

    (work / "mlenv.toml").write_text(SPEC.format(deps=json.dumps(DEPS), digest="0" * 64))
    (work / "requirements.in").write_text("\n".join(DEPS) + "\n")
    env = dict(os.environ)

    def cache(name: str) -> dict:
        return {
            **env,
            "UV_CACHE_DIR": str(work / name),
            "PIP_CACHE_DIR": str(work / (name + "-pip")),
            "PIP_NO_CACHE_DIR": "0",
        }

    def fresh(name: str) -> dict:
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.rmtree(work / (name + "-pip"), ignore_errors=True)
        return cache(name)

    uv_cmd = [
        uv,
        "pip",
        "compile",
        "requirements.in",
        "--generate-hashes",
        "--python-version",
        "3.11",
        "--python-platform",
        "x86_64-manylinux_2_28",
        "-o",
        "uv.txt",
        "--quiet",
        "--no-header",
    ]
    pc_cmd = [
        pip_compile,
        "requirements.in",
        "--generate-hashes",
        "-o",
        "pc.txt",
        "--quiet",
        "--no-header",
        "--strip-extras",
        "--allow-unsafe",
        "--rebuild",
    ]

    def uv_compile(envmap):
        # From scratch, like mlenv without a lock: an existing output file would
        # be read back by uv as preferences and make it a different job.
        (work / "uv.txt").unlink(missing_ok=True)
        run(uv_cmd, cwd=work, env=envmap)

    def pip_compile_run(envmap):
        (work / "pc.txt").unlink(missing_ok=True)
        run(pc_cmd, cwd=work, env=envmap)

    def mlenv_lock(envmap):
        (work / "mlenv.lock").unlink(missing_ok=True)
        run(mlenv + ["lock", "-q"], cwd=work, env=envmap)

    results: dict[str, list[float]] = {}
    print(f"bench/lock.py: {args.repeat} repeats, spec: {', '.join(DEPS)}", flush=True)
    # Interleaved, so a slow minute of the network hits both tools alike.
    uv_compile(cache("uv-warm"))
    mlenv_lock(cache("mlenv-warm"))
    for key in (
        "uv pip compile --generate-hashes (cold)",
        "mlenv lock (cold)",
        "uv pip compile --generate-hashes (warm)",
        "mlenv lock (warm)",
    ):
        results[key] = []
    for _ in range(args.repeat):
        results["uv pip compile --generate-hashes (cold)"] += timed(lambda: uv_compile(fresh("uv-cold")), 1)
        results["mlenv lock (cold)"] += timed(lambda: mlenv_lock(fresh("mlenv-cold")), 1)
        results["uv pip compile --generate-hashes (warm)"] += timed(lambda: uv_compile(cache("uv-warm")), 1)
        results["mlenv lock (warm)"] += timed(lambda: mlenv_lock(cache("mlenv-warm")), 1)
    mlenv_lock(cache("mlenv-warm"))
    results["mlenv lock (no-op, lock fresh)"] = timed(
        lambda: run(mlenv + ["lock", "-q"], cwd=work, env=cache("mlenv-warm")), max(args.repeat, 10)
    )
    results["mlenv --help"] = timed(lambda: run(mlenv + ["--help"], cwd=work), max(args.repeat, 10))
    # the floors these two are read against: the interpreter alone, and a console script of the
    # same installer that imports nothing of mlenv (the machine's start-up cost moves between runs)
    python = str(Path(mlenv[0]).with_name("python"))
    results["(floor: `python -c pass`)"] = timed(lambda: run([python, "-c", "pass"], cwd=work), max(args.repeat, 10))
    floor = console_floor(Path(mlenv[0]))
    results["(floor: a no-op console script, same installer)"] = timed(
        lambda: run(floor, cwd=work), max(args.repeat, 10)
    )
    if shutil.which(pip_compile) or Path(pip_compile).exists():
        results["pip-compile --generate-hashes (cold)"] = timed(
            lambda: pip_compile_run(fresh("pc")), args.pip_compile_repeat
        )

    uv_pins = _pins(work / "uv.txt")
    lock_text = (work / "mlenv.lock").read_text()
    same = all(f'name = "{n}"\nversion = "{v}"' in lock_text for n, v in uv_pins.items())
    pc_pins = _pins(work / "pc.txt") if (work / "pc.txt").exists() else {}

    med = {k: median(v) for k, v in results.items()}
    uv_cold = med["uv pip compile --generate-hashes (cold)"]
    uv_warm = med["uv pip compile --generate-hashes (warm)"]
    rows = []
    for name, value in med.items():
        ref = uv_warm if "warm" in name else uv_cold
        ratio = f"{value / ref:.2f}x uv" if ("uv" not in name and "help" not in name and "no-op" not in name) else ""
        if "floor" in name:
            ratio = ""
        rows.append([name, f"{value * 1000:.0f} ms", f"{len(results[name])}", ratio])
    checks = [
        f"- cold `mlenv lock` / cold `uv pip compile`: **{med['mlenv lock (cold)'] / uv_cold:.2f}x** (target ≤ 1.2x)",
        f"- no-op `mlenv lock`: **{med['mlenv lock (no-op, lock fresh)'] * 1000:.0f} ms** wall, interpreter start included (target < 150 ms)",
        f"- `mlenv --help`: **{med['mlenv --help'] * 1000:.0f} ms** (the no-op console script of the same installer: "
        f"{med['(floor: a no-op console script, same installer)'] * 1000:.0f} ms; `python -c pass`: "
        f"{med['(floor: `python -c pass`)'] * 1000:.0f} ms)",
        f"- mlenv and uv pick the same versions: **{'yes' if same else 'NO'}** ({len(uv_pins)} packages)",
    ]
    if pc_pins:
        pc = med["pip-compile --generate-hashes (cold)"]
        checks.append(
            f"- pip-compile cold / mlenv cold: **{pc / med['mlenv lock (cold)']:.0f}x** slower; "
            f"same versions as uv: {'yes' if pc_pins == uv_pins else 'no (differs: ' + ', '.join(sorted(k for k in set(pc_pins) | set(uv_pins) if pc_pins.get(k) != uv_pins.get(k))) + ')'}"
        )
    body = (
        "## Lock (`bench/lock.py`)\n\n"
        f"Spec: {', '.join(DEPS)} on real PyPI, target linux-64 / Python 3.11. Cold = empty resolver cache; every run starts without an output/lock file (uv reads an existing output file back as preferences).\n"
        f"mlenv {'from this editable dev venv' if args.editable else 'installed regularly (pip install .) in a fresh venv'}; "
        "its number includes interpreter start, spec parsing, the uv run (pylock output with URLs), "
        "wheel selection, hashing and the atomic write.\n\n"
        + table(rows, ["command", "median", "runs", "ratio"])
        + "\n\n"
        + "\n".join(checks)
        + "\n\n"
        "Where mlenv's extra time goes: ~90 ms from the process's start to uv's (measured 2026-12-02: the "
        "interpreter, click, reading and checking the spec and any old lock, as the no-op lock does, and the solver "
        "modules; uv is then started at once, and validation, base-image pinning and wheel-tag ranking run while it "
        "resolves), ~35 ms after it (artifact selection, the sources check, hashing, the fsynced atomic write), and "
        "CPU contention with uv on this 2-core machine. The cold ratio moves between about 1.15x and 1.5x from run to run (the network through the "
        "proxy; both tools also start uv's interpreter discovery through pyenv's shell shims on this machine); "
        "the overhead, 75 to 250 ms over the runs of 2026-12-02, does not grow with the spec, so the ratio "
        "shrinks as specs grow. To judge a change, time the two trees side by side instead.\n"
    )
    print(body)
    if not args.no_write:
        write_section("lock", body)
    shutil.rmtree(work, ignore_errors=True)
    if os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE"):
        apt_bench(mlenv, args)
    sources_bench(mlenv, args)


APT = ["libgomp1", "curl"]


def apt_bench(mlenv: list[str], args) -> None:
    """Lock time with apt packages: cold, warm (re-resolve with caches), no-op."""
    import json

    base = os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE")
    if not base:
        raise SystemExit("bench/lock.py --apt-only needs the test services (source .ci/_work/services.env)")
    work = Path(tempfile.mkdtemp(prefix="mlenv-bench-apt-"))
    (work / "mlenv.toml").write_text(
        f'[environment]\nname = "bench-apt"\nplatforms = ["linux-64"]\n\n'
        f'[image]\nbase = "{base}"\napt-packages = {json.dumps(APT)}\n'
    )

    def env(cache: str) -> dict:
        return {**os.environ, "XDG_CACHE_HOME": str(work / cache)}

    def lock(envmap):
        (work / "mlenv.lock").unlink(missing_ok=True)
        run(mlenv + ["lock", "-q"], cwd=work, env=envmap)

    results: dict[str, list[float]] = {
        "mlenv lock, apt (cold: empty cache)": [],
        "mlenv lock, apt (warm: caches kept)": [],
    }
    lock(env("warm"))
    for _ in range(args.repeat):
        shutil.rmtree(work / "cold", ignore_errors=True)
        results["mlenv lock, apt (cold: empty cache)"] += timed(lambda: lock(env("cold")), 1)
        results["mlenv lock, apt (warm: caches kept)"] += timed(lambda: lock(env("warm")), 1)
    lock(env("warm"))
    results["mlenv lock, apt (no-op, lock fresh)"] = timed(
        lambda: run(mlenv + ["lock", "-q"], cwd=work, env=env("warm")), max(args.repeat, 10)
    )
    n = (work / "mlenv.lock").read_text().count('manager = "apt"')
    med = {k: median(v) for k, v in results.items()}
    rows = [[k, f"{v * 1000:.0f} ms", str(len(results[k]))] for k, v in med.items()]
    noop = med["mlenv lock, apt (no-op, lock fresh)"] * 1000
    body = (
        "## Lock with apt packages (`bench/lock.py --apt-only`)\n\n"
        f"Spec: `[image] apt-packages = {json.dumps(APT)}` on the Debian bookworm test base ({base}, digest-pinned), "
        f"resolved against deb.debian.org: {n} .debs locked. Cold = an empty mlenv cache: the base's files read from "
        "the local Docker Engine (`docker save`, 191 MB), InRelease fetched and checked with gpgv, the 8.8 MB "
        "Packages.xz fetched and parsed with python-debian (about 5 s of the total). Warm = those caches kept "
        "(InRelease is still fetched and verified), the lock re-resolved. mlenv from "
        f"{'this editable venv' if args.editable else 'a regular install (pip install .) in a fresh venv'}.\n\n"
        + table(rows, ["command", "median", "runs"])
        + "\n\n"
        f"- no-op `mlenv lock` with apt pins: **{noop:.0f} ms** (target < 150 ms; reads no index, starts no "
        "gpgv, asks no Docker Engine: tested with a dead proxy and no Engine)\n"
        f"- 1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine: "
        "other work inflates every number here; an earlier run under heavier load measured a 246 ms no-op)\n"
    )
    print(body)
    if not args.no_write:
        write_section("lock-apt", body)
    shutil.rmtree(work, ignore_errors=True)


UV_BUILD = '[build-system]\nrequires = ["uv_build>=0.8,<0.30"]\nbuild-backend = "uv_build"\n'


def _package(root: Path, name: str, modules: int) -> None:
    """A uv_build project with `modules` small modules (a realistic tree to fingerprint)."""
    (root / "src" / name).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        UV_BUILD + f'[project]\nname = "{name}"\nversion = "0.1.0"\n'
        'requires-python = ">=3.8"\ndependencies = ["fixalpha>=1"]\n'
    )
    (root / "src" / name / "__init__.py").write_text('__version__ = "0.1.0"\n')
    for i in range(modules):
        (root / "src" / name / f"m{i:03d}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test_x.py").write_text("def test(): pass\n")


def sources_bench(mlenv: list[str], args) -> None:
    """Lock time with one git and one local-path dependency (section lock-sources)."""
    import importlib.util
    import json

    root = Path(__file__).resolve().parent.parent / "fixtures"

    def load(name: str, file: str):
        spec = importlib.util.spec_from_file_location(name, root / file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    fixtures = load("bench_build_fixtures", "build_fixtures.py")
    servers = load("bench_fixture_server", "server.py")
    git_server = load("bench_git_server", "git_server.py")
    work = Path(tempfile.mkdtemp(prefix="mlenv-bench-sources-"))
    paths = fixtures.build_all(work / "fx")
    repos = work / "repos"
    repos.mkdir()
    tools = work / "tools-src"
    _package(tools, "teamtools", 40)
    files = {f"tools/{p.relative_to(tools).as_posix()}": p.read_text() for p in tools.rglob("*") if p.is_file()}
    git_server.make_repo(repos, "tools", files, tag="v1.0")
    project = work / "project"
    _package(project / "libs" / "features", "features", 200)
    git_server.git("init", "-q", str(project))  # a real project is a git work tree: `git ls-files` lists its files
    with servers.IndexServer(paths["pypi"]) as index, git_server.GitServer(repos) as git:
        deps = [f"teamtools @ git+{git.url}/tools.git@v1.0#subdirectory=tools", "features @ ./libs/features"]
        (project / "mlenv.toml").write_text(
            f'[environment]\nname = "bench-sources"\npython = "3.11"\nplatforms = ["linux-64"]\n\n'
            f'[pypi]\nindex-url = "{index.url}/simple"\ndependencies = {json.dumps(deps)}\n\n'
            f'[image]\nbase = "python:3.11-slim-bookworm@sha256:{"0" * 64}"\n'
        )

        def env(cache: str) -> dict:
            return {**os.environ, "XDG_CACHE_HOME": str(work / cache)}

        def lock(envmap, *extra):
            run(mlenv + ["lock", "-q", *extra], cwd=project, env=envmap)

        results: dict[str, list[float]] = {"mlenv lock (cold: empty mlenv and uv caches)": []}
        for _ in range(args.repeat):
            shutil.rmtree(work / "cold", ignore_errors=True)
            (project / "mlenv.lock").unlink(missing_ok=True)
            results["mlenv lock (cold: empty mlenv and uv caches)"] += timed(lambda: lock(env("cold")), 1)
        lock(env("warm"))

        def relock():
            (project / "mlenv.lock").unlink(missing_ok=True)
            lock(env("warm"))

        results["mlenv lock (warm: no lock, wheels already built)"] = timed(relock, args.repeat)
        lock(env("warm"))
        n = max(args.repeat, 15)
        plain = work / "plain"  # the same index, no git or local package: what the sources add to a no-op
        plain.mkdir()
        (plain / "mlenv.toml").write_text(
            (project / "mlenv.toml").read_text().replace(json.dumps(deps), '["fixalpha"]')
        )
        run(mlenv + ["lock", "-q"], cwd=plain, env=env("warm"))
        results["mlenv lock (no-op), the same spec with neither"] = timed(
            lambda: run(mlenv + ["lock", "-q"], cwd=plain, env=env("warm")), n
        )
        results["mlenv lock (no-op)"] = timed(lambda: lock(env("warm")), n)

        def noop_reading_refs():
            shutil.rmtree(work / "warm" / "mlenv" / "git-refs", ignore_errors=True)
            lock(env("warm"))

        results["mlenv lock (no-op, git refs read: first in 10 min)"] = timed(noop_reading_refs, n)
        init = project / "libs" / "features" / "src" / "features" / "m000.py"

        def noop_touched():
            os.utime(init)  # a new mtime, the same content: re-hashed, not rebuilt
            lock(env("warm"))

        results["mlenv lock (no-op, a file touched)"] = timed(noop_touched, n)
        original = init.read_text()

        def one_change():
            init.write_text(original + f"# {time.time_ns()}\n")
            lock(env("warm"))

        results["mlenv lock (one source file changed: rebuild)"] = timed(one_change, args.repeat)
        init.write_text(original)
        lock(env("warm"))
        lock_text = (project / "mlenv.lock").read_text()
        if os.environ.get("MLENV_BENCH_KEEP"):  # profiling: keep the project and serve it until interrupted
            print(f"project: {project} (XDG_CACHE_HOME={work / 'warm'}); Ctrl-C to stop", flush=True)
            try:
                time.sleep(float(os.environ["MLENV_BENCH_KEEP"]))
            except KeyboardInterrupt:
                pass
    med = {k: median(v) for k, v in results.items()}
    rows = [[k, f"{v * 1000:.0f} ms", str(len(results[k]))] for k, v in med.items()]
    noop = med["mlenv lock (no-op)"] * 1000
    body = (
        "## Lock with a git and a local dependency (`bench/lock.py --sources-only`)\n\n"
        f"Spec: `teamtools @ git+http://127.0.0.1:PORT/tools.git@v1.0#subdirectory=tools` (a repository served over "
        "git's smart HTTP by `git http-backend` behind fixtures/git_server.py; 42 files) and `features @ ./libs/features` "
        "(a local package in a git work tree, 203 files), both built with uv's build backend (uv_build: no backend "
        "download), dependencies from the fixture index on 127.0.0.1. mlenv from "
        f"{'this editable venv' if args.editable else 'a regular install (pip install .) in a fresh venv'}.\n\n"
        + table(rows, ["command", "median", "runs"])
        + "\n\n"
        f"- no-op `mlenv lock`: **{noop:.0f} ms** (target < 150 ms): the spec hash, then the local package's tree hash "
        "from its cached per-file stats (`git ls-files`, one stat per file, nothing re-hashed, nothing built) and "
        "the git refs read within the last 10 minutes\n"
        "- the first no-op in 10 minutes reads the refs again (`git ls-remote`, started before the tree is hashed); "
        "a touched file is hashed again (same content: no rebuild); a changed file rebuilds that package "
        "(`uv build`, the repack) and re-solves with the previous pins as preferences\n"
        f"- the lock holds {lock_text.count('source = ')} built packages\n"
        f"- 1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine)\n"
    )
    print(body)
    if not args.no_write:
        write_section("lock-sources", body)
    shutil.rmtree(work, ignore_errors=True)


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.split()[0].rstrip("\\").strip()
    return out


if __name__ == "__main__":
    main()
