"""The shape of mlenv.lock, as tables a reader checks before it uses anything.

A lock travels (version control, registries, images), so it is untrusted input: every
field is typed here, and `check(data, where)` refuses anything else with one LockError
that names the field. To add a field or a package manager, add a row to the tables:

- TOP, ENVIRONMENT, IMAGE, INPUTS, PLATFORM: the tables of the lock, key -> Kind;
- PACKAGE_FIELDS: per `manager`, field -> (Kind, required). The order of the rows is the
  order `Lock.dumps()` writes them in.

A Kind is a predicate and the words that say what it accepts ("64 lowercase hex
digits"); the patterns are anchored with \\Z and ASCII-only (docs/security.md).
Stdlib only and cheap: the no-op `mlenv lock` reads the lock through here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import LockError
from .spec import APT_RE, INTERPRETER_RE, MAX_IMAGE_REF, PLATFORMS, PYTHON_RE, VARIABLE_RE, VERSION_RE
from .validation import has_control, quote

HINT = "`mlenv lock` regenerates it"
MAX_URL = 4096


class Kind:
    """What a field accepts (a predicate) and the words that say it in an error."""

    __slots__ = ("accepts", "says")

    def __init__(self, accepts: Callable[[object], bool], says: str):
        self.accepts = accepts
        self.says = says


def _match(pattern: str) -> Callable[[object], bool]:
    rx = re.compile(pattern, re.ASCII)
    return lambda v: isinstance(v, str) and rx.fullmatch(v) is not None


def _text(allow_newlines: bool = False) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and not has_control(v, allow_newlines=allow_newlines)


def _list_of(kind: Kind) -> Kind:
    return Kind(lambda v: isinstance(v, list) and all(kind.accepts(x) for x in v), f"a list of {kind.says}")


def _hex(n: int, prefix: str = "") -> Callable[[object], bool]:
    """Exactly n lowercase hex digits after prefix (no regex: cheap to set up)."""
    return lambda v: (
        isinstance(v, str)
        and len(v) == n + len(prefix)
        and v.startswith(prefix)
        and not v[len(prefix) :].strip("0123456789abcdef")
    )


def _is_int(v: object) -> bool:
    return type(v) is int  # bool is an int subclass: `true` is not a number here


TEXT = Kind(_text(), "a string without control characters")
BOOL = Kind(lambda v: isinstance(v, bool), "true or false")
MULTILINE = Kind(_text(allow_newlines=True), "a string without control characters other than tab and newline")
URL = Kind(
    lambda v: isinstance(v, str) and 0 < len(v) <= MAX_URL and not has_control(v) and " " not in v,
    f"a URL (no whitespace or control characters, at most {MAX_URL})",
)
OPTIONAL_URL = Kind(lambda v: v == "" or URL.accepts(v), "a URL or empty")
NAME = Kind(_match(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}"), "a package name (ASCII letters, digits, . _ + -)")
VERSION = Kind(_match(r"[A-Za-z0-9_][A-Za-z0-9_.+!:~*-]{0,199}"), "a version (ASCII letters, digits, _ . + ! : ~ * -)")
BUILD = Kind(_match(r"[A-Za-z0-9_.+-]{0,200}"), "a build string (ASCII letters, digits, _ . + -)")
SHA256 = Kind(_hex(64), "64 lowercase hex digits")
MD5 = Kind(lambda v: v == "" or _hex(32)(v), "32 lowercase hex digits")
DIGEST = Kind(_hex(64, "sha256:"), "sha256: and 64 lowercase hex digits")
COUNT = Kind(lambda v: isinstance(v, int) and _is_int(v) and 0 <= v < 1 << 63, "a non-negative integer")
TIMESTAMP = Kind(
    lambda v: isinstance(v, int) and _is_int(v) and 0 <= v < 253402300800000, "milliseconds since 1970 before 10000"
)
PLATFORM = Kind(lambda v: v in PLATFORMS, "one of " + ", ".join(PLATFORMS))
SUBDIR = Kind(lambda v: v in PLATFORMS or v == "noarch", "a platform or noarch")
NOARCH = Kind(lambda v: v in ("", "python", "generic"), '"python", "generic" or empty')
ARCHITECTURE = Kind(_match(r"[a-z0-9][a-z0-9-]{0,31}"), "a Debian architecture (amd64, arm64, all, ...)")
PYTHON = Kind(lambda v: isinstance(v, str) and PYTHON_RE.match(v) is not None, "a Python version like 3.11")
PLATFORM_PYTHON = Kind(_match(r"[0-9][A-Za-z0-9_.+!-]{0,63}"), "a version like 3.11.9 (3.13.0rc1)")
INTERPRETER = Kind(lambda v: isinstance(v, str) and INTERPRETER_RE.match(v) is not None, "an absolute path")
IMAGE_REF = Kind(
    lambda v: isinstance(v, str) and 0 < len(v) <= MAX_IMAGE_REF and not has_control(v) and " " not in v,
    "an image reference",
)
APT_PACKAGE = Kind(lambda v: isinstance(v, str) and APT_RE.match(v) is not None, "a Debian package (name[=version])")
SYSTEM = Kind(
    lambda v: (
        isinstance(v, dict)
        and all(isinstance(k, str) and isinstance(x, str) and VERSION_RE.match(x) for k, x in v.items())
    ),
    "a table of versions",
)
VARIABLES = Kind(
    lambda v: (
        isinstance(v, dict)
        and all(isinstance(k, str) and VARIABLE_RE.match(k) and MULTILINE.accepts(x) for k, x in v.items())
    ),
    'a table of NAME = "value" (names: ASCII letters, digits, _; values: strings)',
)

TOP = {"version": COUNT, "content-hash": DIGEST, "spec-hash": DIGEST}
ENVIRONMENT = {"python": PYTHON, "variables": VARIABLES}
IMAGE = {
    "base": IMAGE_REF,
    "reference": IMAGE_REF,
    "digest": DIGEST,
    "python": INTERPRETER,
    "apt-packages": _list_of(APT_PACKAGE),
    "steps": _list_of(MULTILINE),
}
INPUTS = {
    "platforms": _list_of(PLATFORM),
    "channels": _list_of(TEXT),
    "conda-dependencies": _list_of(TEXT),
    "pypi-dependencies": _list_of(TEXT),
    "system": SYSTEM,
    "index-url": TEXT,
    "extra-index-urls": _list_of(TEXT),
    # [pypi] find-links, constraints, overrides (only when the spec sets them)
    "find-links": _list_of(TEXT),
    "constraints": _list_of(TEXT),
    "overrides": _list_of(TEXT),
    # what the apt pins were resolved for (mlenv.apt; not hashed)
    "apt-packages": _list_of(APT_PACKAGE),
    "apt-base": IMAGE_REF,
    "apt-platforms": _list_of(PLATFORM),
    "apt-sources": _list_of(URL),
}
PLATFORM_INFO = {"python": PLATFORM_PYTHON, "packages": COUNT}

# A PyPI package that is not an index's (docs/lockfile.md, "Git, URL and local packages").
SOURCE = Kind(lambda v: v in ("git", "path", "url"), '"git", "path" or "url"')
GIT_REF = Kind(_match(r"(?!.*\.\.)[A-Za-z0-9._+-][A-Za-z0-9._/+-]{0,199}"), "a git branch, tag or commit")
COMMIT = Kind(_hex(40), "40 lowercase hex digits (a git commit)")
SUBDIRECTORY = Kind(
    _match(r"(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9_+-][A-Za-z0-9._+-]*(?:/[A-Za-z0-9._+-]+){0,31}"),
    "a relative path inside the repository (no . or .. segments)",
)
FILENAME = Kind(_match(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+!~-]{0,254}"), "a plain file name")

# Every [[package]] has platform and manager (checked first), then its manager's fields.
PACKAGE_FIELDS: dict[str, dict[str, tuple[Kind, bool]]] = {
    "conda": {
        "name": (NAME, True), "version": (VERSION, True), "build": (BUILD, False), "build-number": (COUNT, False),
        "subdir": (SUBDIR, False), "channel": (OPTIONAL_URL, False), "url": (URL, True), "sha256": (SHA256, True),
        "md5": (MD5, False), "size": (COUNT, False), "timestamp": (TIMESTAMP, False), "noarch": (NOARCH, False),
        "depends": (_list_of(TEXT), False), "constrains": (_list_of(TEXT), False), "license": (MULTILINE, False),
    },
    "pypi": {
        "name": (NAME, True), "version": (VERSION, True), "url": (URL, True), "sha256": (SHA256, True),
        "size": (COUNT, False), "index": (OPTIONAL_URL, False), "find-links": (OPTIONAL_URL, False),
        "requires-python": (TEXT, False), "source": (SOURCE, False), "requested": (GIT_REF, False),
        "commit": (COMMIT, False), "subdirectory": (SUBDIRECTORY, False), "filename": (FILENAME, False),
        "source-tree": (DIGEST, False),
    },
    "apt": {
        "name": (NAME, True), "version": (VERSION, True), "architecture": (ARCHITECTURE, False), "url": (URL, True),
        "sha256": (SHA256, True), "size": (COUNT, False), "snapshot-url": (OPTIONAL_URL, False),
    },
}  # fmt: skip
MANAGERS = tuple(PACKAGE_FIELDS)


def _fail(where: object, message: str) -> LockError:
    return LockError(f"{where}: malformed lock file: {message}", hint=HINT)


def _table(data: dict, key: str, rows: dict[str, Kind], where: object, label: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(where, f"{label} must be a table, not {quote(value)}")
    for name, item in value.items():
        kind = rows.get(name)
        if kind is None:
            raise _fail(where, f"unknown key {quote(name)} in {label}")
        if not kind.accepts(item):
            raise _fail(where, f"{label} {name} must be {kind.says}, not {quote(item)}")
    return value


def check(data: dict, where: object) -> None:
    """Refuse (LockError naming `where` and the field) any lock document whose tables,
    keys or values are not the documented ones. `version` is checked by the caller first
    (so a newer format gets its own message)."""
    known = {*TOP, "environment", "image", "inputs", "platforms", "package"}
    for key in data:
        if key not in known:
            raise _fail(where, f"unknown key {quote(key)}")
    for key, kind in TOP.items():
        if key not in data:
            raise _fail(where, f"missing {key}")
        if not kind.accepts(data[key]):
            raise _fail(where, f"{key} must be {kind.says}, not {quote(data[key])}")
    _table(data, "environment", ENVIRONMENT, where, "[environment]")
    _table(data, "image", IMAGE, where, "[image]")
    _table(data, "inputs", INPUTS, where, "[inputs]")
    platforms = data.get("platforms", {})
    if not isinstance(platforms, dict):
        raise _fail(where, f"[platforms] must be a table, not {quote(platforms)}")
    for plat in platforms:
        if plat not in PLATFORMS:
            raise _fail(where, f"unknown platform {quote(plat)} in [platforms]")
        _table(platforms, plat, PLATFORM_INFO, where, f"[platforms.{plat}]")
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise _fail(where, "package must be an array of tables ([[package]])")
    for i, pkg in enumerate(packages, 1):
        _check_package(pkg, i, platforms, where)


def _check_package(pkg: object, i: int, platforms: dict, where: object) -> None:
    at = f"[[package]] #{i}"
    if not isinstance(pkg, dict):
        raise _fail(where, f"{at} must be a table, not {quote(pkg)}")
    manager, platform = pkg.get("manager"), pkg.get("platform")
    if not isinstance(manager, str) or manager not in PACKAGE_FIELDS:
        raise _fail(where, f"{at}: manager must be one of {', '.join(MANAGERS)}, not {quote(manager)}")
    if not PLATFORM.accepts(platform):
        raise _fail(where, f"{at}: platform must be {PLATFORM.says}, not {quote(platform)}")
    if platform not in platforms:
        raise _fail(where, f"{at}: platform {platform} has no [platforms.{platform}] table")
    fields = PACKAGE_FIELDS[manager]
    name = pkg.get("name")
    if isinstance(name, str) and NAME.accepts(name):
        at = f"{at} ({platform} {manager} {name})"
    for key, value in pkg.items():
        if key in ("manager", "platform"):
            continue
        row = fields.get(key)
        if row is None:
            raise _fail(where, f"{at}: unknown field {quote(key)} for a {manager} package")
        if not row[0].accepts(value):
            raise _fail(where, f"{at}: {key} must be {row[0].says}, not {quote(value)}")
    for key, (_, required) in fields.items():
        if required and key not in pkg:
            raise _fail(where, f"{at}: missing {key}")


__all__ = ["Kind", "MANAGERS", "PACKAGE_FIELDS", "check"]
