"""The `mlenv` console script: the cache hit of `mlenv build` first (mlenv.build_hit,
no click), everything else through mlenv.cli."""

from __future__ import annotations

import sys


def main() -> None:
    if "build" in sys.argv[1:4]:
        from .build_hit import try_hit

        code = try_hit(sys.argv[1:])
        if code is not None:
            sys.stdout.flush()
            sys.exit(code)
    from .cli import entry

    entry()
