"""The package query language of `mlenv search` and the catalog's search page.

    numpy                      every locked numpy
    numpy==1.26.4              PEP 440 specifiers, comma-separated: urllib3<2.2.2, torch>=2,<2.6
    conda:openssl>=3.0.14      only conda packages; pypi: only PyPI packages
    openssl==1.1.1w            a conda version that is not PEP 440 (compared loosely, below)

Names are compared normalized (PEP 503: lowercase, runs of `-_.` become `-`); a conda
package is also found under the PyPI name it provides (`torch` finds conda `pytorch`,
mlenv.solve.names). A locked version matches a clause by PEP 440 (`packaging`) with
pre-releases included (an advisory about `urllib3<2.2.2` concerns 2.2.2rc1 too) when
both the locked version and the clause's version are PEP 440; otherwise (conda versions
such as `1.1.1w`) by the loose order of `loose_key`. docs/ui.md is the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ..errors import MlenvError
from ..solve.names import normalize

if TYPE_CHECKING:
    from packaging.specifiers import Specifier
    from packaging.version import Version

MANAGERS = ("conda", "pypi")
OPERATORS = ("===", "~=", "==", "!=", "<=", ">=", "<", ">")
NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
VERSION_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._+!-]*[A-Za-z0-9])?(?:\.\*)?")
_QUERY_RE = re.compile(r"^\s*(?:(?P<manager>[A-Za-z]+)\s*:\s*)?(?P<name>[^\s<>=!~,:]+)\s*(?P<rest>.*?)\s*$", re.DOTALL)
_CLAUSE_RE = re.compile(r"^\s*(?P<op>===|~=|==|!=|<=|>=|<|>)\s*(?P<version>\S+?)\s*$")
MAX_QUERY = 500


class QueryError(MlenvError):
    """A package query that does not parse."""


@dataclass(frozen=True)
class Clause:
    op: str
    version: str

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True)
class Query:
    name: str  # normalized
    manager: str | None = None  # "conda" | "pypi" | None (both)
    clauses: tuple[Clause, ...] = ()

    def __str__(self) -> str:
        prefix = f"{self.manager}:" if self.manager else ""
        return prefix + self.name + ",".join(str(c) for c in self.clauses)

    def matches(self, version: str) -> bool:
        """True when a locked version satisfies every clause."""
        return all(clause_matches(c, version) for c in self.clauses)

    def to_json(self) -> dict:
        return {"name": self.name, "manager": self.manager, "clauses": [[c.op, c.version] for c in self.clauses]}


def parse_query(text: str) -> Query:
    """Parse `[conda:|pypi:]NAME[SPECIFIER[,SPECIFIER...]]`; QueryError (one line, with a hint) otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("empty package query", hint="e.g. numpy, numpy==1.26.4, urllib3<2.2.2, conda:openssl>=3")
    if len(text) > MAX_QUERY:
        raise QueryError(f"package query too long ({len(text)} characters, at most {MAX_QUERY})")
    m = _QUERY_RE.match(text)
    if not m:
        raise QueryError(
            f"cannot read the package query {_show(text)}",
            hint="NAME, optionally prefixed conda: or pypi:, then PEP 440 specifiers: urllib3<2.2.2",
        )
    manager = m.group("manager")
    if manager is not None:
        manager = manager.lower()
        if manager not in MANAGERS:
            raise QueryError(f"unknown package manager {manager!r} in {_show(text)}", hint="use conda: or pypi:")
    name = m.group("name")
    if not NAME_RE.fullmatch(name):
        raise QueryError(
            f"invalid package name {_show(name)}",
            hint="letters, digits, '.', '_' and '-', starting and ending with a letter or digit",
        )
    rest = m.group("rest")
    clauses: list[Clause] = []
    if rest:
        for piece in rest.split(","):
            clauses.append(_clause(piece, text))
    return Query(normalize(name), manager, tuple(clauses))


def _clause(piece: str, text: str) -> Clause:
    m = _CLAUSE_RE.match(piece)
    if not m and re.match(r"^\s*=[^=]", piece):
        raise QueryError(
            f"{_show(piece.strip())} in {_show(text)}: a single = is conda's syntax",
            hint="queries use PEP 440: ==1.26.4 for one version, ==1.26.* for conda's =1.26",
        )
    if not m:
        raise QueryError(
            f"invalid version specifier {_show(piece.strip())} in {_show(text)}",
            hint="one of ==, !=, <, <=, >, >=, ~=, === followed by a version, e.g. <2.2.2",
        )
    op, version = m.group("op"), m.group("version")
    if op == "===":  # arbitrary equality: any string without spaces or commas
        return Clause(op, version)
    if not VERSION_RE.fullmatch(version):
        raise QueryError(
            f"invalid version {_show(version)} in {_show(text)}",
            hint="a version such as 2.2.2, 1.26.*, 2.0.0rc1 or 1.1.1w",
        )
    if version.endswith(".*") and op not in ("==", "!="):
        raise QueryError(f"{op}{version}: a trailing .* only goes with == and !=")
    if op == "~=" and _specifier(op, version) is None:
        raise QueryError(
            f"{op}{version}: ~= needs a PEP 440 version with at least two release numbers",
            hint="e.g. ~=2.2 (>=2.2, ==2.*)",
        )
    return Clause(op, version)


@lru_cache(maxsize=4096)
def _specifier(op: str, version: str) -> Specifier | None:
    from packaging.specifiers import InvalidSpecifier, Specifier

    try:
        return Specifier(f"{op}{version}", prereleases=True)
    except InvalidSpecifier:
        return None


@lru_cache(maxsize=65536)
def _pep440(version: str) -> Version | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)
    except InvalidVersion:
        return None


def clause_matches(clause: Clause, version: str) -> bool:
    return _matches(clause.op, clause.version, version)


@lru_cache(maxsize=65536)
def _matches(op: str, want: str, version: str) -> bool:
    """clause_matches, remembered: a registry holds the same few versions of a package many times."""
    if op == "===":
        return version.strip().lower() == want.lower()
    spec = _specifier(op, want)
    parsed = _pep440(version)
    if spec is not None and parsed is not None:
        return spec.contains(parsed, prereleases=True)
    # Loose comparison: a conda version that is not PEP 440 (1.1.1w, 9e), or a clause
    # version that is not (==1.1.1w).
    if op == "~=":
        return False
    if want.endswith(".*"):
        prefix = want[:-2]
        hit = loose_key(version)[: len(loose_key(prefix))] == loose_key(prefix)
        return hit if op == "==" else not hit
    c = loose_compare(version, want)
    return {"==": c == 0, "!=": c != 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]


@lru_cache(maxsize=65536)
def loose_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """The order of versions that are not PEP 440: runs of digits and runs of letters
    (case-insensitive; every other character separates), compared piece by piece:
    numbers numerically, letters alphabetically, letters before numbers; a version that
    is a prefix of another sorts first (1.1.1 < 1.1.1w < 1.1.2). Leading zeros do not count."""
    return tuple((1, int(t), "") if t.isdigit() else (0, 0, t) for t in re.findall(r"[0-9]+|[a-z]+", version.lower()))


def version_order(version: str) -> tuple:
    """A sort key over any locked versions: PEP 440 ones in PEP 440 order, then the others loosely."""
    parsed = _pep440(version)
    return (0, parsed, ()) if parsed is not None else (1, None, loose_key(version))


def loose_compare(a: str, b: str) -> int:
    ka, kb = loose_key(a), loose_key(b)
    return (ka > kb) - (ka < kb)


def _show(text: str) -> str:
    text = text if len(text) <= 80 else text[:77] + "..."
    return repr(text)
