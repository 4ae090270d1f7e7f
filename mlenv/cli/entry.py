"""The `mlenv` console script.

The cache hit of `mlenv build` is answered first (mlenv.image.hit: no click, no
model imported); everything else goes through click (mlenv.cli.main).

py-rattler 0.28 crashes (SIGSEGV/SIGABRT) in about 1 of 30 interpreter exits after
a failed solve, while its runtime is torn down; reproduced with rattler alone. Once
rattler is loaded, mlenv has written and closed everything it writes, so it flushes
its output and leaves without interpreter finalization, with the exit code mlenv chose.
"""

from __future__ import annotations

import sys


def main() -> None:
    if "build" in sys.argv[1:4]:
        from ..image.hit import try_hit

        code = try_hit(sys.argv[1:])
        if code is not None:
            sys.stdout.flush()
            sys.exit(code)
    try:
        from .main import main as run  # Ctrl-C while importing: a plain exit, like Ctrl-C later
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    try:
        run()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    if "rattler" in sys.modules:
        import os

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
