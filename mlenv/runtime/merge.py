"""BuildKit's final stage: copy one builder stage's prefix into place, reproducibly.

A `COPY --from` stamps its destination directory with the build time (BuildKit 0.8
has no SOURCE_DATE_EPOCH), so every layer after a changed group would change digest.
This step copies with the same bytes and puts the fixed mtime back on the
directories it added entries to: equal content, equal layer. The final stage runs
it with the base image's Python (`python3 -c "<this file>" SRC DST EPOCH LABEL`,
SRC the builder stage's prefix bind-mounted at /tmp); standard library only.
"""

from __future__ import annotations

import os
import shutil
import sys


def main(argv: list[str]) -> int:
    src, dst, epoch = argv[0], argv[1], int(argv[2])  # argv[3]: a label for the build log
    bin_dir = src + "/bin"
    for name in os.listdir(bin_dir) if os.path.isdir(bin_dir) else ():
        if os.path.lexists(dst + "/bin/" + name):
            os.unlink(dst + "/bin/" + name)
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    d = dst
    while d != "/":
        os.utime(d, (epoch, epoch))
        d = os.path.dirname(d)
    if os.path.isdir(dst + "/bin"):
        os.utime(dst + "/bin", (epoch, epoch))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
