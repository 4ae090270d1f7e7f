"""Other tools' environment files -> mlenv.toml (`mlenv init --from FILE`).

Supported: conda environment.yml, requirements.txt (pip syntax: -r, -c,
--index-url, --extra-index-url, hashes, markers), Azure ML v2 environment
YAML (image, conda_file, build), pyproject.toml ([project] dependencies,
requires-python), and PEP 751 pylock.toml.

`import_file()` returns (mlenv.toml text, notes). A note names file:line and
says what could not be carried over (an editable install, a local path, a
VCS URL that needs building, an option mlenv has no field for); nothing is
dropped silently. The text is validated by the caller (parse_spec).

The imported files are untrusted input (docs/security.md): each is at most
MAX_IMPORT_BYTES of UTF-8; YAML is bounded in depth and in nodes after aliases
(no "billion laughs"); files it names (-r/-c, conda_file, a build context) must lie
inside the imported file's directory or the project directory (where mlenv.toml goes); a literal credential
in an index or channel URL is dropped with a note; every string that reaches the
generated mlenv.toml is quoted, and notes are escaped so they stay comments.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError
from ..validation import MAX_DEPTH, MAX_IMPORT_BYTES, has_control, quote, read_text

DEFAULT_PYTHON = "3.11"
KNOWN_PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
MAX_FILES = 100  # -r/-c files one import may read
MAX_YAML_NODES = 100_000  # YAML nodes after alias expansion
MAX_NOTE = 300  # characters of a note in the generated file
DEFAULTS_CHANNEL = "https://repo.anaconda.com/pkgs/main"


@dataclass
class Draft:
    """The spec being assembled."""

    name: str
    source: str  # "conda environment.yml", ...
    origin: Path
    description: str = ""
    python: str | None = None
    platforms: list[str] = field(default_factory=lambda: ["linux-64"])
    channels: list[str] = field(default_factory=list)
    conda: list[str] = field(default_factory=list)
    has_conda: bool = False
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    pypi: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    base: str | None = None
    apt: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hashes_dropped: int = 0
    project: Path | None = None  # the directory the new mlenv.toml goes to: local paths are written relative to it
    extras: tuple[str, ...] = ()  # pyproject optional-dependencies to include (opt-in)
    groups: tuple[str, ...] = ()  # pyproject dependency-groups to include (opt-in)
    file_name: str | None = None  # the environment's own name in the imported file (Azure ML, environment.yml)

    def note(self, where: str, message: str) -> None:
        from ..runtime.secrets import scrub

        self.notes.append(scrub(f"{where}: {message}"))  # a note may quote a line: never its credential

    def checked_url(self, where: str, url: object, what: str, *, channel: bool = False) -> str | None:
        """`url` fit for the spec (an index URL or a conda channel), else None with a note.
        A literal credential is dropped (mlenv refuses them: docs/security.md)."""
        from ..runtime.secrets import has_literal_credential, strip_credentials
        from ..spec import source_problem

        if not isinstance(url, str):
            self.note(where, f"{what} {quote(url)} is not text; not carried over")
            return None
        if has_literal_credential(url):
            url = strip_credentials(url)
            self.note(
                where,
                f"{what} {url}: its literal credential was not copied; write it as "
                "https://${USER}:${TOKEN}@host/... (read from the environment) or use ~/.netrc",
            )
        problem = source_problem(url, channel=channel)
        if problem:
            self.note(where, f"{what} {quote(url)} {problem}; not carried over")
            return None
        return url

    def variable(self, where: str, name: object, value: object) -> None:
        """Set a variable when its name is one mlenv accepts; note it otherwise."""
        from ..spec import VARIABLE_RE

        if not isinstance(name, str) or not VARIABLE_RE.match(name):
            self.note(where, f"variable {quote(name)}: not a valid variable name; not carried over")
            return
        self.variables[name] = "" if value is None else str(value)

    def add_extra_index(self, url: str) -> None:
        if url != self.index_url and url not in self.extra_index_urls:
            self.extra_index_urls.append(url)

    def render(self) -> str:
        q = _q
        out = [f"# Imported by `mlenv init --from {_comment(self.origin.name)}` ({self.source})."]
        if self.notes:
            out.append("# Not carried over (review these):")
            out += [f"#   {_comment(n)}" for n in self.notes]
        out += ["", "[environment]", f"name = {q(self.name)}", f"description = {q(self.description)}"]
        if self.python:
            out.append(f"python = {q(self.python)}")
        out.append(f"platforms = {_arr(self.platforms)}")
        if self.has_conda:
            out += [
                "",
                "[conda]",
                f"channels = {_arr(self.channels)}",
                f"dependencies = {_arr(self.conda, multiline=True)}",
            ]
        if self.pypi or self.index_url or self.extra_index_urls or self.find_links or self.constraints:
            out += ["", "[pypi]"]
            if self.index_url:
                out.append(f"index-url = {q(self.index_url)}")
            if self.extra_index_urls:
                out.append(f"extra-index-urls = {_arr(self.extra_index_urls)}")
            if self.find_links:
                out.append(f"find-links = {_arr(self.find_links)}")
            out.append(f"dependencies = {_arr(self.pypi, multiline=True)}")
            if self.constraints:
                out.append(f"constraints = {_arr(self.constraints, multiline=True)}")
        if self.variables:
            out += ["", "[variables]"] + [f"{q(k)} = {q(v)}" for k, v in self.variables.items()]
        if self.system:
            out += ["", "[system]"] + [f"{k} = {q(v)}" for k, v in self.system.items()]
        if self.base or self.apt or self.steps:
            out += ["", "[image]"]
            if self.base:
                out.append(f"base = {q(self.base)}")
            if self.apt:
                out.append(f"apt-packages = {_arr(self.apt)}")
            if self.steps:
                out.append(f"steps = {_arr(self.steps, multiline=True)}")
        return "\n".join(out) + "\n"


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    """Text fit for one TOML comment line: control characters escaped (a newline in a note
    must not end the comment and start a key), cut to MAX_NOTE characters."""
    out = "".join(f"\\x{ord(c):02x}" if has_control(c) or c in "\u2028\u2029" else c for c in text)
    return out if len(out) <= MAX_NOTE else out[:MAX_NOTE] + "…"


def _arr(values: list[str], multiline: bool = False) -> str:
    if not values:
        return "[]"
    if not multiline:
        return "[" + ", ".join(_q(v) for v in values) + "]"
    return "[\n" + "".join(f"  {_q(v)},\n" for v in values) + "]"


# --- entry point ------------------------------------------------------------------------


def detect(path: Path, text: str) -> str:
    """'conda' | 'requirements' | 'azureml' | 'pyproject' | 'pylock'."""
    name = path.name.lower()
    if name.endswith(".toml"):
        if re.search(r"^\s*lock-version\s*=", text, re.M):
            return "pylock"
        if re.search(r"^\s*\[project\]", text, re.M) or name == "pyproject.toml":
            return "pyproject"
        raise SpecError(
            f"{path}: a TOML file that is neither pyproject.toml ([project]) nor pylock.toml",
            hint="mlenv.toml itself needs no import",
        )
    if name.endswith((".yml", ".yaml")):
        data = _yaml_plain(_yaml_compose(text, path)) or {}
        if not isinstance(data, dict):
            raise SpecError(f"{path}:1: expected a YAML mapping")
        schema = str(data.get("$schema", ""))
        if "environment.schema" in schema or "azureml" in schema:
            return "azureml"
        if "dependencies" in data or "channels" in data:
            return "conda"
        if {"image", "build", "conda_file"} & set(data):
            return "azureml"
        if data.get("version") == 1 and "package" in data:
            raise SpecError(
                f"{path}: a conda-lock.yml lock file cannot be imported",
                hint="import the environment.yml it was made from",
            )
        raise SpecError(
            f"{path}: not a conda environment.yml (no `dependencies`) nor an Azure ML environment "
            "(no `image`, `build` or `conda_file`)"
        )
    if name.endswith((".txt", ".in")) or "requirements" in name or "constraints" in name:
        return "requirements"
    raise SpecError(
        f"{path}: cannot tell which format this is from its name",
        hint="mlenv imports environment.yml/.yaml, requirements*.txt / *.in, pyproject.toml, "
        "pylock.toml and Azure ML environment YAML",
    )


def import_file(path: Path, *, name: str | None = None, default_name: str = "env", python: str | None = None,
                project: Path | None = None, extras: tuple[str, ...] = (),
                groups: tuple[str, ...] = ()) -> tuple[str, list[str]]:  # fmt: skip
    """(mlenv.toml text, notes) of another tool's file. name: the environment name asked for;
    else the file's own (an Azure ML environment's or environment.yml's `name`), else
    default_name. project: the directory the new mlenv.toml goes to (local paths are
    written relative to it; default the current directory). extras / groups: pyproject
    optional-dependencies and dependency-groups to include (they are opt-in)."""
    path = Path(path)
    try:
        text = read_text(path, MAX_IMPORT_BYTES, SpecError, "file to import")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    kind = detect(path, text)
    label = {
        "conda": "conda environment.yml",
        "requirements": "requirements.txt",
        "azureml": "Azure ML environment",
        "pyproject": "pyproject.toml",
        "pylock": "pylock.toml (PEP 751)",
    }[kind]
    draft = Draft(name=name or default_name, source=label, origin=path,
                  project=Path(project).resolve() if project is not None else Path.cwd().resolve(),
                  extras=tuple(extras), groups=tuple(groups))  # fmt: skip
    {
        "conda": _import_conda,
        "requirements": _import_requirements,
        "azureml": _import_azureml,
        "pyproject": _import_pyproject,
        "pylock": _import_pylock,
    }[kind](draft, path, text)
    header = read_header(text)
    if header.get("python"):
        draft.python = header["python"]
    if header.get("image") and kind in ("requirements", "conda", "pylock"):
        draft.base = header["image"]
    if header.get("platform") and kind != "pyproject":
        draft.platforms = [header["platform"]]
    if python:
        draft.python = python
    if not name and draft.file_name:
        draft.name = draft.file_name
    _settle_pip_without_python(draft, path)
    if draft.hashes_dropped:
        draft.notes.append(
            f"{path}: {draft.hashes_dropped} --hash option(s) not copied: `mlenv lock` records the "
            "sha256 of every artifact it resolves and install verifies them"
        )
    if (draft.pypi or not (draft.has_conda or draft.base)) and not draft.python and not draft.has_conda:
        draft.python = DEFAULT_PYTHON
        draft.notes.append(
            f"{path}: the file does not say which Python; assumed {DEFAULT_PYTHON} (edit [environment] python)"
        )
    rendered = draft.render()
    try:
        rendered.encode("utf-8")
    except UnicodeEncodeError:  # a YAML "\ud800" escape gives a lone surrogate
        raise SpecError(f"{path}: holds text that is not valid Unicode (a lone surrogate)") from None
    return rendered, [_comment(n) for n in draft.notes]


def _own_name(d: Draft, where: str, value: object) -> None:
    """The environment's name as the file gives it, made an mlenv name (lowercase, [a-z0-9._-])."""
    from ..spec import NAME_RE

    raw = str(value).strip().lower() if isinstance(value, (str, int)) else ""
    name = re.sub(r"[^a-z0-9._-]+", "-", raw).strip("-._")[:128]
    if name and NAME_RE.match(name):
        d.file_name = name
        if name != raw:
            d.note(where, f"name {quote(value)} became {name} (mlenv names are lowercase [a-z0-9._-])")
    elif raw:
        d.note(where, f"name {quote(value)} is not usable as an environment name; not carried over")


def _settle_pip_without_python(d: Draft, path: Path) -> None:
    """conda packages and a pip: list but no python: PyPI packages need conda's Python, so
    python is set (DEFAULT_PYTHON) with a note, rather than a spec the validation refuses."""
    if d.has_conda and d.pypi and not d.python and not any(_conda_python(c)[1] for c in d.conda):
        d.python = DEFAULT_PYTHON
        d.notes.append(
            f"{_rel(path)}: pip packages need a Python in the conda environment, and the file lists none; "
            f"python {DEFAULT_PYTHON} assumed (edit [environment] python)"
        )


def read_header(text: str) -> dict[str, str]:
    """The `# mlenv: platform=... python=... image=...` line mlenv's exports carry
    (requirements, environment.yml, pylock, Azure ML YAML): what those formats
    have no field for. Files from other tools simply have none."""
    for line in text.splitlines()[:10]:
        m = re.match(r"^#\s*mlenv:\s*(.*)$", line)
        if m:
            return dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
    return {}


# --- requirements.txt ---------------------------------------------------------------------


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with `\\` continuations joined and comments removed."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw
        if not buf:
            start = i
        if re.match(r"^\s*#", line):
            line = ""
        else:
            line = re.sub(r"(^|\s)#.*$", "", line)
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


_OPT_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "-e",
    "--editable",
    "--only-binary",
    "--no-binary",
    "--hash",
    "--global-option",
    "--config-settings",
    "--use-feature",
}


def _split_option(line: str) -> tuple[str, str] | None:
    m = re.match(r"^(-[a-zA-Z]|--[a-z][a-z-]*)(?:\s*=\s*|\s+)?(.*)$", line)
    if not m:
        return None
    return m.group(1), m.group(2).strip()


@dataclass
class _ReqCtx:
    draft: Draft
    seen_files: set = field(default_factory=set)


def parse_requirement_lines(
    ctx: _ReqCtx, lines: list[tuple[str, str]], base_dir: Path, *, constraint: bool = False
) -> None:
    """lines: (where, logical line). Requirements go to the draft's dependencies (or, from a
    -c file, to its constraints); git, URL and path forms too (mlenv.formats.directreqs)."""
    from packaging.requirements import InvalidRequirement, Requirement

    d = ctx.draft
    for where, line in lines:
        opt = _split_option(line) if line.startswith("-") else None
        if opt:
            flag, value = opt
            if flag in ("-r", "--requirement", "-c", "--constraint"):
                sub = _named_file(d, where, f"{flag} {value}", base_dir, value)
                is_c = flag in ("-c", "--constraint") or constraint
                key = (sub, is_c)
                if key in ctx.seen_files:
                    continue
                ctx.seen_files.add(key)
                if len(ctx.seen_files) > MAX_FILES:
                    raise SpecError(f"{where}: {flag} {quote(value)}: more than {MAX_FILES} requirement files")
                text = read_text(sub, MAX_IMPORT_BYTES, SpecError, "requirements file")
                parse_requirement_lines(
                    ctx, [(f"{_rel(sub)}:{n}", ln) for n, ln in _logical_lines(text)], sub.parent, constraint=is_c
                )
            elif flag in ("-i", "--index-url"):
                if constraint:
                    d.note(where, f"{flag} in a constraints file ignored")
                elif (url := d.checked_url(where, value, flag)) is None:
                    pass
                elif d.index_url and d.index_url != url:
                    d.add_extra_index(url)
                    d.note(where, f"a second --index-url {url} became an extra index")
                else:
                    d.index_url = url
            elif flag == "--extra-index-url":
                if (url := d.checked_url(where, value, flag)) is not None:
                    d.add_extra_index(url)
            elif flag in ("-e", "--editable"):
                if constraint:
                    d.note(where, f"`{line}` in a constraints file ignored")
                else:
                    _carry_direct(d, where, value, base_dir, editable=True)
            elif flag in ("-f", "--find-links"):
                _find_links(d, where, value, base_dir)
            elif flag == "--no-index":
                d.note(where, "--no-index not carried over: mlenv resolves from [pypi] index-url")
            elif flag == "--trusted-host":
                d.note(where, f"`{line}` not carried over: mlenv verifies TLS (set MLENV_CA_BUNDLE for a private CA)")
            elif flag == "--hash":
                d.hashes_dropped += 1
            else:
                d.note(where, f"pip option `{line}` has no mlenv equivalent; not carried over")
            continue
        # A requirement, possibly with per-requirement options (--hash ...).
        req_text, opts = _strip_req_options(line)
        d.hashes_dropped += sum(1 for o in opts if o.startswith("--hash"))
        for o in opts:
            if not o.startswith("--hash"):
                d.note(where, f"per-requirement option `{o}` not carried over")
        from .directreqs import is_direct

        if is_direct(req_text):
            if constraint:
                d.note(where, f"constraint `{req_text}` names a URL or a path; uv's constraints are versions only; "
                              "not carried over")  # fmt: skip
            else:
                _carry_direct(d, where, req_text, base_dir)
            continue
        try:
            req = Requirement(req_text)
        except InvalidRequirement as exc:
            d.note(where, f"`{req_text}` is not a valid requirement ({str(exc).splitlines()[0]}); not carried over")
            continue
        text = req_text if not _needs_normalizing(req_text) else str(req)
        if constraint:
            if req.extras:
                d.note(where, f"constraint `{req_text}`: extras mean nothing in a constraint; dropped from it")
                text = str(req).replace(f"[{','.join(sorted(req.extras))}]", "")
            if text not in d.constraints:
                d.constraints.append(text)
        else:
            d.pypi.append(text)


def _needs_normalizing(text: str) -> bool:
    return "\t" in text or "  " in text


def _strip_req_options(line: str) -> tuple[str, list[str]]:
    """'pkg==1 --hash=sha256:x --hash sha256:y' -> ('pkg==1', ['--hash=sha256:x', '--hash=sha256:y'])."""
    m = re.search(r"\s--?[a-zA-Z]", line)
    if not m:
        return line, []
    req, rest = line[: m.start()].strip(), line[m.start() :].strip()
    try:
        opts = shlex.split(rest)
    except ValueError:
        opts = rest.split()
    merged = []
    i = 0
    while i < len(opts):
        o = opts[i]
        if "=" not in o and o in _OPT_WITH_VALUE and i + 1 < len(opts):
            merged.append(f"{o}={opts[i + 1]}")
            i += 2
        else:
            merged.append(o)
            i += 1
    return req, merged


def _carry_direct(d: Draft, where: str, text: str, base_dir: Path, *, editable: bool = False) -> None:
    """A git / URL / path requirement into [pypi] dependencies (mlenv.formats.directreqs), or a note."""
    from .directreqs import carry

    project = d.project or Path.cwd()
    requirement, notes = carry(text, base_dir=base_dir, project=project, editable=editable)
    for n in notes:
        d.note(where, n)
    if requirement and requirement not in d.pypi:
        d.pypi.append(requirement)


def _find_links(d: Draft, where: str, value: str, base_dir: Path) -> None:
    """--find-links URL, or a local directory (written as a file:// URL: a path of this machine)."""
    if re.match(r"\A[A-Za-z][A-Za-z0-9+.-]*://", value):
        url = d.checked_url(where, value, "--find-links")
    else:
        try:
            local = (base_dir / os.path.expanduser(value)).resolve()
        except (OSError, RuntimeError, ValueError):
            local = None
        if local is None or not local.is_dir():
            d.note(where, f"--find-links {quote(value)}: no such directory; not carried over")
            return
        url = d.checked_url(where, local.as_uri(), "--find-links")
        if url is not None:
            d.note(where, f"--find-links {quote(value)} became {url}: a directory of this machine (serve it, or "
                          "keep it at that path on every machine that locks)")  # fmt: skip
    if url is not None and url not in d.find_links:
        d.find_links.append(url)


def _named_file(d: Draft, where: str, what: str, base_dir: Path, value: str) -> Path:
    """A file an imported file names (-r, -c, conda_file, a build context): it must exist and
    lie inside the imported file's directory or the project's (where mlenv.toml goes: the
    current directory or `-C DIR` on the command line, the target in the API, never the
    process's cwd of a notebook), so a crafted file cannot copy another file of this machine
    (~/.ssh/..., /etc/...) into mlenv.toml's notes."""
    try:
        sub = (base_dir / value).resolve()
        roots = (d.origin.resolve().parent, (d.project or Path.cwd()).resolve())
        inside = any(sub == r or r in sub.parents for r in roots)
        exists = sub.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long
        raise SpecError(f"{where}: {what}: not a usable file name") from None
    if not inside:
        raise SpecError(
            f"{where}: {_comment(what)}: {sub} is outside {roots[0]} and the project directory {roots[1]}; "
            "mlenv only reads files next to the one it imports",
            hint="copy the file next to it, or create mlenv.toml in a directory that holds both",
        )
    if not exists:
        raise SpecError(f"{where}: {_comment(what)}: no such file ({sub})")
    return sub


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _import_requirements(d: Draft, path: Path, text: str) -> None:
    ctx = _ReqCtx(d)
    ctx.seen_files.add((path.resolve(), False))
    parse_requirement_lines(ctx, [(f"{_rel(path)}:{n}", ln) for n, ln in _logical_lines(text)], path.parent)


# --- YAML with line numbers ------------------------------------------------------------------


def _yaml_compose(text: str, path: Path):
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["?"])[0]
        raise SpecError(f"{path}:{line}: invalid YAML: {_comment(problem)}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    _check_yaml_size(root, path)
    return root


def _check_yaml_size(root, path: Path) -> None:
    """At most MAX_YAML_NODES nodes counted with aliases expanded (an alias of an alias of
    ... is how a few hundred bytes become a billion nodes), nested at most 2 * MAX_DEPTH."""
    import yaml

    count = 0
    stack = [(root, 1)] if root is not None else []
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise SpecError(f"{path}: the YAML expands to more than {MAX_YAML_NODES} values (aliases?)")
        if depth > 2 * MAX_DEPTH:
            raise SpecError(f"{path}:{_line(node)}: the YAML nests deeper than {2 * MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            stack += [(n, depth + 1) for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(n, depth + 1) for n in node.value]


def _yaml_plain(node):
    return None if node is None else _construct(node)


def _construct(node):
    import yaml

    if isinstance(node, yaml.MappingNode):
        return {_key(k): _construct(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v) for v in node.value]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):  # a bad !!timestamp, an unknown tag, ...
        return str(node.value)


def _key(node):
    """A mapping key: its scalar value, or its text when it is itself a list or mapping."""
    value = _construct(node)
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value


def _map_get(node, key: str):
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == key:
                return v
    return None


def _line(node) -> int:
    return node.start_mark.line + 1


# --- conda environment.yml --------------------------------------------------------------------


def _conda_python(dep: str) -> tuple[str | None, bool]:
    """(python version X.Y[.Z] or None, is-a-python-spec) of a conda dep string."""
    s = dep.strip()
    if "::" in s:
        s = s.split("::", 1)[1]
    m = re.match(r"^python(?![A-Za-z0-9_.-])\s*(.*)$", s)
    if not m:
        return None, False
    rest = m.group(1).strip()
    v = re.match(r"^(?:==|=|\s)*\s*(3\.[0-9]{1,2}(?:\.[0-9]{1,3})?)(?:\.\*|\*)?(?:[= ].*)?\Z", rest, re.ASCII | re.S)
    if v:
        return v.group(1), True
    lo = re.search(r">=\s*(3\.[0-9]{1,2})", rest, re.ASCII)
    if lo:
        return lo.group(1), True
    return None, True


def _import_conda(d: Draft, path: Path, text: str, *, root=None, where_file: str | None = None) -> None:
    import yaml

    where_file = where_file or _rel(path)
    root = root if root is not None else _yaml_compose(text, path)
    if not isinstance(root, yaml.MappingNode):
        raise SpecError(f"{where_file}:1: expected a YAML mapping with `dependencies`")
    for k, v in root.value:
        key = k.value
        if key in ("name", "prefix"):
            if key == "prefix":
                d.note(f"{where_file}:{_line(k)}", "`prefix` is machine-specific; not carried over")
            elif d.file_name is None:
                _own_name(d, f"{where_file}:{_line(k)}", _construct(v))
        elif key == "channels":
            for item in v.value if isinstance(v, yaml.SequenceNode) else []:
                ch = item.value if isinstance(item, yaml.ScalarNode) else None
                if ch == "nodefaults":
                    continue
                if ch == "defaults":
                    d.channels.append(DEFAULTS_CHANNEL)
                    d.note(
                        f"{where_file}:{_line(item)}",
                        f"channel `defaults` mapped to {DEFAULTS_CHANNEL} "
                        "(Anaconda's main channel; check its terms of service)",
                    )
                elif (url := d.checked_url(f"{where_file}:{_line(item)}", ch, "channel", channel=True)) is not None:
                    d.channels.append(url)
        elif key == "dependencies":
            if not isinstance(v, yaml.SequenceNode):
                raise SpecError(f"{where_file}:{_line(v)}: `dependencies` must be a list")
            _conda_dependencies(d, v, path, where_file)
        elif key == "variables":
            if isinstance(v, yaml.MappingNode):
                for vk, vv in v.value:
                    d.variable(
                        f"{where_file}:{_line(vk)}",
                        vk.value if isinstance(vk, yaml.ScalarNode) else None,
                        _construct(vv),
                    )
        else:
            d.note(f"{where_file}:{_line(k)}", f"key `{key}` is not part of a conda environment file; ignored")
    _settle_conda(d, where_file)


def _conda_dependencies(d: Draft, seq, path: Path, where_file: str) -> None:
    import yaml

    ctx = _ReqCtx(d)
    pip_lines: list[tuple[str, str]] = []
    for item in seq.value:
        where = f"{where_file}:{_line(item)}"
        if isinstance(item, yaml.MappingNode):
            pip = _map_get(item, "pip")
            if pip is None or not isinstance(pip, yaml.SequenceNode):
                d.note(where, "a dependency mapping other than `pip:` is not understood; not carried over")
                continue
            for entry in pip.value:
                pip_lines.append((f"{where_file}:{_line(entry)}", str(_construct(entry)).strip()))
            continue
        dep = str(_construct(item)).strip()
        version, is_python = _conda_python(dep)
        if is_python:
            d.conda.append(_conda_spec(dep))
            if version:
                d.python = d.python or version
            continue
        if re.match(r"^(conda-forge::|defaults::)?pip(\s|=|$|<|>)", dep):
            continue  # pip itself: mlenv's installer brings its own
        d.conda.append(_conda_spec(dep))
    ctx.seen_files.add((path.resolve(), False))
    parse_requirement_lines(ctx, pip_lines, path.parent)
    d.has_conda = True


def _conda_spec(dep: str) -> str:
    """environment.yml syntax -> a MatchSpec rattler accepts. conda's exact form
    `name=version=build` (what `conda env export` writes) becomes `name ==version build`;
    other forms (`numpy=1.26`, `numpy>=1.26`, `conda-forge::numpy`) are kept."""
    s = " ".join(dep.split())
    m = re.fullmatch(r"((?:[A-Za-z0-9_.-]+::)?[A-Za-z0-9_.-]+)=([^=<>!~\s,|*]+)=([A-Za-z0-9_.*]+)", s)
    if m:
        return f"{m.group(1)} =={m.group(2)} {m.group(3)}"
    return s


def _settle_conda(d: Draft, where_file: str) -> None:
    """A conda file whose only conda packages are python (and pip) describes a pip
    environment: mlenv keeps it as one (a venv on the base image's Python)."""
    names = {re.split(r"[\s=<>!~]", c.split("::")[-1], maxsplit=1)[0].lower() for c in d.conda}
    if d.has_conda and names <= {"python"} and d.python:
        version = d.python
        d.has_conda, d.conda, d.channels = False, [], []
        d.python = ".".join(version.split(".")[:3])
        d.notes.append(
            f"{where_file}: only python{' ' + version} and pip come from conda; imported as a PyPI "
            f"environment on the base image's Python {d.python} (add a [conda] table for conda's Python)"
        )
        return
    if d.has_conda:
        if not d.channels:
            d.channels = ["conda-forge"]
            d.notes.append(f"{where_file}: no channels listed; conda-forge assumed")
        bad = []
        try:
            from rattler import MatchSpec

            for c in list(d.conda):
                try:
                    MatchSpec(c)
                except Exception as exc:
                    bad.append(c)
                    d.notes.append(
                        f"{where_file}: conda dependency `{c}` is not a valid MatchSpec "
                        f"({str(exc).splitlines()[0]}); not carried over"
                    )
        except ImportError:  # pragma: no cover - rattler is a dependency
            pass
        d.conda = [c for c in d.conda if c not in bad]
        if d.python:  # conda's python pin decides; [environment] python says the same in X.Y form
            d.python = ".".join(d.python.split(".")[:2])


# --- Azure ML environment YAML ------------------------------------------------------------------


def _import_azureml(d: Draft, path: Path, text: str) -> None:
    import yaml

    root = _yaml_compose(text, path)
    where_file = _rel(path)
    if not isinstance(root, yaml.MappingNode):
        raise SpecError(f"{where_file}:1: expected a YAML mapping")
    data = {k.value: (k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    if "name" in data:  # the environment's own name (used unless --name is given)
        _own_name(d, f"{where_file}:{_line(data['name'][0])}", _construct(data["name"][1]))
    if "description" in data:
        d.description = str(_construct(data["description"][1]) or "")
    if "image" in data:
        d.base = str(_construct(data["image"][1]))
    if "conda_file" in data:
        knode, vnode = data["conda_file"]
        if isinstance(vnode, yaml.MappingNode):
            _import_conda(d, path, text, root=vnode, where_file=where_file)
        elif isinstance(vnode, yaml.ScalarNode):
            conda_path = _named_file(
                d, f"{where_file}:{_line(vnode)}", f"conda_file {vnode.value}", path.parent, str(vnode.value)
            )
            _import_conda(d, conda_path, read_text(conda_path, MAX_IMPORT_BYTES, SpecError, "conda file"))
        else:
            raise SpecError(f"{where_file}:{_line(vnode)}: conda_file must be a file name or a mapping")
    if "build" in data:
        _import_build(d, path, data["build"][1])
    for key, (knode, vnode) in data.items():
        where = f"{where_file}:{_line(knode)}"
        if key == "version":
            d.note(
                where,
                f"Azure ML version {_construct(vnode)} not carried over: mlenv numbers versions itself when "
                "you `mlenv register`",
            )
        elif key == "inference_config":
            d.note(where, "inference_config (liveness/readiness/scoring routes) has no mlenv field; not carried over")
        elif key == "os_type" and str(_construct(vnode)).lower() == "windows":
            d.platforms = ["win-64"]
            d.note(where, "os_type windows: platforms set to win-64")
        elif key == "tags":
            tags = _construct(vnode) or {}
            if isinstance(tags, dict) and tags.get("mlenv.variables"):
                try:
                    found = json.loads(str(tags["mlenv.variables"]))
                except (ValueError, RecursionError):
                    found = None
                if isinstance(found, dict):
                    for k, v in found.items():
                        d.variable(where, k, v if isinstance(v, str) else json.dumps(v))
                else:
                    d.note(where, "tag mlenv.variables is not a JSON object; ignored")
            if isinstance(tags, dict) and tags.get("mlenv.platform") and d.platforms == ["linux-64"]:
                d.platforms = [str(tags["mlenv.platform"])]
            if isinstance(tags, dict) and tags.get("mlenv.python"):
                d.python = str(tags["mlenv.python"])
            if isinstance(tags, dict) and "mlenv.apt-packages" in tags:
                keys = [k for k, _ in getattr(vnode, "value", []) if getattr(k, "value", None) == "mlenv.apt-packages"]
                _apt_tag(d, f"{where_file}:{_line(keys[0])}" if keys else where, tags["mlenv.apt-packages"])
            if isinstance(tags, dict) and tags.get("mlenv.apt-pins"):
                d.note(
                    where,
                    "tag mlenv.apt-pins (the exported lock's Debian versions) is not a spec field: `mlenv lock` "
                    "pins the archive's current versions (the same ones, and the same content hash, while the "
                    "archive has not moved)",
                )
    if not ({"image", "build"} & set(data)):
        d.note(where_file, "neither image nor build is set; mlenv's default base image is used")


def _apt_tag(d: Draft, where: str, value: object) -> None:
    """The tag mlenv.apt-packages (space-separated `name` or `name=version`, as mlenv's azureml
    export writes it) into [image] apt-packages; what the spec would refuse gets a note."""
    from ..spec import APT_RE

    if not isinstance(value, str):
        d.note(where, f"tag mlenv.apt-packages {quote(value)} is not text; not carried over")
        return
    bad = [t for t in value.split() if not APT_RE.match(t)]
    for token in bad[:5]:
        d.note(where, f"tag mlenv.apt-packages: {quote(token)} is not a Debian package (name or name=version); "
               "not carried over")  # fmt: skip
    if len(bad) > 5:
        d.note(where, f"tag mlenv.apt-packages: {len(bad) - 5} more entries like these not carried over")
    for token in value.split():
        if APT_RE.match(token) and token not in d.apt:
            d.apt.append(token)


def _import_build(d: Draft, path: Path, node) -> None:
    build = _construct(node) or {}
    where_file = _rel(path)
    if not isinstance(build, dict):
        raise SpecError(f"{where_file}:{_line(node)}: build must be a mapping (path, dockerfile_path)")
    context = str(build.get("path", ""))
    if re.match(r"^[a-z]+://", context) or context.startswith("azureml:"):
        d.note(f"{where_file}:{_line(node)}", f"build context {context} is remote; mlenv cannot read its Dockerfile")
        return
    name = str(Path(context or ".") / str(build.get("dockerfile_path") or "Dockerfile"))
    dockerfile = _named_file(d, f"{where_file}:{_line(node)}", f"build Dockerfile {name}", path.parent, name)
    _import_dockerfile(d, dockerfile)


def _import_dockerfile(d: Draft, dockerfile: Path) -> None:
    """FROM -> [image] base, ENV -> [variables], `apt-get install` -> apt-packages,
    `pip install` of plain requirements -> [pypi]; other instructions become
    [image] steps (reported); COPY/ADD need the build context and are reported."""
    where_file = _rel(dockerfile)
    text = read_text(dockerfile, MAX_IMPORT_BYTES, SpecError, "Dockerfile")
    stages = 0
    for n, line in _logical_lines(text):
        where = f"{where_file}:{n}"
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "FROM":
            stages += 1
            if stages > 1:
                d.note(where, "multi-stage Dockerfile: only the first stage's base image is used")
                continue
            d.base = rest.split()[0]
        elif instr == "ENV":
            pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S+)', rest)
            if not pairs and rest:
                key, _, value = rest.partition(" ")
                pairs = [(key, value)]
            for k, v in pairs:
                try:
                    value = json.loads(v) if v.startswith('"') else v
                except ValueError:
                    value = v[1:-1]
                d.variable(where, k, value)
        elif (
            instr == "RUN"
            and re.search(r"apt-get\s+(-\S+\s+)*install", rest)
            and "&&" not in rest.replace("apt-get update &&", "")
        ):
            pkgs = [t for t in rest.split("install", 1)[1].split() if not t.startswith("-")]
            d.apt += [p for p in pkgs if p not in d.apt]
        elif instr == "RUN" and re.match(r"^(python3? -m )?pip3? install\s", rest):
            from .directreqs import is_direct

            try:
                tokens = shlex.split(rest.split("install", 1)[1])
            except ValueError:  # an unbalanced quote
                tokens = ["-"]
            reqs = [t for t in tokens if not t.startswith("-")]
            if any(t.startswith("-") for t in tokens) or any(is_direct(r) for r in reqs) or not _requirements(reqs):
                _step(d, where, line)
                d.note(where, f"`{line}` kept as an [image] step (pip options or local paths mlenv cannot lock)")
            else:
                d.pypi += reqs
        elif instr in ("COPY", "ADD"):
            d.note(where, f"`{line}` needs the Azure ML build context; not carried over")
        elif instr in ("LABEL", "MAINTAINER", "ARG") or not instr:
            continue
        else:
            _step(d, where, line)
            d.note(where, f"`{line[:60]}` kept as an [image] step; review it (mlenv cannot lock what it installs)")


def _step(d: Draft, where: str, line: str) -> None:
    """A Dockerfile line kept as an [image] step, without the literal credential of any URL in it."""
    from .directreqs import without_credentials

    cleaned, notes = without_credentials(line)
    d.steps.append(cleaned)
    for n in notes:
        d.note(where, n)


# --- pyproject.toml --------------------------------------------------------------------------


def _requirements(items: list[str]) -> bool:
    """Whether every item is a PEP 508 requirement mlenv can lock."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return all(not Requirement(i).url for i in items)
    except InvalidRequirement:
        return False


def _choose_python(requires: str) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(requires)
    except InvalidSpecifier:
        return None
    allowed = [v for v in KNOWN_PYTHONS if spec.contains(f"{v}.0") or spec.contains(f"{v}.99")]
    if not allowed:
        return None
    return DEFAULT_PYTHON if DEFAULT_PYTHON in allowed else allowed[0]


def _toml_line(text: str, needle: str, default: int = 1, *, key: bool = False) -> int:
    """1-based line of the first `needle = ` (key) or of the first occurrence of needle."""
    if key:
        m = re.search(rf"^\s*[\"']?{re.escape(needle)}[\"']?\s*=", text, re.M)
        i = m.start() if m else -1
    else:
        i = text.find(needle)
    return default if i < 0 else text.count("\n", 0, i) + 1


def _toml(text: str, where_file: str) -> dict:
    from ..validation import loads_toml

    return loads_toml(text, where_file, SpecError)


def _table(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _import_pyproject(d: Draft, path: Path, text: str) -> None:
    where_file = _rel(path)
    data = _toml(text, where_file)
    project = data.get("project")
    if not isinstance(project, dict):
        raise SpecError(
            f"{where_file}: no [project] table", hint="mlenv imports PEP 621 metadata ([project] dependencies)"
        )
    d.description = str(project.get("description", "") or "")
    requires = project.get("requires-python")
    if requires:
        chosen = _choose_python(str(requires))
        line = _toml_line(text, "requires-python", key=True)
        if chosen:
            d.python = chosen
            d.note(f"{where_file}:{line}", f"requires-python {quote(requires)}: the environment uses Python {chosen}")
        else:
            d.note(f"{where_file}:{line}", f"requires-python {quote(requires)} matches no known Python; not used")
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(dep, str) for dep in deps):
        raise SpecError(
            f"{where_file}:{_toml_line(text, 'dependencies', key=True)}: [project] dependencies must be a "
            "list of strings"
        )
    if "dependencies" in _list(project.get("dynamic")) and not _is_package(data):
        d.note(
            f"{where_file}:{_toml_line(text, 'dynamic')}",
            "dependencies are dynamic (computed by the build backend); mlenv cannot read them",
        )
    ctx = _ReqCtx(d)

    def lines_of(reqs: list, section: str) -> list[tuple[str, str]]:
        return [(f"{where_file}:{_toml_line(text, json.dumps(r)[1:-1], _toml_line(text, section))}", r)
                for r in reqs if isinstance(r, str)]  # fmt: skip

    extras = _table(project.get("optional-dependencies"))
    groups = _table(data.get("dependency-groups"))
    for wanted, known, what in ((d.extras, extras, "optional dependencies"), (d.groups, groups, "dependency group")):
        for x in wanted:
            if x not in known:
                raise SpecError(f"{where_file}: no {what} {quote(x)} (it has: {', '.join(sorted(known)) or 'none'})")
    name = project.get("name")
    package = _is_package(data)
    where_name = f"{where_file}:{_toml_line(text, 'name', key=True)}"
    rel = _relative_dir(path.parent, d.project or Path.cwd())
    if package and isinstance(name, str) and rel is not None:
        # the project is a package: it goes in whole (its dependencies come with it), extras opted in
        picked = [x for x in extras if x in d.extras]
        brackets = f"[{','.join(picked)}]" if picked else ""
        _carry_direct(d, where_name, f"{name}{brackets} @ {rel}", d.project or Path.cwd())
        d.note(where_name, f"the project itself ({quote(name)}) is carried over as `{name}{brackets} @ {rel}`: built to "
                           "a wheel at lock time, its dependencies with it")  # fmt: skip
    else:
        if package and rel is None:
            d.note(
                where_name,
                f"the project itself ({quote(name)}) is outside the directory of the new mlenv.toml; "
                "its dependencies are carried over, not the project (run init from its directory)",
            )
        elif not package:
            d.note(where_name, f"the project ({quote(name)}) has no [build-system] (not a package, as uv sees it): "
                               "its dependencies are carried over")  # fmt: skip
        parse_requirement_lines(ctx, lines_of(deps, "dependencies"), path.parent)
        for x in d.extras:
            parse_requirement_lines(ctx, lines_of(_list(extras[x]), x), path.parent)
    for x, reqs in extras.items():
        if x not in d.extras:
            d.note(
                f"{where_file}:{_toml_line(text, x, key=True)}",
                f"optional dependencies [{x}] "
                f"({len(_list(reqs))}) are opt-in: `mlenv init --from {path.name} --extra {x}` includes them",
            )
    for g in groups:
        if g in d.groups:
            parse_requirement_lines(ctx, [(f"{where_file}:{_toml_line(text, g, key=True)}", r)
                                          for r in _group(groups, g, where_file)], path.parent)  # fmt: skip
        else:
            d.note(f"{where_file}:{_toml_line(text, g, key=True)}", f"dependency group `{g}` is opt-in: "
                   f"`mlenv init --from {path.name} --group {g}` includes it")  # fmt: skip
    uv = _table(_table(data.get("tool")).get("uv"))
    for index in _list(uv.get("index")):
        if isinstance(index, dict) and index.get("url"):
            url = d.checked_url(
                f"{where_file}:{_toml_line(text, 'url', key=True)}", index["url"], "[[tool.uv.index]] url"
            )
            if url is None:
                continue
            if index.get("default") is True:
                d.index_url = url
            else:
                d.add_extra_index(url)


def _is_package(data: dict) -> bool:
    """uv's rule: a project is a package (built and installed) when it declares a
    [build-system] or sets tool.uv.package = true; else it is a set of dependencies."""
    uv = _table(_table(data.get("tool")).get("uv"))
    if uv.get("package") is False:
        return False
    return isinstance(data.get("build-system"), dict) or uv.get("package") is True


def _relative_dir(directory: Path, project: Path) -> str | None:
    try:
        target, root = directory.resolve(), project.resolve()
    except (OSError, RuntimeError):
        return None
    if target == root:
        return "."
    return "./" + target.relative_to(root).as_posix() if root in target.parents else None


def _group(groups: dict, name: str, where: str, seen: tuple[str, ...] = ()) -> list[str]:
    """A PEP 735 dependency group's requirements, `{include-group = "..."}` expanded."""
    if name in seen:
        raise SpecError(f"{where}: dependency group {quote(name)} includes itself")
    out: list[str] = []
    for item in _list(groups.get(name)):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
            if item["include-group"] not in groups:
                raise SpecError(f"{where}: dependency group {quote(name)} includes an unknown group "
                                f"{quote(item['include-group'])}")  # fmt: skip
            out += _group(groups, item["include-group"], where, (*seen, name))
    return out


# --- pylock.toml (PEP 751) -----------------------------------------------------------------------


def _import_pylock(d: Draft, path: Path, text: str) -> None:
    where_file = _rel(path)
    data = _toml(text, where_file)
    rp = data.get("requires-python")
    if rp:
        d.python = _choose_python(str(rp))
    indexes: list[str] = []
    for pkg in _list(data.get("packages")):
        if not isinstance(pkg, dict):
            d.note(where_file, f"[[packages]] entry {quote(pkg)} is not a table; not carried over")
            continue
        name, version = pkg.get("name"), pkg.get("version")
        where = f"{where_file}:{_toml_line(text, f'name = {json.dumps(str(name))}')}"
        if pkg.get("vcs") or pkg.get("directory") or pkg.get("archive"):
            _pylock_direct(d, where, pkg, path.parent)
            continue
        if not version:
            d.note(where, f"{quote(name)}: no version and no source; not carried over")
            continue
        marker = f"; {pkg['marker']}" if pkg.get("marker") else ""
        req = f"{name}=={version}{marker}"
        if not isinstance(name, str) or not isinstance(version, str) or not _requirements([req]):
            d.note(where, f"{quote(req)} is not a valid requirement; not carried over")
            continue
        d.pypi.append(req)
        index = pkg.get("index")
        if index and index not in indexes and (url := d.checked_url(where, index, "index")) is not None:
            indexes.append(url)
    if indexes:
        d.index_url = indexes[0]
        for u in indexes[1:]:
            d.add_extra_index(u)


def _pylock_direct(d: Draft, where: str, pkg: dict, base_dir: Path) -> None:
    """A PEP 751 package of kind vcs (pinned to its commit-id), directory or archive (a URL
    with its sha256, or a path) as a git / URL / path requirement."""
    name = pkg.get("name")
    if not isinstance(name, str):
        d.note(where, f"[[packages]] name {quote(name)} is not text; not carried over")
        return
    marker = f" ; {pkg['marker']}" if isinstance(pkg.get("marker"), str) and pkg["marker"] else ""
    vcs, directory, archive = (_table(pkg.get(k)) for k in ("vcs", "directory", "archive"))
    sub = vcs.get("subdirectory") or directory.get("subdirectory") or archive.get("subdirectory")
    frag = f"#subdirectory={sub}" if isinstance(sub, str) and sub else ""
    if vcs:
        url, commit = vcs.get("url"), vcs.get("commit-id")
        if vcs.get("type") != "git" or not isinstance(url, str) or not isinstance(commit, str):
            d.note(where, f"{quote(name)}: a {quote(vcs.get('type'))} repository without a url and commit-id; only git "
                          "is carried over")  # fmt: skip
            return
        if vcs.get("requested-revision"):
            d.note(where, f"{quote(name)}: pinned to commit {commit[:12]} (the lock's), not to "
                          f"{quote(vcs['requested-revision'])}")  # fmt: skip
        _carry_direct(d, where, f"{name} @ git+{url}@{commit}{frag}{marker}", base_dir)
        return
    if directory:
        if directory.get("editable"):
            d.note(where, f"{quote(name)}: editable; installed as a regular package (mlenv environments are immutable)")
        rel = str(directory.get("path") or ".")
        if rel != "." and not rel.startswith(("./", "../", "/")):
            rel = "./" + rel
        _carry_direct(d, where, f"{name} @ {rel}{marker}", base_dir)
        return
    sha = _table(archive.get("hashes")).get("sha256")
    if isinstance(archive.get("url"), str):
        fragment = f"#sha256={sha}" if isinstance(sha, str) else ""
        _carry_direct(d, where, f"{name} @ {archive['url']}{fragment}{marker}", base_dir)
    elif isinstance(archive.get("path"), str):
        _carry_direct(d, where, f"{name} @ {archive['path']}{marker}", base_dir)
    else:
        d.note(where, f"{quote(name)}: an archive with neither url nor path; not carried over")
