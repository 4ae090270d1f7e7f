"""The `mlenv` command line, run as a user runs it (a subprocess of this interpreter):
for the tests whose subject is the CLI itself."""

from __future__ import annotations

import os
import subprocess
import sys


def mlenv(*args, cwd, env=None, check=False):
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, capture_output=True, text=True, env=full_env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mlenv {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
