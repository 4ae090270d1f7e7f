"""`mlenv init`, `mlenv add`, `mlenv remove`: write and edit mlenv.toml.

Edits go through tomlkit so the user's comments, key order and layout
survive; the edited text is re-validated before it replaces the file."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import SpecError
from ..fsutil import atomic_write
from .common import spec_option, spec_path

STARTER = '''\
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
'''


@click.command()
@click.option("--name", default=None, help="Environment name (default: the directory name).")
@click.option("--python", "python", default="3.11", show_default=True, help="Python version.")
@click.option("--from", "from_file", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="Import environment.yml, requirements.txt, pyproject.toml or an Azure ML environment YAML.")
@click.option("--curated", default=None, metavar="NAME", help="Start from a curated environment (see `mlenv curated list`).")
@click.option("--force", is_flag=True, help="Overwrite an existing mlenv.toml.")
@click.option("--file", "-f", "spec_file", type=click.Path(dir_okay=False), default="mlenv.toml", show_default=True)
def init(name, python, from_file, curated, force, spec_file):
    """Write a starter mlenv.toml (commented), or import one."""
    path = Path(spec_file)
    if path.exists() and not force:
        raise SpecError(f"{path} already exists", hint="pass --force to overwrite it")
    if from_file and curated:
        raise SpecError("--from and --curated cannot be combined")
    name = name or _default_name(path)
    notes: list[str] = []
    curated_lock = None
    if from_file:
        from ..formats.importers import import_file

        text, notes = import_file(Path(from_file), name=name)
    elif curated:
        from ..curated.catalog import spec_text

        text = spec_text(curated, name=name)
        curated_lock = _curated_lock(curated)
    else:
        if not re.fullmatch(r"3\.[0-9]{1,2}", python, re.ASCII):
            raise SpecError(f"--python {python!r}: expected a version like 3.11")
        text = STARTER.format(name=name, python=python)
    from ..spec import parse_spec

    parse_spec(text, path)  # never write a spec mlenv itself would reject
    atomic_write(path, text)
    lock_path = path.with_name("mlenv.lock")
    if curated_lock and (force or not lock_path.exists()):
        # The shipped lock stays current under the new name: names are not in the spec hash.
        atomic_write(lock_path, curated_lock)
        notes.append(f"wrote {lock_path} (the curated lock; `mlenv lock --check` passes)")
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"Wrote {path}" + (f" ({len(notes)} item(s) not carried over, see notes above)" if notes else ""))


def _curated_lock(curated: str) -> str | None:
    from ..curated.catalog import lock_text

    return lock_text(curated)


def _default_name(path: Path) -> str:
    raw = path.resolve().parent.name.lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", raw).strip("-._") or "env"
    return name if name[0].isalnum() else f"env-{name}"


def _load_doc(path: Path):
    import tomlkit

    from ..validation import MAX_SPEC_BYTES, read_text

    text = read_text(path, MAX_SPEC_BYTES, SpecError, "mlenv.toml")
    try:
        return tomlkit.parse(text)
    except Exception as exc:
        from ..spec import parse_spec

        parse_spec(text, path)  # gives the file:line message
        raise SpecError(f"{path}: {exc}") from None


def _write_doc(path: Path, doc) -> None:
    import tomlkit

    from ..spec import parse_spec

    text = tomlkit.dumps(doc)
    spec = parse_spec(text, path)
    spec.validate_requirements()
    atomic_write(path, text)


def _pypi_name(req: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        return canonicalize_name(Requirement(req).name)
    except InvalidRequirement as exc:
        raise SpecError(f"invalid PyPI requirement {req!r}: {str(exc).splitlines()[0]}",
                        hint='use PEP 508 syntax, e.g. "pandas>=2"') from None


def _conda_name(dep: str) -> str:
    from rattler import MatchSpec

    try:
        ms = MatchSpec(dep)
    except Exception as exc:
        raise SpecError(f"invalid conda MatchSpec {dep!r}: {str(exc).splitlines()[0]}",
                        hint='e.g. "numpy 1.26.*"') from None
    return ms.name.normalized if ms.name else dep


def _array(table, key: str):
    import tomlkit

    if key not in table:
        arr = tomlkit.array()
        arr.multiline(True)
        table[key] = arr
    return table[key]


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--conda", is_flag=True, help="Add to [conda] dependencies instead of [pypi].")
@spec_option
def add(packages, conda, spec_file):
    """Add packages (PEP 508 strings, or MatchSpecs with --conda).

    A package already listed is replaced, in place."""
    import tomlkit

    path = spec_path(spec_file)
    doc = _load_doc(path)
    section = "conda" if conda else "pypi"
    if section not in doc:
        if conda:
            raise SpecError(f"{path}: no [conda] table", hint='add [conda] with channels = ["conda-forge"] first')
        doc.add(tomlkit.nl())
        doc[section] = tomlkit.table()
    deps = _array(doc[section], "dependencies")
    key = _conda_name if conda else _pypi_name
    for pkg in packages:
        name = key(pkg)
        existing = [i for i, item in enumerate(deps) if _safe_key(key, str(item)) == name]
        if existing:
            deps[existing[0]] = pkg
            click.echo(f"Updated {name} in [{section}]: {pkg}")
        else:
            deps.append(pkg)
            click.echo(f"Added {pkg} to [{section}]")
    _write_doc(path, doc)


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--conda", is_flag=True, help="Remove only from [conda] dependencies.")
@click.option("--pypi", is_flag=True, help="Remove only from [pypi] dependencies.")
@spec_option
def remove(packages, conda, pypi, spec_file):
    """Remove packages by name from [pypi] and/or [conda] dependencies."""
    path = spec_path(spec_file)
    doc = _load_doc(path)
    sections = [s for s, on in (("pypi", not conda or pypi), ("conda", not pypi or conda)) if on]
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
                    click.echo(f"Removed {target} from [{section}]")
        if not removed:
            raise SpecError(f"{path}: {pkg!r} is not a dependency in [{'] or ['.join(sections)}]")
    _write_doc(path, doc)


def _safe_key(fn, value: str) -> str:
    try:
        return fn(value)
    except SpecError:
        return value.strip().lower()
