"""`mlenv.Environment`: one environment, as a notebook user handles it.

    env = mlenv.Environment.create("fraud-train", python="3.11", pypi=["scikit-learn==1.5.2"],
                                   variables={"OMP_NUM_THREADS": "4"})
    env.add(pypi=["boruta"]); env.save()     # ./fraud-train/mlenv.toml, formatting kept
    lock = env.lock()                        # content hash, packages per platform
    image = env.build()                      # built or reused
    v = env.register(registry="oci://127.0.0.1:5000/team")
    old = mlenv.Environment.get("fraud-train", version=1, registry=...)

An Environment is an mlenv.toml (and its mlenv.lock) at `path`. Edits change the
text in memory; `save()` writes it. Actions that read the files (lock, build,
register, install, export) refuse unsaved edits, so what they act on is what is on
disk. Every action is the same function the CLI calls (mlenv.api.*), with the same
checks, options and errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlenvError, SpecError
from ..lockfile import Lock
from ..spec import Spec, parse_spec
from .progress import Progress

if TYPE_CHECKING:
    from ..registry.base import Version
    from .lockresults import CheckResult, LockOutcome
    from .results import Diff, Image, Installed, Registration, Verified, VersionList


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _toml_list(values) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


class Environment:
    def __init__(self, path: str | os.PathLike[str], text: str, *, lock_text: str | None = None,
                 saved: bool = False, notes: list[str] | None = None):  # fmt: skip
        self.path = Path(path).absolute()
        self._text = text
        self._spec = parse_spec(text, self.path)
        self._lock_text = lock_text  # registered/curated lock bytes to write with the spec (get, from_curated)
        self._saved = saved
        self.notes = list(notes or [])  # what an import could not carry over

    # --- constructors ------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        python: str | None = "3.11",
        pypi: list[str] | tuple[str, ...] = (),
        conda: list[str] | tuple[str, ...] = (),
        channels: list[str] | tuple[str, ...] = ("conda-forge",),
        variables: dict[str, str] | None = None,
        platforms: list[str] | tuple[str, ...] = ("linux-64",),
        index_url: str | None = None,
        base: str | None = None,
        apt_packages: list[str] | tuple[str, ...] = (),
        system: dict[str, str] | None = None,
        description: str = "",
        user_managed_python: str | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> Environment:
        """A new environment (not saved yet) in `directory` (default ./NAME).

        conda packages make it conda-managed (system-managed, in Azure ML's words: a
        conda env in /opt/mlenv/env, PyPI packages on its Python); without them PyPI
        packages go into a venv on the base image's Python. user_managed_python: the
        base image brings its own interpreter (Azure ML's user-managed dependencies)."""
        lines = ["[environment]", f"name = {_toml_str(name)}"]
        if description:
            lines.append(f"description = {_toml_str(description)}")
        if python:
            lines.append(f"python = {_toml_str(python)}")
        lines.append(f"platforms = {_toml_list(platforms)}")
        if conda:
            lines += ["", "[conda]", f"channels = {_toml_list(channels)}", f"dependencies = {_toml_list(conda)}"]
        lines += ["", "[pypi]"]
        if index_url:
            lines.append(f"index-url = {_toml_str(index_url)}")
        lines.append(f"dependencies = {_toml_list(pypi)}")
        if variables:
            lines += ["", "[variables]"] + [f"{k} = {_toml_str(v)}" for k, v in variables.items()]
        if system:
            lines += ["", "[system]"] + [f"{k} = {_toml_str(v)}" for k, v in system.items()]
        if base or apt_packages or user_managed_python:
            lines += ["", "[image]"]
            if base:
                lines.append(f"base = {_toml_str(base)}")
            if apt_packages:
                lines.append(f"apt-packages = {_toml_list(apt_packages)}")
            if user_managed_python:
                lines.append(f"python = {_toml_str(user_managed_python)}")
        directory = Path(directory) if directory is not None else Path.cwd() / name
        env = cls(directory / "mlenv.toml", "\n".join(lines) + "\n")
        env._spec.validate_requirements()
        return env

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> Environment:
        """The environment of an mlenv.toml (a file, or a directory holding one)."""
        from .options import spec_file
        from .spec import _read

        p = spec_file(path)
        return cls(p, _read(p), saved=True)

    @classmethod
    def from_file(cls, file: str | os.PathLike[str], *, name: str | None = None,
                  directory: str | os.PathLike[str] | None = None, extras: tuple[str, ...] | list[str] = (),
                  groups: tuple[str, ...] | list[str] = ()) -> Environment:  # fmt: skip
        """Import another tool's file (environment.yml, requirements.txt, pyproject.toml,
        an Azure ML environment YAML, pylock.toml); `.notes` says what was not carried over.
        Named `name`, else by the file (Azure ML / environment.yml `name`), else by the
        directory; extras / groups: pyproject parts to include."""
        from ..formats.importers import import_file

        src = Path(file)
        directory = Path(directory) if directory is not None else Path.cwd()
        from .spec import default_name

        text, notes = import_file(
            src,
            name=name,
            default_name=default_name(directory / "mlenv.toml"),
            project=directory.absolute(),
            extras=tuple(extras),
            groups=tuple(groups),
        )
        return cls(directory / "mlenv.toml", text, notes=notes)

    @classmethod
    def from_curated(cls, curated: str, *, name: str | None = None,
                     directory: str | os.PathLike[str] | None = None) -> Environment:  # fmt: skip
        """Start from a curated environment: its spec under `name` (default: the curated
        name) and its shipped lock, which stays current (names are not in the hash)."""
        from ..curated.catalog import lock_text, spec_text

        name = name or curated
        directory = Path(directory) if directory is not None else Path.cwd() / name
        return cls(directory / "mlenv.toml", spec_text(curated, name=name), lock_text=lock_text(curated))

    @classmethod
    def get(cls, name: str, version: int | str = "latest", *, registry: str | None = None,
            directory: str | os.PathLike[str] | None = None) -> Environment:  # fmt: skip
        """A registered version, exactly as registered (spec and lock bytes verified), in
        memory; `save()` writes both into `directory` (default ./NAME-vN)."""
        from .registry import fetch_version

        v, spec_bytes, lock_bytes, _, _ = fetch_version(f"{name}@{version}", registry=registry)
        directory = Path(directory) if directory is not None else Path.cwd() / f"{v.name}-v{v.version}"
        env = cls(directory / "mlenv.toml", spec_bytes.decode("utf-8"), lock_text=lock_bytes.decode("utf-8"))
        env.version = v
        return env

    version: Version | None = None  # the registry record, for an environment from `get`

    # --- what it is -------------------------------------------------------------------------
    @property
    def spec(self) -> Spec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def text(self) -> str:
        """The mlenv.toml text (with unsaved edits)."""
        return self._text

    @property
    def lock_path(self) -> Path:
        return self.path.with_name("mlenv.lock")

    @property
    def saved(self) -> bool:
        return self._saved and self._lock_text is None

    @property
    def locked(self) -> Lock | None:
        """The lock that goes with this spec (on disk, or the registered one in memory)."""
        from ..lockfile import loads_lock, read_lock

        if self._lock_text is not None:
            return loads_lock(self._lock_text, self.lock_path)
        return read_lock(self.lock_path) if self.lock_path.exists() else None

    @property
    def content_hash(self) -> str | None:
        lock = self.locked
        return lock.content_hash if lock else None

    def __repr__(self) -> str:
        state = "saved" if self.saved else "unsaved"
        return f"<mlenv.Environment {self.name} at {self.path} ({state})>"

    # --- edits (in memory) ---------------------------------------------------------------------
    def _set_text(self, text: str) -> None:
        self._spec = parse_spec(text, self.path)
        self._text = text
        self._saved = False

    def add(self, pypi: list[str] | tuple[str, ...] = (), conda: list[str] | tuple[str, ...] = ()) -> Environment:
        """Add (or replace, by name) PyPI requirements and conda MatchSpecs; formatting kept."""
        from .spec import add_to_text

        text = self._text
        if pypi:
            text, _ = add_to_text(text, self.path, list(pypi))
        if conda:
            text, _ = add_to_text(text, self.path, list(conda), conda=True)
        self._set_text(text)
        return self

    def remove(self, *names: str) -> Environment:
        """Remove packages by name from [pypi] and [conda]."""
        from .spec import remove_from_text

        text, _ = remove_from_text(self._text, self.path, list(names))
        self._set_text(text)
        return self

    def save(self, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
        """Write mlenv.toml (and, for a registered or curated environment, its lock with
        it: both files or neither). Another file already at the path is kept unless it is
        this environment's, or force=True."""
        from ..runtime.fsutil import atomic_write

        if path is not None:
            p = Path(path)
            self.path = (p / "mlenv.toml" if p.suffix != ".toml" else p).absolute()
            self._spec = parse_spec(self._text, self.path)
        if self._lock_text is not None:
            from .registry import write_pair

            known: set[str] = set()
            if self.version is not None:
                known = {self.version.spec_sha256, self.version.lock_sha256}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_pair(self.path.parent, self._text.encode(), self._lock_text.encode(), force=force, known=known)
            self._lock_text = None
        else:
            if self.path.exists() and not force and not self._saved:
                old = self.path.read_text(encoding="utf-8", errors="replace")
                if old != self._text and parse_spec(old, self.path).name != self.name:
                    raise SpecError(f"{self.path} holds another environment; refusing to overwrite it",
                                    hint="save(path=...) elsewhere, or save(force=True)")  # fmt: skip
            atomic_write(self.path, self._text)
        self._saved = True
        return self.path

    def _on_disk(self, doing: str) -> str:
        if not self.saved:
            raise MlenvError(f"{self.name}: unsaved changes; save() before you {doing}",
                             hint=f"env.save() writes {self.path}")  # fmt: skip
        return str(self.path)

    # --- actions (the CLI's functions) --------------------------------------------------------
    def lock(self, *, upgrade: bool = False, upgrade_packages=(), platforms=(), offline: bool = False,
             progress: Progress | None = None) -> LockOutcome:  # fmt: skip
        """Solve (only what must be solved) and write mlenv.lock: see mlenv.api.lock.lock."""
        from .lock import lock

        return lock(self._on_disk("lock"), upgrade=upgrade, upgrade_packages=upgrade_packages,
                    platforms=platforms, offline=offline, progress=progress)  # fmt: skip

    def check(self, *, offline: bool = False) -> CheckResult:
        from .lock import check

        return check(self._on_disk("check the lock"), offline=offline)

    def build(self, **options: Any) -> Image:
        """Build or reuse the image: see mlenv.api.image.build for the options."""
        from .image import build

        return build(self._on_disk("build"), **options)

    def register(
        self, registry: str | None = None, *, description: str | None = None, image: bool = True
    ) -> Registration:
        from .registry import register

        return register(self._on_disk("register"), registry=registry, description=description, image=image)

    def versions(self, registry: str | None = None, *, include_archived: bool = False) -> VersionList:
        from .registry import versions

        return versions(self.name, registry=registry, include_archived=include_archived)

    def install(self, prefix: str | os.PathLike[str], **options: Any) -> Installed:
        from .install import install

        return install(prefix, spec=self._on_disk("install"), **options)

    def verify(
        self, *, prefix: str | os.PathLike[str] | None = None, image: str | None = None, **options: Any
    ) -> Verified:
        from .install import verify

        return verify(prefix=prefix, image=image, spec=self._on_disk("verify"), **options)

    def export(self, fmt: str, platform: str | None = None) -> str:
        from .export import export

        return export(fmt, spec=self._on_disk("export"), platform=platform).text

    def diff(self, other: Environment) -> Diff:
        """What changed from `other`'s lock to this one's."""
        from ..registry.diff import diff_locks
        from .results import Diff

        a, b = other.locked, self.locked
        if a is None or b is None:
            raise MlenvError("diff needs both environments locked", hint="lock() them first")
        left = other.version.ref if other.version is not None else f"{other.name} ({a.short_hash})"
        right = self.version.ref if self.version is not None else f"{self.name} ({b.short_hash})"
        return Diff(left, right, diff_locks(a, b))

    def _repr_html_(self) -> str:
        from .html import block, details, esc
        from .lockresults import lock_html

        lock = None
        try:
            lock = self.locked
        except MlenvError:
            pass
        s = self._spec
        facts = [("path", self.path), ("state", "saved" if self.saved else "unsaved"), ("python", s.python),
                 ("platforms", ", ".join(s.platforms)), ("conda", ", ".join(s.conda_dependencies)),
                 ("pypi", ", ".join(s.pypi_dependencies)),
                 ("variables", ", ".join(f"{k}={v}" for k, v in sorted(s.variables.items()))),
                 ("base image", s.base_image)]  # fmt: skip
        body = details("mlenv.toml", f"<pre>{esc(self._text)}</pre>")
        if lock is not None:
            body += lock_html(lock, "mlenv.lock")
        return block(f"Environment {self.name}", facts, body)
