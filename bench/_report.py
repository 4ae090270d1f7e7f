"""Shared by the bench scripts: medians, ratios, machine info, and writing one
named section of docs/benchmarks.md (between markers) without touching others."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from datetime import UTC
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by its script under `bench/`; rerun it to refresh the numbers.\n"


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")
    return proc


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {mem}, {cpu}, Python {platform.python_version()}"


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace the section `name` of `doc` (docs/benchmarks.md by default; created if missing)."""
    from datetime import datetime

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"<!-- bench:{name} -->\n{body.rstrip()}\n\n_Measured {stamp} on: {machine()}._\n<!-- /bench:{name} -->"
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, doc)


def console_floor(script: Path) -> list[str]:
    """A console script that does nothing, written exactly as the installer wrote `script`
    (bin/mlenv): its wrapper with the entry point's import replaced by a no-op. The start-up
    floor of any command installed that way (pip's wrapper imports `re`, ~10 ms here; uv's
    does not), next to which `mlenv --help` and the cache hit are read."""
    text = script.read_text()
    lines = text.splitlines()
    entry = [i for i, line in enumerate(lines) if line.startswith("from mlenv.") and " import " in line]
    if len(entry) != 1:
        raise SystemExit(f"bench: cannot find the entry import in {script}")
    name = lines[entry[0]].rsplit(" import ", 1)[1].strip()
    lines[entry[0]] = f"{name} = lambda: 0  # the floor: no mlenv import"
    floor = script.with_name(script.name + "-floor")
    floor.write_text("\n".join(lines) + "\n")
    floor.chmod(0o755)
    return [str(floor)]
