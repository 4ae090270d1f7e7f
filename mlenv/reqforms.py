"""The forms a `[pypi]` dependency can take, parsed once, for the spec, the solver,
the importers and the exporters.

    numpy>=1.26                                        index    (a name and a specifier)
    tools @ git+https://host/team/tools.git@v0.3#subdirectory=tools   git
    flash-attn @ https://host/flash_attn-2.6-…whl#sha256=<hex>       url      (an archive)
    features @ ./libs/features                         path     (a directory: built to a wheel)
    train @ .                                          path     (the project itself)
    helper @ ./wheels/helper-1.0-py3-none-any.whl      path     (a local archive: used as is)

PEP 508 syntax throughout (packaging parses the requirement); this module only
classifies the URL part and checks what mlenv supports. Every error is a
ValueError with one line saying what is wrong and what to write instead; the
spec turns it into a SpecError with file:line. `${VAR}` placeholders stay as
written (they are expanded in memory at solve/install time, never stored).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

INDEX, GIT, URL, PATH = "index", "git", "url", "path"
KINDS = (INDEX, GIT, URL, PATH)

ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_COMMIT = re.compile(r"[0-9a-f]{40}\Z")
# what a git ref may be (git check-ref-format, roughly): no spaces, no `..`, no control characters, no `~^:?*[\`
_REF = re.compile(r"(?!.*\.\.)(?!/)(?!.*//)(?!.*/\Z)(?!.*\.lock\Z)[A-Za-z0-9._/+-]{1,200}\Z")
_SCHEME = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Form:
    """One PyPI dependency, classified. `text` is the requirement as written."""

    kind: str  # index | git | url | path
    name: str  # as written (normalize with packaging.utils.canonicalize_name)
    text: str
    extras: tuple[str, ...] = ()
    marker: str | None = None
    specifier: str = ""  # index only
    url: str | None = None  # git: the repository URL (no git+, @ref or fragment); url: the URL without fragment
    ref: str | None = None  # git: the branch, tag or commit as written (None: the default branch)
    subdirectory: str | None = None  # git, path: where the package's pyproject.toml is, inside the repository/path
    sha256: str | None = None  # url: from #sha256=
    path: str | None = None  # path: normalized, relative to mlenv.toml ("." or "libs/features")
    archive: bool = False  # url, path: an archive file (a wheel or sdist), not a directory
    fragment: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def pinned_commit(self) -> bool:
        return self.kind == GIT and bool(self.ref) and bool(_COMMIT.match(self.ref or ""))

    def describe(self) -> str:
        """A short, credential-free description for messages."""
        if self.kind == GIT:
            return f"{strip_userinfo(self.url or '')}@{self.ref or '(default branch)'}" + (
                f" (subdirectory {self.subdirectory})" if self.subdirectory else ""
            )
        if self.kind == URL:
            return strip_userinfo(self.url or "")
        if self.kind == PATH:
            return "./" + self.path if self.path and self.path != "." else "."
        return self.text


def strip_userinfo(url: str) -> str:
    return re.sub(r"\A([a-zA-Z][a-zA-Z0-9+.-]*://)[^/]*@", r"\1", url)


def parse(text: str) -> Form:
    """Classify one requirement string; ValueError (one line) when mlenv cannot use it."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise ValueError(f"invalid PyPI requirement {text!r}: {first}") from None
    extras = tuple(sorted(req.extras))
    marker = str(req.marker) if req.marker is not None else None
    if not req.url:
        return Form(INDEX, req.name, text, extras, marker, specifier=str(req.specifier))
    url = req.url.strip()
    base = {"name": req.name, "text": text, "extras": extras, "marker": marker}
    m = _SCHEME.match(url)
    scheme = m.group(1).lower() if m else ""
    if len(scheme) == 1:  # C:\... : a Windows drive letter, not a scheme
        scheme = ""
    if scheme.startswith("git+"):
        return _parse_git(url, base)
    if scheme in ("hg+http", "hg+https", "svn+https", "svn+http", "bzr+https", "bzr+http") or scheme.startswith(
        ("hg+", "svn+", "bzr+")
    ):
        raise ValueError(f"{req.name}: only git repositories are supported ({scheme.split('+')[0]} is not)")
    if scheme in ("http", "https"):
        return _parse_url(url, base)
    if scheme == "file":
        raise ValueError(
            f"{req.name}: a file:// URL names a path on this machine only; write it relative to mlenv.toml, "
            f"e.g. {req.name} @ ./libs/{req.name}"
        )
    if scheme:
        raise ValueError(f"{req.name}: unsupported URL scheme {scheme!r} (use https://, git+https://, or a ./path)")
    return _parse_path(url, base)


def _fragment(raw: str, allowed: tuple[str, ...], name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split("&"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"{name}: URL fragment {raw!r} is not key=value pairs")
        if key not in allowed:
            raise ValueError(f"{name}: unsupported URL fragment key {key!r} (mlenv understands {', '.join(allowed)})")
        if key in out:
            raise ValueError(f"{name}: URL fragment key {key!r} given twice")
        out[key] = unquote(value)
    return out


def _check_subdirectory(value: str, name: str) -> str:
    sub = value.strip().strip("/")
    norm = posixpath.normpath(sub) if sub else ""
    if not sub or "\\" in sub or sub.startswith("/") or norm.startswith("..") or norm == "." or "\0" in sub:
        raise ValueError(f"{name}: subdirectory {value!r} must be a relative path inside the repository")
    return norm


def _check_host_url(url: str, name: str, what: str) -> str:
    """scheme://[userinfo@]host[:port]/path with no whitespace. Literal credentials are
    the spec's check (mlenv.runtime.secrets.has_literal_credential): ${VAR} only."""
    if any(c.isspace() for c in url) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f"{name}: the {what} URL contains whitespace or control characters")
    m = re.match(r"\A[a-z][a-z0-9+.-]*://([^/?#]*)", url, re.I)
    if not m or not m.group(1).rpartition("@")[2]:
        raise ValueError(f"{name}: the {what} URL has no host")
    return url


def _parse_git(url: str, base: dict) -> Form:
    name = base["name"]
    rest = url[len("git+") :]
    scheme = rest.split(":", 1)[0].lower()
    if scheme == "ssh" or re.match(r"\A[^/:]+@[^/:]+:", rest):
        raise ValueError(
            f"{name}: git over ssh is not supported; use git+https:// with a token in ${{VAR}} or ~/.netrc"
        )
    if scheme not in ("https", "http", "file"):
        raise ValueError(f"{name}: unsupported git URL scheme {scheme!r} (use git+https:// or git+file://)")
    body, _, frag = rest.partition("#")
    fragment = _fragment(frag, ("subdirectory", "egg"), name)
    if scheme == "file":
        if not body.startswith("file:///"):
            raise ValueError(f"{name}: a git+file URL must be absolute (git+file:///path/to/repo)")
        path_part = body[len("file://") :]
        repo, ref = _split_ref(path_part, name)
        repo_url = "file://" + repo
    else:
        _check_host_url(body, name, "git repository")
        m = re.match(r"\A([a-z]+://[^/]*)(/.*)?\Z", body, re.I)
        assert m is not None  # checked by _check_host_url
        authority, path_part = m.group(1), m.group(2) or ""
        repo_path, ref = _split_ref(path_part, name)
        if not repo_path.strip("/"):
            raise ValueError(f"{name}: the git URL names no repository path")
        repo_url = authority + repo_path
    sub = _check_subdirectory(fragment["subdirectory"], name) if "subdirectory" in fragment else None
    if "egg" in fragment and _norm(fragment["egg"]) != _norm(name):
        raise ValueError(f"{name}: #egg={fragment['egg']} names another package than the requirement")
    return Form(GIT, url=repo_url, ref=ref, subdirectory=sub, fragment=fragment, **base)


def _split_ref(path_part: str, name: str) -> tuple[str, str | None]:
    """'/team/tools.git@v0.3' -> ('/team/tools.git', 'v0.3'); the ref follows the last '@'."""
    if "@" not in path_part:
        return path_part, None
    repo, _, ref = path_part.rpartition("@")
    ref = unquote(ref)
    if not _REF.match(ref):
        raise ValueError(f"{name}: {ref!r} is not a valid git branch, tag or commit")
    return repo, ref


def _parse_url(url: str, base: dict) -> Form:
    name = base["name"]
    body, _, frag = url.partition("#")
    fragment = _fragment(frag, ("sha256", "egg", "subdirectory"), name)
    if "subdirectory" in fragment:
        raise ValueError(f"{name}: #subdirectory is only supported for git URLs and local paths")
    _check_host_url(body, name, "archive")
    filename = unquote(body.split("?", 1)[0].rsplit("/", 1)[-1])
    if not filename.endswith(ARCHIVE_SUFFIXES):
        raise ValueError(
            f"{name}: {strip_userinfo(body)} does not name a wheel or source archive "
            f"({', '.join(ARCHIVE_SUFFIXES[:3])}, ...)"
        )
    sha = fragment.get("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise ValueError(f"{name}: #sha256= must be 64 lowercase hex digits")
    return Form(URL, url=body, sha256=sha, archive=True, fragment=fragment, **base)


def _parse_path(raw: str, base: dict) -> Form:
    name = base["name"]
    body, _, frag = raw.partition("#")
    fragment = _fragment(frag, ("subdirectory", "egg"), name)
    if "\\" in body or re.match(r"\A[A-Za-z]:", body):
        raise ValueError(f"{name}: write local paths with '/', relative to mlenv.toml (e.g. ./libs/{name})")
    if body.startswith(("/", "~")):
        raise ValueError(
            f"{name}: {body!r} is an absolute path; write it relative to mlenv.toml (e.g. ./libs/{name}) "
            "so the lock means the same on every machine"
        )
    if not (body in (".", "..") or body.startswith(("./", "../"))):
        raise ValueError(f"{name}: a local path must start with ./ or ../ (e.g. {name} @ ./{body})")
    norm = posixpath.normpath(body)
    if "\0" in norm or any(ord(c) < 0x20 for c in norm):
        raise ValueError(f"{name}: the path contains control characters")
    sub = _check_subdirectory(fragment["subdirectory"], name) if "subdirectory" in fragment else None
    if sub:
        norm = posixpath.normpath(posixpath.join(norm, sub))
    archive = norm.endswith(ARCHIVE_SUFFIXES)
    return Form(PATH, path=norm, archive=archive, fragment=fragment, **base)


def quick(text: str) -> tuple[str, str] | None:
    """(kind, target) of a git / URL / path requirement without importing packaging (the
    sources rule reads a lock's [inputs] on every command): ("git", repository URL as
    written), ("url", URL without fragment) or ("path", normalized relative path); None
    for an index requirement or anything mlenv would not parse."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*@\s*(\S+?)\s*(;.*)?\Z", text)
    if not m:
        return None
    base = {"name": m.group(1), "text": text, "extras": (), "marker": None}
    url = m.group(3)
    try:
        if url.lower().startswith("git+"):
            return GIT, _parse_git(url, base).url or ""
        if re.match(r"\Ahttps?://", url, re.I):
            return URL, _parse_url(url, base).url or ""
        if not _SCHEME.match(url) or re.match(r"\A[A-Za-z]:", url):
            return PATH, _parse_path(url, base).path or "."
    except ValueError:
        return None
    return None


def quick_git_url(text: str) -> str | None:
    """The repository URL (userinfo as written) of a git requirement, without importing
    packaging (the no-op lock's path); None for anything else or anything unusual."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*@\s*(git\+\S+?)\s*(;.*)?\Z", text)
    if not m:
        return None
    try:
        form = _parse_git(m.group(3), {"name": m.group(1), "text": text, "extras": (), "marker": None})
    except ValueError:
        return None
    return form.url


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_text(form: Form, *, url: str | None = None) -> str:
    """The PEP 508 text of a form, with its URL replaced by `url` (for uv: an absolute
    file URL for a path, a credentialed URL held in memory, a pinned commit)."""
    extras = f"[{','.join(form.extras)}]" if form.extras else ""
    marker = f" ; {form.marker}" if form.marker else ""
    if form.kind == INDEX:
        return f"{form.name}{extras}{form.specifier}{marker}"
    assert url is not None
    return f"{form.name}{extras} @ {url}{marker}"


def git_url(form: Form, *, repo_url: str | None = None, ref: str | None = None) -> str:
    """git+URL[@ref][#subdirectory=...] for a git form (repo_url/ref override the written ones)."""
    out = "git+" + (repo_url or form.url or "")
    ref = ref if ref is not None else form.ref
    if ref:
        out += "@" + ref
    if form.subdirectory:
        out += "#subdirectory=" + form.subdirectory
    return out
