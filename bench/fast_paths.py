"""Benchmark: the start-up paths of the `mlenv` command, against the floors, and optionally
against an older tree, all interleaved in one run (so a busy minute of this shared machine
hits every command alike).

    bash .ci/services.sh up && source .ci/_work/services.env
    python bench/fast_paths.py [--rounds 30]
    git archive REV | tar -x -C /tmp/old && BENCH_BASELINE=/tmp/old BENCH_BASELINE_NAME=REV python bench/fast_paths.py

Measured, each a whole process (wall time and the child's CPU time, medians over --rounds;
against an older tree, the two run each command back to back and the ratio is the median of
those pairs'):
- `mlenv --help`;
- `mlenv lock -q` on a fresh lock (the no-op);
- `mlenv build -q` when the image exists (the cache hit: mlenv/image/hit.py);
- the floors: `python -c pass`, and a console script that imports nothing of mlenv,
  written by the same installer (pip's wrapper imports `re`).
Every tree is installed regularly (`pip install`, byte-compiled) into a fresh venv, with
its own project directory (locked and built by that tree) and its own XDG_CACHE_HOME.
Writes the "fast-paths" section of docs/benchmarks.md (not with --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import console_floor, median, table, write_section

ROOT = Path(__file__).resolve().parent.parent
# byte-compiled, as an installed mlenv is: PYTHONDONTWRITEBYTECODE would time the compiler
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "MLENV_CA_BUNDLE")}


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def install(tree: Path, into: Path) -> Path:
    sh([sys.executable, "-m", "venv", str(into)])
    sh([str(into / "bin" / "python"), "-m", "pip", "install", "-q", str(tree)])
    return into / "bin" / "mlenv"


def project(d: Path, mlenv: Path, cache: Path, base: str) -> None:
    """A one-package environment on the test base image, locked and built (then reused) by `mlenv`."""
    d.mkdir(parents=True)
    (d / "mlenv.toml").write_text(
        '[environment]\nname = "bench-fast"\npython = "3.11"\nplatforms = ["linux-64"]\n\n'
        '[pypi]\ndependencies = ["six==1.16.0"]\n\n'
        f'[image]\nbase = "{base}"\npython = "/usr/bin/python3"\n'
    )
    env = {**ENV, "XDG_CACHE_HOME": str(cache)}
    sh([str(mlenv), "lock", "-q"], cwd=d, env=env)
    sh([str(mlenv), "build", "-q"], cwd=d, env=env)  # built (or found by label)
    out = json.loads(sh([str(mlenv), "build", "--json"], cwd=d, env=env).stdout)  # reused: the hit record is written
    if out.get("action") != "reused":
        raise SystemExit(f"bench: the second build of {d} was not a reuse: {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    base = os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE")
    if not base:
        raise SystemExit("source .ci/_work/services.env first (bash .ci/services.sh up)")
    baseline = os.environ.get("BENCH_BASELINE")
    baseline_name = os.environ.get("BENCH_BASELINE_NAME", "baseline")
    trees = {"this tree": ROOT} | ({baseline_name: Path(baseline)} if baseline else {})

    with tempfile.TemporaryDirectory(prefix="mlenv-bench-fast-") as tmp:
        work = Path(tmp)
        cmds: dict[tuple[str, str], tuple[list[str], Path, dict]] = {}
        for i, (name, tree) in enumerate(trees.items()):
            mlenv = install(tree, work / f"venv{i}")
            cache, proj = work / f"cache{i}", work / f"proj{i}"
            project(proj, mlenv, cache, base)
            env = {**ENV, "XDG_CACHE_HOME": str(cache)}
            cmds[name, "mlenv --help"] = ([str(mlenv), "--help"], proj, env)
            cmds[name, "mlenv lock -q (no-op)"] = ([str(mlenv), "lock", "-q"], proj, env)
            cmds[name, "mlenv build -q (cache hit)"] = ([str(mlenv), "build", "-q"], proj, env)
            if i == 0:
                cmds[name, "floor: python -c pass"] = ([str(mlenv.with_name("python")), "-c", "pass"], proj, env)
                cmds[name, "floor: no-op console script, same installer"] = (console_floor(mlenv), proj, env)
        times: dict[tuple[str, str], list[float]] = {k: [] for k in cmds}
        cpu: dict[tuple[str, str], list[float]] = {k: [] for k in cmds}  # the child's user + system time
        loads = [os.getloadavg()[0]]
        names, cases_run = list(trees), list(dict.fromkeys(case for _, case in cmds))
        for r in range(args.rounds):
            for case in cases_run:  # the trees back to back on each case, in turn first
                for name in names if r % 2 == 0 else names[::-1]:
                    if (name, case) not in cmds:
                        continue
                    cmd, cwd, env = cmds[name, case]
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    sh(cmd, cwd=cwd, env=env)
                    times[name, case].append(time.perf_counter() - t0)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu[name, case].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        loads.append(os.getloadavg()[0])

    med = {k: median(v) * 1000 for k, v in times.items()}
    cases = ["mlenv --help", "mlenv lock -q (no-op)", "mlenv build -q (cache hit)"]
    floor_py = med["this tree", "floor: python -c pass"]
    floor_script = med["this tree", "floor: no-op console script, same installer"]
    header = ["command", "this tree", "above the console-script floor"]
    if baseline:
        header += [baseline_name, "this tree / " + baseline_name + " (middle half of the rounds)", "CPU time, ratio"]
    rows = []
    for case in cases:
        row = [case, f"{med['this tree', case]:.0f} ms", f"{med['this tree', case] - floor_script:.0f} ms"]
        if baseline:
            old = med[baseline_name, case]
            # each round's pair ran back to back: its ratio is the least disturbed by a busy minute
            ratios = sorted(a / b for a, b in zip(times["this tree", case], times[baseline_name, case], strict=True))
            q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
            cpu_ratio = median(cpu["this tree", case]) / median(cpu[baseline_name, case])
            row += [f"{old:.0f} ms", f"{median(ratios):.2f}x ({q1:.2f}-{q3:.2f})",
                    f"{median(cpu['this tree', case]) * 1000:.0f} / {median(cpu[baseline_name, case]) * 1000:.0f} ms "
                    f"= {cpu_ratio:.2f}x"]  # fmt: skip
        rows.append(row)
    rows.append(["floor: `python -c pass`", f"{floor_py:.0f} ms", ""] + (["", "", ""] if baseline else []))
    rows.append(
        ["floor: a no-op console script (pip's wrapper)", f"{floor_script:.0f} ms", "0 ms"]
        + (["", "", ""] if baseline else [])
    )
    body = (
        "## Fast paths (`bench/fast_paths.py`)\n\n"
        "The command's start-up paths, each a whole process, medians of "
        f"{args.rounds} rounds; in each round the trees run each command back to back, in turn first, "
        "and the ratio is the median of those pairs' ratios (with the middle half of them). The CPU time "
        "(the child's user + system time, medians) is the steadier measure on a shared machine: waiting "
        "for a core is not in it. Every tree installed regularly (pip, byte-compiled) in its own "
        "venv, with its own project (one PyPI package on the test base image, locked and built by that tree) "
        "and its own cache. The console-script floor is pip's wrapper with the entry point replaced by a "
        "no-op: what any command installed that way costs before its own code runs.\n\n"
        + table(rows, header)
        + f"\n\n1-minute load average {min(loads):.1f}-{max(loads):.1f} on this shared 2-core machine.\n"
    )
    print(body)
    if not args.no_write:
        write_section("fast-paths", body)


if __name__ == "__main__":
    main()
