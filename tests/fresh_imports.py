"""What a statement imports in a fresh interpreter: the one helper of the tests that pin a
fast path's imports (the cache hit, `--help`, the no-op lock, `versions`, `import mlenv`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def imported_by(statement: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """(the modules `statement` imported beyond interpreter start-up, its stderr); a
    SystemExit of the statement (a CLI main) ends it normally."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "try:\n"
        f"    {statement}\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.__stdout__.write('\\n' + ' '.join(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return set(proc.stdout.splitlines()[-1].split()), proc.stderr


def roots(modules: set[str]) -> set[str]:
    """The top-level packages of `modules`."""
    return {name.split(".")[0] for name in modules}
