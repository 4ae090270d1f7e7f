"""Writing and editing mlenv.toml: init (a starter, an import, a curated entry), and
add / remove packages.

Edits go through tomlkit, so comments, key order and layout survive; the edited
text is validated (structure and every requirement) before anything is written.
The text-level functions (`starter_text`, `add_to_text`, `remove_from_text`) are
what `mlenv.Environment` uses in memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError
from ..runtime.fsutil import atomic_write

STARTER = """\
# mlenv.toml: the environment, declared. `mlenv lock` pins it into mlenv.lock.
# Format: docs/spec.md

[environment]
name = "{name}"
description = ""
python = "{python}"
# Lock targets (conda subdirs): linux-64, linux-aarch64, osx-64, osx-arm64, win-64.
platforms = ["linux-64"]

# Uncomment for conda packages (solved with rattler; no conda install needed).
# PyPI packages are then installed into the conda Python.
# [conda]
# channels = ["conda-forge"]
# dependencies = ["python {python}.*"]

[pypi]
# index-url = "https://pypi.example.internal/simple"   # default: PyPI; ${{TOKEN}} is read from the environment
dependencies = [
]

[variables]
# OMP_NUM_THREADS = "4"

# Virtual packages the conda solve may assume; never guessed from this machine.
# [system]
# cuda = "12.4"
# glibc = "2.28"

[image]
base = "python:{python}-slim-bookworm"
apt-packages = []
"""


@dataclass
class Initialized:
    path: Path
    notes: list[str] = field(default_factory=list)
    lock_written: Path | None = None

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "notes": self.notes,
            "lock": str(self.lock_written) if self.lock_written else None,
        }

    def message(self) -> str:
        extra = f" ({len(self.notes)} item(s) not carried over, see notes above)" if self.notes else ""
        return f"Wrote {self.path}{extra}"


@dataclass
class Edited:
    path: Path
    changes: list[str]  # "Added pandas>=2 to [pypi]", ...

    def to_json(self) -> dict:
        return {"path": str(self.path), "changes": self.changes}


def default_name(path: Path) -> str:
    """An environment name from the spec's directory name."""
    raw = path.resolve().parent.name.lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", raw).strip("-._") or "env"
    return name if name[0].isalnum() else f"env-{name}"


def starter_text(name: str, python: str = "3.11") -> str:
    if not re.fullmatch(r"3\.[0-9]{1,2}", python, re.ASCII):
        raise SpecError(f"python {python!r}: expected a version like 3.11")
    return STARTER.format(name=name, python=python)


def init(
    path: str | os.PathLike[str] = "mlenv.toml",
    *,
    name: str | None = None,
    python: str = "3.11",
    from_file: str | os.PathLike[str] | None = None,
    curated: str | None = None,
    force: bool = False,
    extras: tuple[str, ...] | list[str] = (),
    groups: tuple[str, ...] | list[str] = (),
) -> Initialized:
    """Write a starter mlenv.toml (commented), or import one from another tool's file,
    or start from a curated environment (its lock is written too). An import is named
    `name`, else by the file itself (Azure ML / environment.yml `name`), else by the
    directory; extras / groups: pyproject optional-dependencies and dependency-groups
    to include (docs/formats.md)."""
    target = Path(path)
    if target.exists() and not force:
        raise SpecError(f"{target} already exists", hint="pass --force to overwrite it")
    if from_file and curated:
        raise SpecError("--from and --curated cannot be combined")
    if (extras or groups) and not from_file:
        raise SpecError("--extra and --group select parts of a pyproject.toml: use them with --from")
    notes: list[str] = []
    curated_lock = None
    if from_file:
        from ..formats.importers import import_file

        text, notes = import_file(
            Path(from_file),
            name=name,
            default_name=default_name(target),
            project=target.absolute().parent,
            extras=tuple(extras),
            groups=tuple(groups),
        )
        _check_imported(text, target, Path(from_file))
    elif curated:
        from ..curated.catalog import lock_text, spec_text

        name = name or default_name(target)
        text = spec_text(curated, name=name)
        curated_lock = lock_text(curated)
    else:
        text = starter_text(name or default_name(target), python)
    from ..spec import parse_spec

    parse_spec(text, target)  # never write a spec mlenv itself would reject
    atomic_write(target, text)
    result = Initialized(target, notes)
    lock_path = target.with_name("mlenv.lock")
    if curated_lock and (force or not lock_path.exists()):
        # The shipped lock stays current under the new name: names are not in the spec hash.
        atomic_write(lock_path, curated_lock)
        result.lock_written = lock_path
        notes.append(f"wrote {lock_path} (the curated lock; `mlenv lock --check` passes)")
    return result


def _check_imported(text: str, target: Path, source: Path) -> None:
    """An import the spec's validation refuses is one error about the imported file, never a
    `mlenv.toml:17` about a file that was not written. The full validation runs (every
    requirement, and the mlenv.reqforms / index-URL rules for git and URL forms), so an
    import can never write what `mlenv lock` would refuse, a literal credential least of all;
    the message quotes URLs without their credentials (mlenv.spec._check_source)."""
    from ..spec import parse_spec

    try:
        parse_spec(text, target).validate_requirements()
    except SpecError as exc:
        msg = exc.message
        prefix = f"{target}:"
        if msg.startswith(prefix):
            line, _, rest = msg[len(prefix) :].partition(": ")
            msg = f"line {line} of the mlenv.toml it would write: {rest}"
        raise SpecError(
            f"{source}: the import gives a spec mlenv refuses ({msg}); nothing was written",
            hint=exc.hint or "edit the file, or import it and fix the result by hand",
        ) from None


# --- editing ---------------------------------------------------------------------------


def _parse_doc(text: str, path: Path):
    import tomlkit

    try:
        return tomlkit.parse(text)
    except Exception as exc:  # tomlkit's own parse errors
        from ..spec import parse_spec

        parse_spec(text, path)  # gives the file:line message
        raise SpecError(f"{path}: {exc}") from None


def _pypi_name(req: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from ..runtime.text import clip, first_line

    try:
        return canonicalize_name(Requirement(req).name)
    except InvalidRequirement as exc:
        raise SpecError(f"invalid PyPI requirement {clip(req, 120)!r}: {first_line(exc)}",
                        hint='use PEP 508 syntax, e.g. "pandas>=2"') from None  # fmt: skip


def _conda_name(dep: str) -> str:
    from rattler import MatchSpec

    from ..runtime.text import clip, first_line

    try:
        ms = MatchSpec(dep)
    except Exception as exc:  # rattler's InvalidMatchSpecError
        raise SpecError(f"invalid conda MatchSpec {clip(dep, 120)!r}: {first_line(exc)}",
                        hint='e.g. "numpy 1.26.*"') from None  # fmt: skip
    return ms.name.normalized if ms.name else dep


def _safe_key(fn, value: str) -> str:
    try:
        return fn(value)
    except SpecError:
        return value.strip().lower()


def _array(table, key: str):
    import tomlkit

    if key not in table:
        arr = tomlkit.array()
        arr.multiline(True)
        table[key] = arr
    return table[key]


def _validated(text: str, path: Path) -> str:
    from ..spec import parse_spec

    parse_spec(text, path).validate_requirements()
    return text


def add_to_text(text: str, path: Path, packages: list[str], *, conda: bool = False) -> tuple[str, list[str]]:
    """(new text, changes): packages added to [pypi] (or [conda]) dependencies; one
    already listed is replaced in place."""
    import tomlkit

    doc = _parse_doc(text, path)
    section = "conda" if conda else "pypi"
    if section not in doc:
        if conda:
            raise SpecError(f"{path}: no [conda] table", hint='add [conda] with channels = ["conda-forge"] first')
        doc.add(tomlkit.nl())
        doc[section] = tomlkit.table()
    deps = _array(doc[section], "dependencies")
    key = _conda_name if conda else _pypi_name
    changes = []
    for pkg in packages:
        name = key(pkg)
        existing = [i for i, item in enumerate(deps) if _safe_key(key, str(item)) == name]
        if existing:
            deps[existing[0]] = pkg
            changes.append(f"Updated {name} in [{section}]: {pkg}")
        else:
            deps.append(pkg)
            changes.append(f"Added {pkg} to [{section}]")
    return _validated(tomlkit.dumps(doc), path), changes


def remove_from_text(text: str, path: Path, packages: list[str], *, conda: bool = False,
                     pypi: bool = False) -> tuple[str, list[str]]:  # fmt: skip
    """(new text, changes): packages removed by name from [pypi] and/or [conda]."""
    import tomlkit

    doc = _parse_doc(text, path)
    sections = [s for s, on in (("pypi", not conda or pypi), ("conda", not pypi or conda)) if on]
    changes = []
    for pkg in packages:
        removed = False
        for section in sections:
            if section not in doc or "dependencies" not in doc[section]:
                continue
            key = _conda_name if section == "conda" else _pypi_name
            target = _safe_key(key, pkg)
            deps = doc[section]["dependencies"]
            for i in reversed(range(len(deps))):
                if _safe_key(key, str(deps[i])) == target:
                    del deps[i]
                    removed = True
                    changes.append(f"Removed {target} from [{section}]")
        if not removed:
            raise SpecError(f"{path}: {pkg!r} is not a dependency in [{'] or ['.join(sections)}]")
    return _validated(tomlkit.dumps(doc), path), changes


def _read(path: Path) -> str:
    from ..validation import MAX_SPEC_BYTES, read_text

    return read_text(path, MAX_SPEC_BYTES, SpecError, "mlenv.toml")


def add(packages: list[str] | tuple[str, ...], *, conda: bool = False,
        spec: str | os.PathLike[str] | None = None) -> Edited:  # fmt: skip
    """Add packages (PEP 508 strings, or MatchSpecs with conda=True) to mlenv.toml."""
    from .options import spec_file

    path = spec_file(spec)
    text, changes = add_to_text(_read(path), path, list(packages), conda=conda)
    atomic_write(path, text)
    return Edited(path, changes)


def remove(packages: list[str] | tuple[str, ...], *, conda: bool = False, pypi: bool = False,
           spec: str | os.PathLike[str] | None = None) -> Edited:  # fmt: skip
    """Remove packages by name from [pypi] and/or [conda] dependencies of mlenv.toml."""
    from .options import spec_file

    path = spec_file(spec)
    text, changes = remove_from_text(_read(path), path, list(packages), conda=conda, pypi=pypi)
    atomic_write(path, text)
    return Edited(path, changes)
