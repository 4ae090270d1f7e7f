"""What validating untrusted input costs on the fast paths: `mlenv --help` and a no-op
`mlenv lock` (interpreter start included), and in-process `load_spec` + spec hash and
`read_lock` of the example lock, for this tree and a base git ref (default: the commit
before issue 9's parser work), interleaved, medians of wall and CPU time.

    .venv/bin/python bench/parse_cost.py [BASE_REF] [--no-write]

Writes the "parse-cost" section of docs/security.md.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import table, write_section  # noqa: E402

BASE = next((a for a in sys.argv[1:] if not a.startswith("-")), "d4d0a91")
REPEAT = int(os.environ.get("BENCH_REPEAT", "40"))
IN_PROCESS = """
import sys, time
from mlenv.spec import load_spec
from mlenv.lockfile import read_lock
n = 300
t = time.perf_counter()
for _ in range(n): load_spec(sys.argv[1] + "/mlenv.toml").spec_hash()
a = (time.perf_counter() - t) / n
t = time.perf_counter()
for _ in range(n): read_lock(sys.argv[1] + "/mlenv.lock")
b = (time.perf_counter() - t) / n
print(a * 1e3, b * 1e3)
"""


def child(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mlenv-parse-cost-"))
    try:
        base = tmp / "base"
        base.mkdir()
        archive = subprocess.run(["git", "archive", BASE, "mlenv"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        project = tmp / "project"
        project.mkdir()
        shutil.copy(ROOT / "examples/fraud-train/mlenv.toml", project / "mlenv.toml")
        shutil.copy(ROOT / "mlenv.lock.example", project / "mlenv.lock")
        # Byte-compiled, as an installed mlenv is (PYTHONDONTWRITEBYTECODE would time the compiler).
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        trees = {"base": dict(plain, PYTHONPATH=str(base)), "this tree": dict(plain, PYTHONPATH=str(ROOT))}
        for tree in (base, ROOT):
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "mlenv")], check=True, env=plain)
        cli = [sys.executable, "-m", "mlenv.cli"]
        for env in trees.values():  # warm the page cache
            child([*cli, "lock"], env, project)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(REPEAT):
            for what, args in (("mlenv --help", ["--help"]), ("no-op mlenv lock", ["lock"])):
                for name, env in trees.items():
                    samples.setdefault((what, name), []).append(child([*cli, *args], env, project))
        inproc = {}
        for name, env in trees.items():
            runs = [
                subprocess.run(
                    [sys.executable, "-c", IN_PROCESS, str(project)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                for _ in range(5)
            ]
            inproc[name] = [statistics.median(float(r[i]) for r in runs) for i in (0, 1)]
        rows = []
        for what in ("mlenv --help", "no-op mlenv lock"):
            b, n = samples[(what, "base")], samples[(what, "this tree")]
            med = lambda xs, i: statistics.median(x[i] for x in xs) * 1000  # noqa: E731
            rows.append([what, f"{med(b, 0):.1f} / {med(b, 1):.1f}", f"{med(n, 0):.1f} / {med(n, 1):.1f}"])
        rows.append(["load_spec + spec hash (in-process)", f"{inproc['base'][0]:.3f}", f"{inproc['this tree'][0]:.3f}"])
        rows.append(
            [
                "read_lock, example lock, 30 packages (in-process)",
                f"{inproc['base'][1]:.3f}",
                f"{inproc['this tree'][1]:.3f}",
            ]
        )
        body = table(rows, ["ms (wall / CPU for commands)", f"base ({BASE})", "this tree"])
        body += (
            f"\n\nMedians of {REPEAT} interleaved runs per command (byte-compiled trees, interpreter start "
            "included); in-process: medians of 5 runs of 300 calls."
        )
        print(body)
        if "--no-write" not in sys.argv:
            write_section("parse-cost", body, ROOT / "docs" / "security.md")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
