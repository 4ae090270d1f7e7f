"""mlenv.toml: the model, its validation, and the spec hash.

Loading is split in two so a no-op `mlenv lock` stays fast:
- `load_spec()` parses with tomllib and checks structure (keys, types, names,
  platforms): cheap, enough to compute the spec hash.
- `Spec.validate_requirements()` parses every PEP 508 and MatchSpec string
  (packaging, py-rattler): run only when the lock must be checked or solved.
Every error names file:line and is raised as SpecError (one line, no traceback).
The file is untrusted input (docs/security.md): its size and nesting are bounded
(mlenv.validation), every string is typed and checked against an anchored ASCII
pattern or for control characters, URLs against the allowed schemes, and a literal
credential in an index or channel URL is refused.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecError
from .runtime.digest import sha256  # not hashlib: loading OpenSSL would cost the no-op lock 3 ms
from .runtime.secrets import has_literal_credential, split_userinfo, strip_credentials
from .validation import MAX_SPEC_BYTES, has_control, loads_toml, quote, read_text

SPEC_FILENAME = "mlenv.toml"
LOCK_FILENAME = "mlenv.lock"

PLATFORMS = ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64")
SYSTEM_KEYS = ("cuda", "glibc", "osx", "linux")

SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "environment": {"name": str, "description": str, "python": str, "platforms": list},
    "conda": {"channels": list, "dependencies": list},
    "pypi": {
        "index-url": str,
        "extra-index-urls": list,
        "find-links": list,
        "dependencies": list,
        "constraints": list,
        "overrides": list,
    },
    "variables": {},  # free-form: NAME = "value"
    "system": dict.fromkeys(SYSTEM_KEYS, str),
    "image": {"base": str, "apt-packages": list, "python": str, "steps": list},
}

# Anchored with \Z (a `$` would let a trailing newline through) and ASCII-only ([0-9], not \d,
# which also matches other scripts' digits): docs/security.md, "Validation rules".
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}\Z", re.ASCII)
PYTHON_RE = re.compile(r"^3\.[0-9]{1,2}(\.[0-9]{1,3})?\Z", re.ASCII)
VERSION_RE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}\Z", re.ASCII)
VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z", re.ASCII)
APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}(=[A-Za-z0-9.+~:-]{1,128})?\Z", re.ASCII)
# A named conda channel, optionally with labels: conda-forge, conda-forge/label/rc. A segment
# cannot start with '.', so '..' is never a segment.
CHANNEL_NAME_RE = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}){0,8}\Z", re.ASCII
)
INTERPRETER_RE = re.compile(r"^/[A-Za-z0-9._+/-]{1,1023}\Z", re.ASCII)
URL_SCHEMES = ("https", "http", "file")
MAX_URL = 2048
MAX_IMAGE_REF = 512
CREDENTIAL_HINT = (
    "write it as a reference read from the environment at solve/install time, e.g. "
    "https://${PYPI_USER}:${PYPI_TOKEN}@host/simple, or put it in ~/.netrc or your keyring"
)

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
        if (
            self.has_conda
            and self.python
            and not self.interpreter
            and not any(_conda_name(d) == "python" for d in deps)
        ):
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
                    f"{self.where('pypi', 'dependencies', dep)}: invalid PyPI requirement {quote(dep)}: "
                    f"{_first_line(exc)}",
                    hint='use PEP 508 syntax, e.g. "pandas>=2,<3" or "torch==2.4.*"',
                ) from None
            if req.url:
                self._check_direct(dep)
        for key in ("constraints", "overrides"):
            for line in getattr(self, key):
                try:
                    req = Requirement(line)
                except InvalidRequirement as exc:
                    raise SpecError(f"{self.where('pypi', key, line)}: invalid {key[:-1]} {quote(line)}: {_first_line(exc)}",
                                    hint='e.g. "urllib3<2" (PEP 508: a name, a version range, a marker)') from None  # fmt: skip
                if req.url or req.extras:
                    raise SpecError(f"{self.where('pypi', key, line)}: a {key[:-1]} is a name with a version range "
                                    f"and a marker, not {'a URL' if req.url else 'extras'}: {quote(line)}")  # fmt: skip
        if self.has_conda:
            from rattler import MatchSpec

            for dep in self.conda_dependencies:
                try:
                    MatchSpec(dep)
                except Exception as exc:  # rattler raises its own InvalidMatchSpecError
                    raise SpecError(
                        f"{self.where('conda', 'dependencies', dep)}: invalid conda MatchSpec {quote(dep)}: "
                        f"{_first_line(exc)}",
                        hint='e.g. "numpy 1.26.*", "python >=3.11,<3.12" or "conda-forge::pytorch"',
                    ) from None
            self._check_python_pin()

    def _check_direct(self, dep: str) -> None:
        """A git, URL or path requirement (mlenv.reqforms): supported form, and a local path
        inside the project."""
        from .reqforms import GIT, PATH, URL, parse

        where = self.where("pypi", "dependencies", dep)
        try:
            form = parse(dep)
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}",
                            hint="git+https://host/repo@ref#subdirectory=dir, https://host/x.whl#sha256=..., "
                                 "or ./path relative to mlenv.toml") from None  # fmt: skip
        if form.kind in (GIT, URL):  # the index-URL rules: schemes, ${VAR} only as userinfo, no literal secret
            _check_source(
                form.url or "", where, f"{form.name}: the {'git repository' if form.kind == GIT else 'archive'} URL"
            )
        if form.kind == PATH:
            import os

            root = os.path.realpath(self.path.parent)
            target = os.path.realpath(os.path.join(root, form.path or "."))
            if target != root and not target.startswith(root + os.sep):
                raise SpecError(f"{where}: {quote(dep)} points outside the project ({form.describe()} is not under the "
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
                ok = any(VersionSpec(str(ms.version)).matches(Version(f"{self.python}.{p}")) for p in range(40))
            if not ok:
                raise SpecError(
                    f"{self.where('conda', 'dependencies', dep)}: conda pins {quote(dep)} but "
                    f'[environment] python = "{self.python}" '
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
        text = read_text(path, MAX_SPEC_BYTES, SpecError, "mlenv.toml")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file", hint="run `mlenv init` to create one") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> Spec:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes; refusing to read it as mlenv.toml")
    data = loads_toml(text, path, SpecError)

    def where(table: str, key: str | None = None, value: str | None = None) -> str:
        return f"{path}:{locate(text, table, key, value)}"

    for table, value in data.items():
        if table not in SCHEMA:
            raise SpecError(f"{where(table)}: unknown table [{_name(table)}]{_did_you_mean(table, SCHEMA)}")
        if not isinstance(value, dict):
            raise SpecError(f"{where(table)}: `{table}` must be a table ([{table}])")
        allowed = SCHEMA[table]
        for key, item in value.items():
            if table == "variables":
                if not VARIABLE_RE.match(key):
                    raise SpecError(
                        f"{where(table, key)}: invalid variable name {quote(key)}",
                        hint="ASCII letters, digits and '_', not starting with a digit (at most 128)",
                    )
                if not isinstance(item, str):
                    raise SpecError(
                        f"{where(table, key)}: variable {key} must be a string",
                        hint=f'quote it: {key} = "{_toml_scalar(item)}"'
                        if not isinstance(item, (list, dict))
                        else None,
                    )
                if has_control(item, allow_newlines=True):
                    raise SpecError(
                        f"{where(table, key)}: variable {key} holds a control character",
                        hint="only tab and newline are allowed in a value",
                    )
                continue
            if key not in allowed:
                raise SpecError(
                    f"{where(table, key)}: unknown key `{_name(key)}` in [{table}]{_did_you_mean(key, allowed)}"
                )
            expected = allowed[key]
            if not isinstance(item, expected):
                kind = "a list of strings" if expected is list else "a string"
                raise SpecError(f"{where(table, key)}: [{table}] {key} must be {kind}")
            newlines = (table, key) in MULTILINE
            for element in item if isinstance(item, list) else (item,):
                if not isinstance(element, str):
                    raise SpecError(f"{where(table, key)}: [{table}] {key} must be a list of strings")
                if has_control(element, allow_newlines=newlines):
                    raise SpecError(
                        f"{where(table, key)}: [{table}] {key}: {quote(element)} holds a control character",
                        hint="only steps and the description may hold tabs and newlines",
                    )

    env = data.get("environment")
    if env is None:
        raise SpecError(f"{path}:1: missing [environment] table", hint='add [environment] with name = "..."')
    name = env.get("name")
    if name is None:
        raise SpecError(f"{where('environment')}: [environment] needs a name", hint='e.g. name = "fraud-train"')
    if not NAME_RE.match(name):
        raise SpecError(
            f"{where('environment', 'name')}: invalid environment name {quote(name)}",
            hint="lowercase ASCII letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit); "
            "it becomes an image name",
        )
    python = env.get("python")
    if python is not None and not PYTHON_RE.match(python):
        raise SpecError(
            f"{where('environment', 'python')}: invalid python version {quote(python)}",
            hint='e.g. "3.11" or "3.11.9" (ASCII digits)',
        )
    platforms = env.get("platforms", ["linux-64"])
    if not platforms:
        raise SpecError(f"{where('environment', 'platforms')}: platforms must not be empty")
    for p in platforms:
        if p not in PLATFORMS:
            raise SpecError(
                f"{where('environment', 'platforms', p)}: unknown platform {quote(p)}{_did_you_mean(p, PLATFORMS)}",
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
            raise SpecError(
                f"{where('system', key)}: invalid version {quote(value)} for [system] {key}",
                hint='e.g. cuda = "12.4" (ASCII digits and dots)',
            )

    channels = list(conda.get("channels", [])) if conda is not None else []
    if conda is not None and not channels:
        raise SpecError(f"{where('conda')}: [conda] needs at least one channel", hint='e.g. channels = ["conda-forge"]')
    for channel in channels:
        _check_source(channel, where("conda", "channels", channel), "channel", channel=True)
    conda_deps = list(conda.get("dependencies", [])) if conda is not None else []
    for dep in conda_deps:
        if not dep.strip():
            raise SpecError(f"{where('conda', 'dependencies')}: empty conda dependency")
    pypi_deps = list(pypi.get("dependencies", []))
    for dep in pypi_deps:
        if not dep.strip():
            raise SpecError(f"{where('pypi', 'dependencies')}: empty PyPI requirement")
    if "index-url" in pypi:
        _check_source(pypi["index-url"], where("pypi", "index-url"), "index-url")
    for url in pypi.get("extra-index-urls", []):
        _check_source(url, where("pypi", "extra-index-urls", url), "extra-index-urls entry")
    for url in pypi.get("find-links", []):
        _check_source(url, where("pypi", "find-links", url), "find-links entry")
    for key in ("constraints", "overrides"):
        for line in pypi.get(key, []):
            if not line.strip():
                raise SpecError(f"{where('pypi', key)}: empty {key[:-1]}")

    for pkg in image.get("apt-packages", []):
        if not APT_RE.match(pkg):
            raise SpecError(
                f"{where('image', 'apt-packages', pkg)}: invalid Debian package name {quote(pkg)}",
                hint="name or name=version, lowercase ASCII (e.g. libgomp1, curl=7.88.1-10+deb12u8)",
            )
    interpreter = image.get("python")
    if interpreter is not None and not INTERPRETER_RE.match(interpreter):
        raise SpecError(
            f"{where('image', 'python')}: [image] python must be an absolute interpreter path, e.g. /usr/bin/python3",
            hint="ASCII letters, digits and . _ + - / only",
        )

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
    elif not base.strip() or any(c.isspace() for c in base) or len(base) > MAX_IMAGE_REF:
        raise SpecError(f"{where('image', 'base')}: invalid image reference {quote(base)}")

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


# Strings that may hold tabs and newlines (free text and Dockerfile lines); every other
# string in a spec refuses all control characters.
MULTILINE = {("environment", "description"), ("image", "steps")}


def source_problem(value: str, *, channel: bool = False) -> str | None:
    """Why `value` is not an acceptable index URL (or conda channel), or None.

    Allowed: http://, https:// and file:// URLs (a host for http(s), a path for file),
    and for channels also a name (conda-forge, conda-forge/label/rc). Refused: other
    schemes, whitespace and control characters, '..' path segments, more than MAX_URL
    characters, and ${VAR} anywhere but the user:password@ part (a path or query is
    copied into the lock's artifact URLs, so a secret there would be stored).
    Literal credentials are a separate check (runtime.secrets.has_literal_credential)."""
    if not value or not value.strip():
        return "is empty"
    if len(value) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    if has_control(value) or any(c.isspace() for c in value):
        return "holds whitespace or a control character"
    if "://" not in value:
        if channel and CHANNEL_NAME_RE.match(value):
            return None
        if channel:
            return "is neither a channel name (e.g. conda-forge) nor an http(s):// or file:// URL"
        return "must be an http(s):// or file:// URL"
    from urllib.parse import unquote, urlsplit

    scheme, userinfo, rest = split_userinfo(value)
    if scheme[:-3] not in URL_SCHEMES:
        return f"has the scheme {quote(scheme[:-3], 20)}; only http://, https:// and file:// are allowed"
    if "${" in rest:
        return "has a ${VAR} reference outside the user:password@ part"
    try:
        parts = urlsplit(scheme + rest)
        port = parts.port  # noqa: F841 - raises ValueError on a malformed port
    except ValueError:
        return "is not a valid URL"
    if scheme == "file://":
        if parts.netloc not in ("", "localhost") or len(parts.path) < 2:
            return "must be file:///absolute/path"
    elif not parts.hostname:
        return "has no host"
    if any(seg in ("..", ".") for seg in unquote(parts.path).split("/")):
        return "has a '.' or '..' path segment"
    return None


def _check_source(value: str, where: str, what: str, *, channel: bool = False) -> None:
    problem = source_problem(value, channel=channel)
    shown = quote(strip_credentials(value))
    if problem:
        raise SpecError(
            f"{where}: {what} {shown} {problem}",
            hint='e.g. "conda-forge", "https://host/channel" or "file:///srv/channel"'
            if channel
            else 'e.g. "https://pypi.example.org/simple" or "file:///srv/index"',
        )
    if has_literal_credential(value):
        raise SpecError(
            f"{where}: {what} {shown} carries a literal credential (user:password@ or a token); mlenv never stores one",
            hint=CREDENTIAL_HINT,
        )


# --- helpers ------------------------------------------------------------------


def sha256_json(obj: object) -> str:
    """sha256 hex of the canonical JSON of obj (sorted keys, no spaces, UTF-8)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256(blob.encode("utf-8")).hexdigest()


def expand_env(url: str) -> str:
    """${VAR} in index URLs is taken from the environment at solve/install time,
    so tokens live in the environment and never in mlenv.toml or mlenv.lock."""

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in os.environ:
            raise SpecError(f"index URL refers to ${{{var}}} but {var} is not set in the environment")
        return os.environ[var]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, url)


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
    from .runtime.text import clip, first_line

    return clip(first_line(exc), 200)


def _name(word: str) -> str:
    """A key or table name for a message: cut like quote(), without the quotes."""
    return word if len(word) <= 64 and word.isprintable() else quote(word, 64)


def _did_you_mean(word: str, options) -> str:
    import difflib  # only on the error path

    if len(word) > 64:
        return ""
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
        if key_re is None or dotted_re is None:
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


def inputs_of(spec: Spec) -> dict:
    """The lock's [inputs] for this spec: what it was solved from (platforms, channels,
    dependencies, indexes, find-links, constraints). Here, beside Spec, so the sources
    rule (mlenv.sources) compares a lock with its spec without importing the solvers' side."""
    inputs: dict = {
        "platforms": sorted(spec.platforms),
        "channels": spec.normalized()["conda"]["channels"] if spec.has_conda else [],
        "conda-dependencies": sorted(spec.conda_specs()),
        "pypi-dependencies": sorted(spec.pypi_dependencies),
        "system": dict(sorted(spec.system.items())),
    }
    norm = spec.normalized()["pypi"]
    if norm["index-url"]:
        inputs["index-url"] = norm["index-url"]
    inputs["extra-index-urls"] = norm["extra-index-urls"]
    for key in ("find-links", "constraints", "overrides"):  # only when set: older locks stay comparable
        if norm.get(key):
            inputs[key] = norm[key]
    return inputs
