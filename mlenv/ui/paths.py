"""Where each page lives: one URL scheme for the server and the static export.

Every page is a `.html` file and every link is relative, so the exported directory
works from file:// and from any web server or sub-path. Path pieces derived from
registry data (environment and package names) come from `slug`, never raw: a name
that is not a plain lowercase word becomes `_h<hash>` (a form no valid name takes),
so a hostile name cannot climb out of the export directory or collide with another.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def slug(name: str) -> str:
    if SAFE.match(name) and ".." not in name and not name.endswith("."):
        return name
    return "_h" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]


HOME = "index.html"
CURATED = "curated/index.html"
PACKAGES = "packages/index.html"
SEARCH = "search.html"
COMPARE = "compare.html"  # server only: a diff of any two NAME@REF


def curated(name: str) -> str:
    return f"curated/{slug(name)}.html"


def environment(name: str) -> str:
    return f"env/{slug(name)}/index.html"


def version(name: str, number: int) -> str:
    return f"env/{slug(name)}/v{int(number)}.html"


def diff(name: str, a: int, b: int) -> str:
    return f"env/{slug(name)}/diff-{int(a)}-{int(b)}.html"


def package(key: str) -> str:
    return f"packages/{slug(key)}.html"


def static(name: str) -> str:
    return f"static/{name}"


def rel(target: str, page: str) -> str:
    """The relative link from page (a path like env/demo/v2.html) to target."""
    base = posixpath.dirname(page)
    out = posixpath.relpath(target, base or ".")
    return out
