"""The closure of requested Debian packages over a base image (docs/lockfile.md#resolution).

The rule, deterministic by construction (no hash-seed, clock or set-order effect):

1. Universe: every stanza of the sources' Packages indexes for the native
   architecture (which list `Architecture: all` packages too), in source order.
   A name's candidates are ordered by version, highest first (python-debian's
   Version, dpkg's order), ties by source order. Installed: the base's dpkg status
   entries whose Status ends in "installed".
2. Requests, in name order. `name` already installed (or provided by an installed
   package) is left out: the base decides its version. `name=version` takes exactly
   that version. A name with no package but providers (a virtual package) takes its
   one provider; with several it is an error naming them (as apt does).
3. For each package added, its Pre-Depends then Depends, in field order (Recommends
   and Suggests are not followed). A relation `a | b | c` is satisfied if any
   alternative is met by an installed package (not replaced) or one already added;
   otherwise the first alternative that is satisfiable is added: it has a candidate
   meeting it, and that candidate's own closure resolves (else the next alternative
   is tried, from the state before).
4. A candidate for `name (op version)`: a real package of that name whose version
   meets the relation (preferred: the version pinned by the previous lock when it
   still qualifies and the package is not being upgraded; else the highest). Only
   when no real package qualifies, a provider (Provides; a versioned relation needs
   a versioned Provides), chosen by: the previously pinned provider, then Priority
   (required, important, standard, optional, extra), then name, then version.
5. Architecture qualifiers: none or `:native` -> a native or `all` package (or
   Multi-Arch: foreign); `:any` -> a package with Multi-Arch: allowed; `:<arch>` ->
   that architecture. Foreign architectures of the base (dpkg --add-architecture)
   are not resolved into.
6. Checks over the final set (installed packages not replaced, plus the added
   ones): every added package's and every installed package's Pre-Depends/Depends
   hold (an installed package broken by an upgrade is upgraded to its candidate,
   repeatedly, else it is an error); no Conflicts or Breaks hits another package.

A failure is one line naming the chain: `curl 7.88.1-10 -> libcurl4 (= 7.88.1-10):
no candidate ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import MlenvError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
OPS = ("<<", "<=", "=", ">=", ">>")
PRIORITY = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


class ResolveError(MlenvError):
    """The requested Debian packages cannot be installed on the base."""


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    arch: str
    multi_arch: str = ""
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""
    priority: str = ""
    filename: str = ""
    size: int = 0
    sha256: str = ""
    origin: int = 0  # index of the source it came from (preference order)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class Rel:
    name: str
    op: str | None = None
    version: str | None = None
    archqual: str | None = None

    def __str__(self) -> str:
        out = self.name + (f":{self.archqual}" if self.archqual else "")
        return out + (f" ({self.op} {self.version})" if self.op else "")


_VERSIONS: dict[str, object] = {}


def version(v: str):
    """debian.debian_support.Version, memoized (a resolve compares the same few often)."""
    from debian.debian_support import Version

    got = _VERSIONS.get(v)
    if got is None:
        try:
            got = Version(v)
        except ValueError:
            raise ResolveError(f"invalid Debian version {v[:60]!r}") from None
        _VERSIONS[v] = got
    return got


def meets(have: str, op: str | None, want: str | None) -> bool:
    if op is None or want is None:
        return True
    a, b = version(have), version(want)
    return {"<<": a < b, "<=": a <= b, "=": a == b, ">=": a >= b, ">>": a > b}[op]


_RELS: dict[str, list[list[Rel]]] = {}


def relations(text: str, where: str = "") -> list[list[Rel]]:
    """A relation field (Depends, Provides, ...) as AND-groups of OR-alternatives,
    parsed by python-debian's PkgRelation and checked: names and versions valid."""
    if not text.strip():
        return []
    got = _RELS.get(text)
    if got is not None:
        return got
    import logging

    from debian.deb822 import PkgRelation

    logging.getLogger("debian.deb822").setLevel(logging.ERROR)
    out: list[list[Rel]] = []
    for group in PkgRelation.parse_relations(text):
        alts = []
        for d in group:
            name = str(d.get("name") or "")
            ver = d.get("version")
            qual = d.get("archqual")
            if not NAME_RE.match(name):
                raise ResolveError(f"{where}: malformed relation {text[:100]!r}")
            op, v = (ver[0], ver[1]) if ver else (None, None)
            if op is not None and (op not in OPS or not v):
                raise ResolveError(f"{where}: malformed relation {text[:100]!r}")
            if v is not None:
                version(v)
            if qual is not None and not re.fullmatch(r"[a-z0-9-]+", str(qual)):
                raise ResolveError(f"{where}: malformed architecture qualifier in {text[:100]!r}")
            alts.append(Rel(name, op, v, qual))
        if alts:
            out.append(alts)
    _RELS[text] = out
    return out


@dataclass
class Universe:
    """Candidates by name, built lazily: a Packages index has ~60,000 stanzas and a
    resolve looks at a few hundred names."""

    arch: str
    raw: dict[str, list[tuple[int, dict]]] = field(default_factory=dict)
    candidates: dict[str, list[Pkg]] = field(default_factory=dict)
    providers: dict[str, list[tuple[Pkg, str | None]]] = field(default_factory=dict)
    installed: dict[str, list[Pkg]] = field(default_factory=dict)
    where: str = ""  # the sources, for messages

    @classmethod
    def build(cls, arch: str, records: list[tuple[int, dict]], installed: list[Pkg], where: str) -> Universe:
        u = cls(arch, where=where)
        for origin, r in records:
            if r.get("Architecture", "") in (arch, "all"):
                u.raw.setdefault(r["Package"], []).append((origin, r))
        for p in installed:
            u.installed.setdefault(p.name, []).append(p)
        return u

    def cands(self, name: str) -> list[Pkg]:
        """The candidates of a name: highest version first, ties by source order."""
        got = self.candidates.get(name)
        if got is not None:
            return got
        seen: set[tuple[str, str]] = set()
        good = []
        for origin, r in self.raw.get(name, []):
            key = (r["Version"], r.get("Architecture", ""))
            if key in seen:
                continue
            seen.add(key)
            try:
                version(r["Version"])
                size = int(r.get("Size") or 0)
            except (ResolveError, ValueError):
                continue  # an unusable stanza is skipped, never chosen
            good.append(
                Pkg(
                    name,
                    r["Version"],
                    r.get("Architecture", ""),
                    r.get("Multi-Arch", "").lower(),
                    r.get("Depends", ""),
                    r.get("Pre-Depends", ""),
                    r.get("Provides", ""),
                    r.get("Conflicts", ""),
                    r.get("Breaks", ""),
                    r.get("Priority", ""),
                    r.get("Filename", ""),
                    size,
                    r.get("SHA256", "").lower(),
                    origin,
                )
            )
        good.sort(key=lambda p: p.origin)
        good.sort(key=lambda p: version(p.version), reverse=True)  # stable: ties keep source order
        self.candidates[name] = good
        return good

    def provider_index(self) -> None:
        """virtual name -> [(provider, provided version)] over candidates (built once, lazily)."""
        if self.providers:
            return
        for name in sorted(self.raw):
            if not any(r.get("Provides") for _, r in self.raw[name]):
                continue
            for p in self.cands(name):
                if p.provides:
                    try:
                        groups = relations(p.provides, f"{p.label} Provides")
                    except ResolveError:
                        continue
                    for group in groups:
                        for r in group:
                            self.providers.setdefault(r.name, []).append((p, r.version if r.op == "=" else None))


def arch_ok(p: Pkg, rel: Rel, native: str) -> bool:
    q = rel.archqual
    if q is None or q == "native":
        return p.arch in (native, "all") or p.multi_arch == "foreign"
    if q == "any":
        return p.multi_arch == "allowed"
    return p.arch == q or (q == native and p.arch == "all")


def real_meets(p: Pkg, rel: Rel, native: str) -> bool:
    return p.name == rel.name and arch_ok(p, rel, native) and meets(p.version, rel.op, rel.version)


def provides_meets(p: Pkg, rel: Rel, native: str) -> bool:
    if not p.provides or not arch_ok(p, Rel(p.name, archqual=rel.archqual), native):
        return False
    for group in relations(p.provides, f"{p.label} Provides"):
        for r in group:
            if r.name == rel.name:
                if rel.op is None:
                    return True
                if r.op == "=" and r.version is not None and meets(r.version, rel.op, rel.version):
                    return True
    return False


class Resolver:
    def __init__(self, universe: Universe, *, prefer: dict[str, str] | None = None, upgrade: set[str] | None = None):
        self.u = universe
        self.prefer = dict(prefer or {})
        self.upgrade = set(upgrade or ())
        self.selected: dict[str, Pkg] = {}
        self.chains: dict[str, list[str]] = {}
        self.replaced: set[str] = set()
        self.provided: dict[str, list[Pkg]] = {}  # virtual name -> installed and added packages providing it
        for ps in universe.installed.values():
            for p in ps:
                self._index_provides(p)

    # --- what is there -------------------------------------------------------------
    def present(self) -> list[Pkg]:
        out = [p for name, ps in self.u.installed.items() if name not in self.replaced for p in ps]
        return out + list(self.selected.values())

    def present_meets(self, rel: Rel) -> bool:
        native = self.u.arch
        sel = self.selected.get(rel.name)
        if sel is not None and real_meets(sel, rel, native):
            return True
        if rel.name not in self.replaced and any(
            real_meets(p, rel, native) for p in self.u.installed.get(rel.name, [])
        ):
            return True
        for p in self.provided.get(rel.name, []):
            live = self.selected.get(p.name) is p or (p.name not in self.replaced and p.name not in self.selected)
            if live and provides_meets(p, rel, native):
                return True
        return False

    def _index_provides(self, p: Pkg) -> None:
        if not p.provides:
            return
        try:
            groups = relations(p.provides, f"{p.label} Provides")
        except ResolveError:
            return
        for group in groups:
            for r in group:
                self.provided.setdefault(r.name, []).append(p)

    # --- choosing --------------------------------------------------------------------
    def candidate(self, rel: Rel) -> Pkg | None:
        native = self.u.arch
        real = [p for p in self.u.cands(rel.name) if real_meets(p, rel, native)]
        if real:
            pinned = self.prefer.get(rel.name)
            if pinned and rel.name not in self.upgrade:
                for p in real:
                    if p.version == pinned:
                        return p
            return real[0]
        self.u.provider_index()
        provs = [p for p, _ in self.u.providers.get(rel.name, []) if provides_meets(p, rel, native)]
        if not provs:
            return None
        for p in provs:
            if self.prefer.get(p.name) == p.version and p.name not in self.upgrade:
                return p
        provs.sort(key=lambda p: version(p.version), reverse=True)
        provs.sort(key=lambda p: (PRIORITY.get(p.priority.lower(), 5), p.name))
        return provs[0]

    def add(self, p: Pkg, chain: list[str]) -> None:
        have = self.selected.get(p.name)
        if have is not None:
            if have != p:
                raise ResolveError(
                    f"{' -> '.join(chain + [p.label])}: needs {p.label} but "
                    f"{' -> '.join(self.chains[p.name])} needs {have.version}"
                )
            return
        self.selected[p.name] = p
        self.chains[p.name] = chain + [p.label]
        self._index_provides(p)
        if p.name in self.u.installed:
            self.replaced.add(p.name)
        for field_name, text in (("Pre-Depends", p.pre_depends), ("Depends", p.depends)):
            for group in relations(text, f"{p.label} {field_name}"):
                self.satisfy(group, chain + [p.label])

    def satisfy(self, group: list[Rel], chain: list[str]) -> None:
        if any(self.present_meets(r) for r in group):
            return
        errors: list[ResolveError] = []
        for r in group:  # the first alternative whose candidate can be installed, with all it needs
            cand = self.candidate(r)
            if cand is None:
                continue
            saved = self._save()
            try:
                self.add(cand, chain)
                return
            except ResolveError as exc:
                self._restore(saved)
                errors.append(exc)
        if errors:
            raise errors[0]
        self.fail(group, chain)

    def _save(self) -> tuple:
        return (
            dict(self.selected),
            dict(self.chains),
            set(self.replaced),
            {k: list(v) for k, v in self.provided.items()},
        )

    def _restore(self, saved: tuple) -> None:
        self.selected, self.chains, self.replaced, self.provided = saved

    def fail(self, group: list[Rel], chain: list[str]) -> None:
        text = " | ".join(str(r) for r in group)
        why = []
        for r in group:
            have = [p.version for p in self.u.cands(r.name)]
            if have:
                why.append(
                    f"{r.name} has {', '.join(have[:4])}" + (" (wrong architecture/Multi-Arch)" if not r.op else "")
                )
            else:
                why.append(f"no package {r.name}")
        raise ResolveError(
            f"cannot install {' -> '.join(chain)}: it needs {text}, which nothing satisfies for "
            f"{self.u.arch} ({'; '.join(why)}) in {self.u.where}"
        )

    # --- requests ---------------------------------------------------------------------
    def request(self, name: str, pinned: str | None) -> None:
        native = self.u.arch
        if pinned is None and self.present_meets(Rel(name)):
            return  # the base has it
        if pinned is not None and any(p.version == pinned for p in self.u.installed.get(name, [])):
            return  # the base has exactly that version
        real = self.u.cands(name)
        if pinned is not None:
            for p in real:
                if p.version == pinned:
                    self.add(p, [])
                    return
            have = ", ".join(p.version for p in real[:6]) or "none"
            raise ResolveError(
                f"apt-packages: no version {pinned} of {name} for {native} in {self.u.where} (available: {have})",
                hint=f"use one of them, or `{name}` for the newest",
            )
        if real:
            cand = self.candidate(Rel(name))
            if cand is None:
                raise ResolveError(f"apt-packages: {name} has no {native} package usable here in {self.u.where}")
            self.add(cand, [])
            return
        self.u.provider_index()
        provs = sorted({p.name for p, _ in self.u.providers.get(name, [])})
        if len(provs) == 1:
            self.add(self.candidate(Rel(name)) or self.u.cands(provs[0])[0], [])
            return
        if provs:
            raise ResolveError(
                f"apt-packages: {name} is a virtual package provided by {', '.join(provs[:8])}",
                hint="name one of them in [image] apt-packages",
            )
        raise ResolveError(
            f"apt-packages: no package named {name} for {native} in {self.u.where}",
            hint="check the name (apt-cache search), and that it is built for this architecture",
        )

    def resolve(self, requests: list[tuple[str, str | None]]) -> list[Pkg]:
        for name, pinned in sorted(set(requests), key=lambda r: (r[0], r[1] or "")):
            self.request(name, pinned)
        self._fix_installed()
        self._check_conflicts()
        return sorted(self.selected.values(), key=lambda p: p.name)

    # --- whole-set checks ---------------------------------------------------------------
    def _fix_installed(self) -> None:
        for _ in range(len(self.u.installed) + 1):
            broken = None
            for name in sorted(self.u.installed):
                if name in self.replaced:
                    continue
                for p in self.u.installed[name]:
                    for text in (p.pre_depends, p.depends):
                        try:
                            groups = relations(text, f"installed {p.label}")
                        except ResolveError:
                            continue  # the base's own metadata: not ours to judge
                        for group in groups:
                            if not any(self.present_meets(r) for r in group):
                                broken = (p, group)
                                break
                        if broken:
                            break
                    if broken:
                        break
                if broken:
                    break
            if broken is None:
                break
            p, group = broken
            cand = self.candidate(Rel(p.name))
            if cand is None or cand.version == p.version:
                raise ResolveError(
                    f"installing {', '.join(sorted(self.selected))} breaks the base's {p.label} "
                    f"(it needs {' | '.join(str(r) for r in group)}) and no other version of "
                    f"{p.name} in {self.u.where} fixes it"
                )
            self.add(cand, [f"(base {p.label} needs an upgrade)"])
        for p in list(self.selected.values()):  # added packages still satisfied after later upgrades
            for field_name, text in (("Pre-Depends", p.pre_depends), ("Depends", p.depends)):
                for group in relations(text, f"{p.label} {field_name}"):
                    if not any(self.present_meets(r) for r in group):
                        raise ResolveError(
                            f"cannot install {' -> '.join(self.chains[p.name])}: its "
                            f"{' | '.join(str(r) for r in group)} no longer holds after other upgrades"
                        )

    def _check_conflicts(self) -> None:
        native = self.u.arch
        present = self.present()
        for p in present:
            for field_name, text in (("Conflicts", p.conflicts), ("Breaks", p.breaks)):
                if not text:
                    continue
                try:
                    groups = relations(text, f"{p.label} {field_name}")
                except ResolveError:
                    if p.name in self.selected:
                        raise
                    continue
                for group in groups:
                    for r in group:
                        for q in present:
                            if q is p or q.name == p.name:
                                continue
                            if real_meets(q, r, native) or provides_meets(q, r, native):
                                if p.name not in self.selected and q.name not in self.selected:
                                    continue  # the base's own state
                                who = "added" if q.name in self.selected else "in the base"
                                raise ResolveError(
                                    f"{p.label} {field_name.lower()} {q.label} ({who}; {p.name}: "
                                    f"{field_name}: {r}): cannot install "
                                    f"{' -> '.join(self.chains.get(p.name) or self.chains.get(q.name) or [p.name])}"
                                )


def installed_from_status(text: str, where: str = "dpkg status") -> list[Pkg]:
    """Installed packages of a dpkg status file (python-debian)."""
    import logging

    from debian.deb822 import Deb822

    logging.getLogger("debian.deb822").setLevel(logging.ERROR)
    out = []
    try:
        for s in Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False):
            status = str(s.get("Status", "")).split()
            if len(status) != 3 or status[2] != "installed":
                continue
            name, ver = str(s.get("Package", "")).strip(), str(s.get("Version", "")).strip()
            if not NAME_RE.match(name) or not ver:
                continue
            try:
                version(ver)
            except ResolveError:
                continue
            out.append(
                Pkg(
                    name,
                    ver,
                    str(s.get("Architecture", "")).strip(),
                    str(s.get("Multi-Arch", "")).strip().lower(),
                    str(s.get("Depends", "")),
                    str(s.get("Pre-Depends", "")),
                    str(s.get("Provides", "")),
                    str(s.get("Conflicts", "")),
                    str(s.get("Breaks", "")),
                    str(s.get("Priority", "")),
                )
            )
    except ResolveError:
        raise
    except Exception as exc:
        raise ResolveError(f"{where}: malformed ({type(exc).__name__}: {str(exc)[:120]})") from None
    return out
