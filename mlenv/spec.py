"""mlenv.toml: the model, its validation, and the spec hash.

Loading is split in two so a no-op `mlenv lock` stays fast:
- `load_spec()` parses with tomllib and checks structure (keys, types, names,
  platforms): cheap, enough to compute the spec hash.
- `Spec.validate_requirements()` parses every PEP 508 and MatchSpec string
  (packaging, py-rattler): run only when the lock must be checked or solved.
Every error names file:line and is raised as SpecError (one line, no traceback).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecError

SPEC_FILENAME = "mlenv.toml"
LOCK_FILENAME = "mlenv.lock"

PLATFORMS = ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64")
SYSTEM_KEYS = ("cuda", "glibc", "osx", "linux")

SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "environment": {"name": str, "description": str, "python": str, "platforms": list},
    "conda": {"channels": list, "dependencies": list},
    "pypi": {"index-url": str, "extra-index-urls": list, "find-links": list, "dependencies": list,
             "constraints": list, "overrides": list},
    "variables": {},  # free-form: NAME = "value"
    "system": {k: str for k in SYSTEM_KEYS},
    "image": {"base": str, "apt-packages": list, "python": str, "steps": list},
}

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
PYTHON_RE = re.compile(r"^3\.\d{1,2}(\.\d{1,3})?$")
VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")
VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")

DEFAULT_BASE_IMAGE = "python:{python}-slim-bookworm"


@dataclass
class Spec:
    path: Path
    text: str
    name: str
    description: str = ""
    python: str | None = None
    platforms: list[str] = field(default_factory=lambda: ["linux-64"])
    channels: list[str] = field(default_factory=list)
    conda_dependencies: list[str] = field(default_factory=list)
    has_conda: bool = False
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    pypi_dependencies: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)  # pages/directories listing distribution files
    constraints: list[str] = field(default_factory=list)  # uv's --constraint: bounds, not requirements
    overrides: list[str] = field(default_factory=list)  # uv's --override: replace every requirement on a name
    variables: dict[str, str] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    base_image: str = ""
    apt_packages: list[str] = field(default_factory=list)
    interpreter: str | None = None  # user-managed image: the interpreter the base image already has
    steps: list[str] = field(default_factory=list)

    # --- derived -----------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(LOCK_FILENAME)

    def conda_specs(self) -> list[str]:
        """Conda dependencies, with `python X.Y.*` added when [environment] python
        is set and the conda list does not name python itself."""
        deps = list(self.conda_dependencies)
        # [image] python: the interpreter is the base image's (user-managed); conda adds libraries beside it
        if self.has_conda and self.python and not self.interpreter and not any(_conda_name(d) == "python" for d in deps):
            deps.insert(0, f"python {self.python}.*" if self.python.count(".") == 1 else f"python =={self.python}")
        return deps

    def conda_provides_python(self) -> bool:
        return self.has_conda and any(_conda_name(d) == "python" for d in self.conda_specs())

    def normalized(self) -> dict:
        """Everything that decides the solve and the image, in a canonical form:
        name, description, comments, key order and dependency order do not count.
        Index credentials are stripped so rotating a token does not stale a lock."""
        return {
            "python": self.python,
            "platforms": sorted(set(self.platforms)),
            "conda": None
            if not self.has_conda
            else {
                "channels": [strip_credentials(c).rstrip("/") for c in self.channels],  # order is priority
                "dependencies": sorted({_squash(d) for d in self.conda_specs()}),
            },
            "pypi": self._normalized_pypi(),
            "variables": dict(sorted(self.variables.items())),
            "system": dict(sorted(self.system.items())),
            "image": {
                "base": self.base_image,
                "apt-packages": sorted(set(self.apt_packages)),
                "python": self.interpreter,
                "steps": list(self.steps),
            },
        }

    def _normalized_pypi(self) -> dict:
        out: dict = {
            "index-url": strip_credentials(self.index_url) if self.index_url else None,
            "extra-index-urls": [strip_credentials(u) for u in self.extra_index_urls],
            "dependencies": sorted({_squash(d) for d in self.pypi_dependencies}),
        }
        # only when set, so the spec hash of every spec without them is what it was
        if self.find_links:
            out["find-links"] = [strip_credentials(u) for u in self.find_links]  # order is priority
        if self.constraints:
            out["constraints"] = sorted({_squash(c) for c in self.constraints})
        if self.overrides:
            out["overrides"] = sorted({_squash(o) for o in self.overrides})
        return out

    def spec_hash(self) -> str:
        return "sha256:" + sha256_json(self.normalized())

    # --- full validation (imports packaging and rattler) ---------------------
    def validate_requirements(self) -> None:
        from packaging.requirements import InvalidRequirement, Requirement

        for dep in self.pypi_dependencies:
            try:
                req = Requirement(dep)
            except InvalidRequirement as exc:
                raise SpecError(
                    f"{self.where('pypi', 'dependencies', dep)}: invalid PyPI requirement {dep!r}: "
                    f"{_first_line(exc)}",
                    hint="use PEP 508 syntax, e.g. \"pandas>=2,<3\" or \"torch==2.4.*\"",
                ) from None
            if req.url:
                self._check_direct(dep)
        for key in ("constraints", "overrides"):
            for line in getattr(self, key):
                try:
                    req = Requirement(line)
                except InvalidRequirement as exc:
                    raise SpecError(f"{self.where('pypi', key, line)}: invalid {key[:-1]} {line!r}: {_first_line(exc)}",
                                    hint='e.g. "urllib3<2" (PEP 508: a name, a version range, a marker)') from None  # fmt: skip
                if req.url or req.extras:
                    raise SpecError(f"{self.where('pypi', key, line)}: a {key[:-1]} is a name with a version range "
                                    f"and a marker, not {'a URL' if req.url else 'extras'}: {line!r}")  # fmt: skip
        if self.has_conda:
            from rattler import MatchSpec

            for dep in self.conda_dependencies:
                try:
                    MatchSpec(dep)
                except Exception as exc:  # rattler raises its own InvalidMatchSpecError
                    raise SpecError(
                        f"{self.where('conda', 'dependencies', dep)}: invalid conda MatchSpec {dep!r}: "
                        f"{_first_line(exc)}",
                        hint="e.g. \"numpy 1.26.*\", \"python >=3.11,<3.12\" or \"conda-forge::pytorch\"",
                    ) from None
            self._check_python_pin()

    def _check_direct(self, dep: str) -> None:
        """A git, URL or path requirement (mlenv.reqforms): supported form, and a local path
        inside the project."""
        from .reqforms import PATH, parse

        where = self.where("pypi", "dependencies", dep)
        try:
            form = parse(dep)
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}",
                            hint="git+https://host/repo@ref#subdirectory=dir, https://host/x.whl#sha256=..., "
                                 "or ./path relative to mlenv.toml") from None  # fmt: skip
        if form.kind == PATH:
            import os

            root = os.path.realpath(self.path.parent)
            target = os.path.realpath(os.path.join(root, form.path or "."))
            if target != root and not target.startswith(root + os.sep):
                raise SpecError(f"{where}: {dep!r} points outside the project ({form.describe()} is not under the "
                                f"directory of {self.path.name})",
                                hint="local packages must live inside the project, so the lock means the same on "
                                     "every machine")  # fmt: skip
            if not (os.path.isfile(target) if form.archive else os.path.isdir(target)):
                raise SpecError(f"{where}: {form.describe()}: no such {'file' if form.archive else 'directory'}")

    def _check_python_pin(self) -> None:
        if not self.python:
            return
        from rattler import MatchSpec, Version

        for dep in self.conda_dependencies:
            if _conda_name(dep) != "python":
                continue
            ms = MatchSpec(dep)
            if ms.version is None:
                continue
            from rattler import VersionSpec

            ok = VersionSpec(str(ms.version)).matches(Version(self.python))
            if not ok and self.python.count(".") == 1:
                # "3.11" means any 3.11.x: accept when some patch release fits.
                ok = any(VersionSpec(str(ms.version)).matches(Version(f"{self.python}.{p}")) for p in range(0, 40))
            if not ok:
                raise SpecError(
                    f"{self.where('conda', 'dependencies', dep)}: conda pins {dep!r} but "
                    f"[environment] python = \"{self.python}\" "
                    f"({self.where('environment', 'python')})",
                    hint="make the two agree, or drop one of them",
                )

    # --- locating keys for error messages --------------------------------------
    def where(self, table: str, key: str | None = None, value: str | None = None) -> str:
        return f"{self.path}:{locate(self.text, table, key, value)}"


# -----------------------------------------------------------------------------


def find_spec(start: Path | None = None) -> Path:
    """The mlenv.toml in `start` (a file or directory), default the cwd."""
    start = Path.cwd() if start is None else Path(start)
    path = start if start.suffix == ".toml" else start / SPEC_FILENAME
    if not path.is_file():
        raise SpecError(
            f"{path}: no such file",
            hint="run `mlenv init` to create one, or pass --file/-C to point at it",
        )
    return path


def load_spec(path: str | os.PathLike[str]) -> Spec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file", hint="run `mlenv init` to create one") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> Spec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = m.group(1) if m else "1"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise SpecError(f"{path}:{line}: invalid TOML: {msg}") from None

    def where(table: str, key: str | None = None, value: str | None = None) -> str:
        return f"{path}:{locate(text, table, key, value)}"

    for table, value in data.items():
        if table not in SCHEMA:
            raise SpecError(f"{where(table)}: unknown table [{table}]{_did_you_mean(table, SCHEMA)}")
        if not isinstance(value, dict):
            raise SpecError(f"{where(table)}: `{table}` must be a table ([{table}])")
        allowed = SCHEMA[table]
        for key, item in value.items():
            if table == "variables":
                if not VARIABLE_RE.match(key):
                    raise SpecError(f"{where(table, key)}: invalid variable name {key!r}")
                if not isinstance(item, str):
                    raise SpecError(
                        f"{where(table, key)}: variable {key} must be a string",
                        hint=f'quote it: {key} = "{_toml_scalar(item)}"',
                    )
                continue
            if key not in allowed:
                raise SpecError(f"{where(table, key)}: unknown key `{key}` in [{table}]{_did_you_mean(key, allowed)}")
            expected = allowed[key]
            if not isinstance(item, expected):
                kind = "a list of strings" if expected is list else "a string"
                raise SpecError(f"{where(table, key)}: [{table}] {key} must be {kind}")
            if expected is list:
                for element in item:
                    if not isinstance(element, str):
                        raise SpecError(f"{where(table, key)}: [{table}] {key} must be a list of strings")

    env = data.get("environment")
    if env is None:
        raise SpecError(f"{path}:1: missing [environment] table", hint='add [environment] with name = "..."')
    name = env.get("name")
    if name is None:
        raise SpecError(f"{where('environment')}: [environment] needs a name", hint='e.g. name = "fraud-train"')
    if not NAME_RE.match(name):
        raise SpecError(
            f"{where('environment', 'name')}: invalid environment name {name!r}",
            hint="lowercase letters, digits, '.', '_' and '-'; it becomes an image name",
        )
    python = env.get("python")
    if python is not None and not PYTHON_RE.match(python):
        raise SpecError(f"{where('environment', 'python')}: invalid python version {python!r}", hint='e.g. "3.11" or "3.11.9"')
    platforms = env.get("platforms", ["linux-64"])
    if not platforms:
        raise SpecError(f"{where('environment', 'platforms')}: platforms must not be empty")
    for p in platforms:
        if p not in PLATFORMS:
            raise SpecError(
                f"{where('environment', 'platforms', p)}: unknown platform {p!r}{_did_you_mean(p, PLATFORMS)}",
                hint="one of " + ", ".join(PLATFORMS),
            )
    if len(set(platforms)) != len(platforms):
        raise SpecError(f"{where('environment', 'platforms')}: a platform is listed twice")

    conda = data.get("conda")
    pypi = data.get("pypi", {})
    system = data.get("system", {})
    image = data.get("image", {})

    for key, value in system.items():
        if not VERSION_RE.match(value):
            raise SpecError(f"{where('system', key)}: invalid version {value!r} for [system] {key}", hint='e.g. cuda = "12.4"')

    channels = list(conda.get("channels", [])) if conda is not None else []
    if conda is not None and not channels:
        raise SpecError(f"{where('conda')}: [conda] needs at least one channel", hint='e.g. channels = ["conda-forge"]')
    conda_deps = list(conda.get("dependencies", [])) if conda is not None else []
    for dep in conda_deps:
        if not dep.strip():
            raise SpecError(f"{where('conda', 'dependencies')}: empty conda dependency")
    pypi_deps = list(pypi.get("dependencies", []))
    for dep in pypi_deps:
        if not dep.strip():
            raise SpecError(f"{where('pypi', 'dependencies')}: empty PyPI requirement")
    for key in ("index-url",):
        if key in pypi and not _is_url(pypi[key]):
            raise SpecError(f"{where('pypi', key)}: {key} must be an http(s):// or file:// URL")
    for url in pypi.get("extra-index-urls", []):
        if not _is_url(url):
            raise SpecError(f"{where('pypi', 'extra-index-urls', url)}: {url!r} must be an http(s):// or file:// URL")
    for url in pypi.get("find-links", []):
        if not _is_url(url):
            raise SpecError(f"{where('pypi', 'find-links', url)}: {url!r} must be an http(s):// or file:// URL "
                            "(a page or directory listing wheels)")  # fmt: skip
    for key in ("constraints", "overrides"):
        for line in pypi.get(key, []):
            if not line.strip():
                raise SpecError(f"{where('pypi', key)}: empty {key[:-1]}")

    for pkg in image.get("apt-packages", []):
        if not APT_RE.match(pkg):
            raise SpecError(f"{where('image', 'apt-packages', pkg)}: invalid Debian package name {pkg!r}")
    interpreter = image.get("python")
    if interpreter is not None and not interpreter.startswith("/"):
        raise SpecError(f"{where('image', 'python')}: [image] python must be an absolute interpreter path, e.g. /usr/bin/python3")

    if pypi_deps and conda is None and python is None:
        raise SpecError(
            f"{where('environment')}: PyPI packages need [environment] python (the base image's Python version)",
            hint='e.g. python = "3.11"',
        )
    base = image.get("base")
    if base is None:
        if python is None:
            if conda is None:
                raise SpecError(
                    f"{where('environment')}: set [environment] python or [image] base",
                    hint='e.g. python = "3.11"; the base image defaults to python:<python>-slim-bookworm',
                )
            base = "debian:bookworm-slim"
        else:
            base = DEFAULT_BASE_IMAGE.format(python=".".join(python.split(".")[:2]))
    elif not base.strip() or any(c.isspace() for c in base):
        raise SpecError(f"{where('image', 'base')}: invalid image reference {base!r}")

    if pypi_deps and conda is not None and python is None and not any(_conda_name(d) == "python" for d in conda_deps):
        raise SpecError(
            f"{where('pypi', 'dependencies')}: PyPI packages in a conda environment need a conda Python",
            hint='add python = "3.11" to [environment] or "python 3.11.*" to [conda] dependencies',
        )

    return Spec(
        path=path,
        text=text,
        name=name,
        description=env.get("description", ""),
        python=python,
        platforms=list(platforms),
        channels=channels,
        conda_dependencies=conda_deps,
        has_conda=conda is not None,
        index_url=pypi.get("index-url"),
        extra_index_urls=list(pypi.get("extra-index-urls", [])),
        pypi_dependencies=pypi_deps,
        find_links=list(pypi.get("find-links", [])),
        constraints=list(pypi.get("constraints", [])),
        overrides=list(pypi.get("overrides", [])),
        variables=dict(data.get("variables", {})),
        system=dict(system),
        base_image=base,
        apt_packages=list(image.get("apt-packages", [])),
        interpreter=interpreter,
        steps=list(image.get("steps", [])),
    )


# --- helpers ------------------------------------------------------------------


def sha256_json(obj: object) -> str:
    """sha256 hex of the canonical JSON of obj (sorted keys, no spaces, UTF-8)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def strip_credentials(url: str) -> str:
    """https://user:token@host/simple -> https://host/simple (for locks, hashes, logs)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


def expand_env(url: str) -> str:
    """${VAR} in index URLs is taken from the environment at solve/install time,
    so tokens live in the environment and never in mlenv.toml or mlenv.lock."""

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in os.environ:
            raise SpecError(f"index URL refers to ${{{var}}} but {var} is not set in the environment")
        return os.environ[var]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, url)


def _is_url(value: str) -> bool:
    return bool(re.match(r"^(https?|file)://\S+$", value))


def _squash(s: str) -> str:
    return " ".join(s.split())


def _conda_name(spec: str) -> str:
    """The package name of a MatchSpec string, without parsing it fully."""
    s = spec.strip()
    if "::" in s:
        s = s.split("::", 1)[1]
    m = re.match(r"^([A-Za-z0-9_.\-]+)", s)
    return m.group(1).lower() if m else s


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _did_you_mean(word: str, options) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _toml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_HEADER_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"']+)\s*\]\s*(#.*)?$")


def locate(text: str, table: str, key: str | None = None, value: str | None = None) -> int:
    """1-based line of [table] key (and of a string `value` inside it), for errors.

    A light scan rather than a full TOML parser with positions: it handles
    headers, dotted keys (`conda.channels = ...`) and multi-line arrays, which
    is what mlenv.toml uses."""
    lines = text.splitlines()
    current = None
    table_line = None
    key_line = None
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    dotted_re = re.compile(rf"^\s*{re.escape(table)}\.[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    for i, line in enumerate(lines, 1):
        m = _HEADER_RE.match(line)
        if m:
            current = m.group(1).strip("\"'")
            if current == table and table_line is None:
                table_line = i
            if key and current == f"{table}.{key}":  # [environment.extra]
                return i
            continue
        if key_re is None:
            continue
        if (current == table and key_re.match(line)) or (current is None and dotted_re.match(line)):
            key_line = i
            break
    if key_line is None:
        return table_line or 1
    if value is None:
        return key_line
    needles = (f'"{value}"', f"'{value}'")
    depth = 0
    for j in range(key_line - 1, len(lines)):
        line = lines[j]
        if any(n in line for n in needles):
            return j + 1
        depth += line.count("[") - line.count("]")
        if j > key_line - 1 and (depth <= 0 or _HEADER_RE.match(line)):
            break
    return key_line
