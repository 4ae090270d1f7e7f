"""Requirement lines of other tools that do not name an index package, carried into
mlenv's forms (mlenv.reqforms) by the importers:

    -e ./libs/features              -> features @ ./libs/features     (name from its metadata)
    ./dist/tool-1.0-py3-none-any.whl -> tool @ ./dist/tool-1.0-py3-none-any.whl
    git+https://h/r.git@v1#egg=r    -> r @ git+https://h/r.git@v1
    pkg @ git+https://h/r.git@v1    -> as is
    https://h/x-2.0-py3-none-any.whl -> x @ https://h/x-2.0-py3-none-any.whl
    pkg @ file:///abs/project/libs  -> pkg @ ./libs                    (inside the project)

A local path is resolved against the directory of the file that names it, then
written relative to the new mlenv.toml's directory; one outside that directory is
not carried (mlenv keeps local packages inside the project so a lock means the same
everywhere). A line that cannot be carried gets a note saying why; nothing here
raises for a bad line.

Credentials: a URL's literal userinfo (`https://user:pw@host/...`, `git+https://tok@host/...`)
is dropped before anything else, with a note that quotes the line without it (mlenv never
stores a secret: docs/security.md); `${VAR}` references stay (expanded at lock/install time).
A git or archive URL is then held to the spec's URL rules (mlenv.spec.source_problem), so
what is carried is what `mlenv lock` accepts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..reqforms import ARCHIVE_SUFFIXES, GIT, URL, parse

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def project_name(directory: Path) -> str | None:
    """The distribution name a source directory declares, read without building it:
    pyproject.toml [project] name, else setup.cfg [metadata] name, else a literal
    name="..." in setup.py."""
    import configparser
    import tomllib

    try:
        data = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
        name = (data.get("project") or {}).get("name")
        if isinstance(name, str) and _NAME.match(name):
            return name
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        pass
    try:
        cfg = configparser.ConfigParser()
        cfg.read_string((directory / "setup.cfg").read_text(encoding="utf-8"))
        name = cfg.get("metadata", "name", fallback=None)
        if name and _NAME.match(name.strip()):
            return name.strip()
    except (OSError, ValueError, UnicodeDecodeError, configparser.Error):
        pass
    try:
        m = re.search(r"""\bname\s*=\s*["']([A-Za-z0-9][A-Za-z0-9._-]*)["']""",
                      (directory / "setup.py").read_text(encoding="utf-8"))  # fmt: skip
        if m:
            return m.group(1)
    except (OSError, UnicodeDecodeError):
        pass
    return None


def _archive_name(filename: str) -> str | None:
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _relative(target: Path, project: Path) -> str | None:
    """./x/y for target inside project (both resolved), '.' for project itself, else None."""
    if target == project:
        return "."
    if project not in target.parents:
        return None
    return "./" + target.relative_to(project).as_posix()


def carry(text: str, *, base_dir: Path, project: Path, editable: bool = False) -> tuple[str | None, list[str]]:
    """(the requirement in mlenv's form, or None; notes) for one requirement line that names
    a URL, a VCS repository or a path. `text` has no pip options left."""
    text, notes = without_credentials(text)
    try:
        requirement, more = _carry(text, base_dir=base_dir, project=project)
    except ValueError:  # urllib's own refusals (an unclosed IPv6 bracket, a bad port): not a URL to carry
        requirement, more = None, [f"`{text}` not carried over: not a valid URL"]
    notes += more
    if editable:
        notes = [n.replace(f"`{text}` not carried over", f"`-e {text}` (editable) not carried over") for n in notes]
        if requirement:
            notes.append(f"`-e {text}` (editable): installed as a regular package, mlenv environments are immutable; "
                         "`mlenv lock` rebuilds it when its files change")  # fmt: skip
    return requirement, notes


def without_credentials(text: str) -> tuple[str, list[str]]:
    """(text with the literal userinfo of its URLs dropped, notes): `${VAR}` userinfo stays.
    The note quotes the line as carried, never the secret."""
    from ..runtime.secrets import has_literal_credential, strip_credentials

    # each scheme://... token judged as a URL (its authority ends at / ? #), not by the scrubber's
    # free-text pattern, which stops at characters a userinfo may hold: `)`, `'`, `[`
    def strip(m: re.Match[str]) -> str:
        return strip_credentials(m.group(0)) if has_literal_credential(m.group(0)) else m.group(0)

    cleaned = re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S*", strip, text)
    if cleaned == text:
        return text, []
    return cleaned, [f"`{cleaned}`: a literal credential (user:password@ or a token) in its URL was not copied; "
                     "write it as https://${USER}:${TOKEN}@host/... (read from the environment) or use ~/.netrc"]  # fmt: skip


def _carry(text: str, *, base_dir: Path, project: Path) -> tuple[str | None, list[str]]:
    notes: list[str] = []
    s = text.strip()
    m = re.match(r"\A([A-Za-z0-9][A-Za-z0-9._-]*(?:\s*\[[^\]]*\])?)\s*@\s*(\S.*)\Z", s)
    if m and not s.startswith(("git+", "hg+", "svn+", "bzr+")) and "://" not in m.group(1):
        name_part, rest = m.group(1), m.group(2)
    else:
        name_part, rest = None, s
    marker = ""
    parts = re.split(r"\s+;\s*", rest, maxsplit=1)  # PEP 508: whitespace before a URL requirement's marker
    if len(parts) == 2:
        rest, marker = parts[0], f" ; {parts[1].strip()}"
    url = rest.strip()
    scheme = urlsplit(url).scheme.lower() if re.match(r"\A[A-Za-z][A-Za-z0-9+.-]+:", url) else ""
    if scheme.startswith(("hg+", "svn+", "bzr+")):
        return None, notes + [f"`{text}` not carried over: only git repositories are supported"]
    if scheme.startswith("git+"):
        body, _, frag = url.partition("#")
        pairs = dict(p.partition("=")[::2] for p in frag.split("&") if p) if frag else {}
        egg = pairs.pop("egg", None)
        name = name_part or egg
        if not name:
            return None, notes + [f"`{text}` not carried over: a git URL without a package name (write "
                                  "`NAME @ git+...` or add #egg=NAME)"]  # fmt: skip
        rebuilt = body + (("#" + "&".join(f"{k}={v}" for k, v in pairs.items())) if pairs else "")
        return _checked(f"{name} @ {rebuilt}{marker}", text, notes)
    if scheme in ("http", "https"):
        name = name_part or _archive_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
        if not name:
            return None, notes + [f"`{text}` not carried over: cannot tell the package name from the URL (write "
                                  "`NAME @ URL`)"]  # fmt: skip
        return _checked(f"{name} @ {url}{marker}", text, notes)
    if scheme == "file":
        path = Path(unquote(urlsplit(url).path))
    elif scheme:
        return None, notes + [f"`{text}` not carried over: unsupported URL scheme {scheme!r}"]
    else:
        path = Path(os.path.expanduser(url.split("#", 1)[0]))
        if not path.is_absolute():
            path = base_dir / path
    try:
        target = path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None, notes + [f"`{text}` not carried over: not a usable path"]
    rel = _relative(target, project.resolve())
    if rel is None:
        return None, notes + [f"`{text}` not carried over: a local package outside the project (the new mlenv.toml's "
                              f"directory), at {target}; move it in, or publish it"]  # fmt: skip
    if target.is_file() and target.name.endswith(ARCHIVE_SUFFIXES):
        name = name_part or _archive_name(target.name)
    elif target.is_dir():
        name = name_part or project_name(target)
    else:
        return None, notes + [f"`{text}` not carried over: {target} does not exist"]
    if not name:
        return None, notes + [f"`{text}` not carried over: cannot tell the package name of {rel} without building "
                              "it (add `NAME @ " + rel + "` by hand)"]  # fmt: skip
    return _checked(f"{name} @ {rel}{marker}", text, notes)


def _checked(requirement: str, text: str, notes: list[str]) -> tuple[str | None, list[str]]:
    from ..runtime.secrets import has_literal_credential
    from ..spec import source_problem

    try:
        form = parse(requirement)
    except ValueError as exc:
        return None, notes + [f"`{text}` not carried over: {exc}"]
    if form.kind in (GIT, URL) and form.url:
        problem = source_problem(form.url) or (
            "carries a literal credential" if has_literal_credential(form.url) else None
        )
        if problem:
            return None, notes + [f"`{text}` not carried over: its URL {problem}"]
    return requirement, notes


def is_direct(text: str) -> bool:
    """Does a requirement line name a URL, a repository or a path (not an index package)?"""
    s = text.strip()
    if re.match(r"\A(git|hg|svn|bzr)\+", s) or re.search(r"@\s*\S", s.split(";", 1)[0]):
        return True
    if s.startswith(("file:", "./", "../", "/", "~", "http://", "https://")) or s in (".", ".."):
        return True
    return bool(re.match(r"\A[A-Za-z]:\\", s)) or (s.endswith(ARCHIVE_SUFFIXES) and "/" in s)
