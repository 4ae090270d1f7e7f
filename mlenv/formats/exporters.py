"""mlenv.lock -> other tools' formats (`mlenv export --format F`).

Every exporter is a pure function of (spec, lock, platform) returning the text
and a list of notes (what the target format cannot hold). Nothing here
writes files: the command writes atomically. Formats and what each carries:
docs/formats.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..errors import MlenvError

# Per-platform formats take --platform; conda-lock holds every platform.
FORMATS = ("requirements", "environment-yml", "conda-explicit", "conda-lock", "pylock", "azureml", "dockerfile")
DEFAULT_FILENAMES = {
    "requirements": "requirements.txt",
    "environment-yml": "environment.yml",
    "conda-explicit": "conda-{platform}.txt",
    "conda-lock": "conda-lock.yml",
    "pylock": "pylock.toml",
    "azureml": "azureml-environment.yml",
    "dockerfile": "Dockerfile",
}

# The header line requirements.txt exports carry so `mlenv init --from` can
# restore what the format itself has no field for (docs/formats.md).
HEADER_RE = re.compile(r"^#\s*mlenv:\s*(.*)$")

# PEP 508 environment markers of each conda platform (pylock `environments`).
PLATFORM_MARKERS = {
    "linux-64": "sys_platform == 'linux' and platform_machine == 'x86_64'",
    "linux-aarch64": "sys_platform == 'linux' and platform_machine == 'aarch64'",
    "osx-64": "sys_platform == 'darwin' and platform_machine == 'x86_64'",
    "osx-arm64": "sys_platform == 'darwin' and platform_machine == 'arm64'",
    "win-64": "sys_platform == 'win32' and platform_machine == 'AMD64'",
}

AZUREML_SCHEMA = "https://azuremlschemas.azureedge.net/latest/environment.schema.json"


class ExportError(MlenvError):
    pass


@dataclass
class Exported:
    text: str
    notes: list[str] = field(default_factory=list)


# --- shared helpers ---------------------------------------------------------------


def pick_platform(lock, platform: str | None, fmt: str) -> str:
    plats = sorted(lock.platforms)
    if platform:
        if platform not in lock.platforms:
            raise ExportError(
                f"--platform {platform}: the lock has no such platform (it has {', '.join(plats)})",
                hint="add it to [environment] platforms and run `mlenv lock`",
            )
        return platform
    if len(plats) == 1:
        return plats[0]
    if "linux-64" in plats:
        return "linux-64"
    raise ExportError(
        f"{fmt} holds one platform and the lock has {len(plats)} ({', '.join(plats)})",
        hint="choose one with --platform",
    )


def safe_url(url: str) -> str:
    """Index/channel URL fit to be written out: `${VAR}` credentials are kept (pip,
    uv and mlenv expand them from the environment), literal ones are stripped."""
    from ..runtime.secrets import has_literal_credential, strip_credentials

    return strip_credentials(url) if has_literal_credential(url) else url


def _header(spec, lock, platform: str | None, what: str) -> list[str]:
    lines = [f"# {what}, exported by mlenv from {spec.name} (content hash {lock.content_hash})."]
    if platform:
        lines.append(f"# Platform {platform}; regenerate with `mlenv export` after `mlenv lock`, do not edit.")
    return lines


def _meta_line(spec, lock, platform: str) -> str:
    """What the format has no field for, in a comment `mlenv init --from` reads back."""
    meta = {"platform": platform, "python": spec.python or "", "image": image_reference(lock)}
    return "# mlenv: " + " ".join(f"{k}={v}" for k, v in meta.items() if v)


def _python_of(lock, platform: str) -> str | None:
    return lock.platform_python(platform)


def _pypi(lock, platform):
    return sorted(lock.for_platform(platform, "pypi"), key=lambda p: p.name)


def _conda(lock, platform):
    return sorted(lock.for_platform(platform, "conda"), key=lambda p: p.name)


def _index_urls(spec) -> tuple[str, list[str]]:
    index = safe_url(spec.index_url) if spec.index_url else "https://pypi.org/simple"
    return index, [safe_url(u) for u in spec.extra_index_urls]


def _source_lines(spec) -> list[str]:
    """pip/uv option lines: --index-url, --extra-index-url, --find-links."""
    index, extras = _index_urls(spec)
    return ([f"--index-url {index}"] + [f"--extra-index-url {u}" for u in extras]
            + [f"--find-links {safe_url(u)}" for u in spec.find_links])  # fmt: skip


def direct_reference(pkg) -> str | None:
    """`name @ ...` of a package built or fetched from a git, URL or path requirement (the
    git commit pinned), or None for an index / find-links package."""
    source = pkg.get("source")
    if source in ("git", "path", "url"):
        return f"{pkg.name} @ {pkg.url}"
    return None


def _built(pkgs) -> list:
    """Packages mlenv built itself (git, local): no downloadable artifact with a hash."""
    return [p for p in pkgs if p.get("source") in ("git", "path")]


def image_reference(lock) -> str:
    return lock.image.get("reference") or lock.image.get("base") or ""


def _yaml_dump(data) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def str_rep(dumper, value):
        style = '"' if value == "" or value.strip() != value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, str_rep)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


# --- requirements.txt ---------------------------------------------------------------


def requirements(spec, lock, platform=None) -> Exported:
    platform = pick_platform(lock, platform, "requirements.txt")
    notes: list[str] = []
    _python_of(lock, platform)
    head = _header(spec, lock, platform, "requirements.txt")
    head.append(_meta_line(spec, lock, platform))
    built = _built(_pypi(lock, platform))
    if built:
        head.append(f"# Install: uv pip install --no-deps -r requirements.txt, from the project directory (uv checks "
                    f"every --hash; the {len(built)} git/local line(s) have none, so pip's --require-hashes mode "
                    "refuses this file)")  # fmt: skip
        notes.append(f"{len(built)} package(s) built from git or a local path are written as `name @ git+URL@COMMIT` / "
                     "`name @ ./path` without --hash (no downloadable artifact has the locked wheel's hash): the "
                     "installer builds them again; use `mlenv install` or `mlenv build` to get the locked wheels")  # fmt: skip
    else:
        head.append("# Install: pip install --no-deps --require-hashes -r requirements.txt")
    conda = _conda(lock, platform)
    if conda:
        head.append(f"# Not included: {len(conda)} conda package(s) (requirements.txt holds PyPI packages only).")
        notes.append(
            f"{len(conda)} conda package(s) are not in requirements.txt; use --format environment-yml, "
            "conda-explicit or conda-lock for them"
        )
    if lock.variables:
        notes.append("requirements.txt cannot hold [variables]; they are not exported")
    out = head + _source_lines(spec)
    for pkg in _pypi(lock, platform):
        ref = direct_reference(pkg)
        if ref and pkg.get("source") in ("git", "path"):
            out.append(ref)
        else:
            out.append(f"{ref or pkg.name + '==' + pkg.version} \\\n    --hash=sha256:{pkg.sha256}")
    return Exported("\n".join(out) + "\n", notes)


# --- environment.yml ------------------------------------------------------------------


def conda_pin(pkg) -> str:
    """`name=version=build`, the form `conda env export` writes (exact with the build)."""
    build = pkg.get("build")
    return f"{pkg.name}={pkg.version}={build}" if build else f"{pkg.name}=={pkg.version}"


def environment_dict(spec, lock, platform: str, notes: list[str]) -> dict:
    conda = _conda(lock, platform)
    pypi = _pypi(lock, platform)
    index, extras = _index_urls(spec)
    deps: list = []
    if conda:
        channels = [safe_url(c) for c in spec.channels]
        deps += [conda_pin(p) for p in conda]
        if pypi and not any(p.name == "pip" for p in conda):
            deps.append("pip")
    else:
        # A PyPI-only environment: mlenv installs into a venv on the base image's
        # Python; conda expresses that as python + pip with a pip section.
        channels = ["conda-forge"]
        python = spec.python or _python_of(lock, platform)
        if pypi or python:  # an apt-only spec without python names no interpreter (never `python=None`)
            deps += [f"python={python}" if python else "python", "pip"]
    if pypi:
        pip_lines = []
        if spec.index_url:
            pip_lines.append(f"--index-url {index}")
        pip_lines += [f"--extra-index-url {u}" for u in extras]
        pip_lines += [f"--find-links {safe_url(u)}" for u in spec.find_links]
        pip_lines += [direct_reference(p) or f"{p.name}=={p.version}" for p in pypi]
        deps.append({"pip": pip_lines})
        if _built(pypi):
            notes.append("the pip section names git and local packages by commit / path: conda's pip builds them "
                         "again (needs git, or the project directory)")  # fmt: skip
    data: dict = {"name": spec.name, "channels": channels, "dependencies": deps}
    if lock.variables:
        data["variables"] = dict(sorted(lock.variables.items()))
    image = lock.image
    if image.get("apt-packages") or image.get("steps") or image.get("python"):
        notes.append("environment.yml cannot hold [image] apt-packages, steps or python; they are not exported")
    return data


def environment_yml(spec, lock, platform=None) -> Exported:
    platform = pick_platform(lock, platform, "environment.yml")
    notes: list[str] = []
    data = environment_dict(spec, lock, platform, notes)
    head = _header(spec, lock, platform, "environment.yml")
    head.append(_meta_line(spec, lock, platform))
    return Exported("\n".join(head) + "\n" + _yaml_dump(data), notes)


# --- conda explicit ----------------------------------------------------------------------


def conda_explicit(spec, lock, platform=None) -> Exported:
    platform = pick_platform(lock, platform, "an @EXPLICIT file")
    conda = _conda(lock, platform)
    if not conda:
        raise ExportError(
            f"the lock has no conda packages for {platform}; an @EXPLICIT file lists conda packages only",
            hint="use --format requirements or pylock for a PyPI-only environment",
        )
    notes = []
    pypi = _pypi(lock, platform)
    out = _header(spec, lock, None, "conda explicit spec")
    out += [f"# platform: {platform}", "@EXPLICIT"]
    for pkg in _topo(conda):
        md5 = pkg.get("md5")
        out.append(f"{pkg.url}#{md5}" if md5 else pkg.url)
        if not md5:
            notes.append(f"{pkg.name} {pkg.version} has no md5 in the lock; written without a checksum")
    if pypi:
        notes.append(f"{len(pypi)} PyPI package(s) cannot be in an @EXPLICIT file; use --format requirements or pylock")
    return Exported("\n".join(out) + "\n", notes)


def _topo(conda: list) -> list:
    """Dependencies before dependents (what conda-lock and micromamba expect), ties by name."""
    by_name = {p.name: p for p in conda}
    done: set[str] = set()
    order: list = []

    def visit(pkg, stack):
        if pkg.name in done or pkg.name in stack:
            return
        stack.add(pkg.name)
        for dep in pkg.get("depends", []) or []:
            name = dep.split()[0]
            if name in by_name:
                visit(by_name[name], stack)
        done.add(pkg.name)
        order.append(pkg)

    for pkg in sorted(conda, key=lambda p: p.name):
        visit(pkg, set())
    return order


# --- conda-lock.yml (version 1) -------------------------------------------------------------


def conda_lock(spec, lock, platform=None) -> Exported:
    platforms = [pick_platform(lock, platform, "conda-lock")] if platform else sorted(lock.platforms)
    notes: list[str] = []
    channels = [{"url": safe_url(c), "used_env_vars": []} for c in spec.channels] if spec.has_conda else []
    packages = []
    for plat in platforms:
        for pkg in _topo(_conda(lock, plat)):
            deps = {}
            for dep in pkg.get("depends", []) or []:
                name, _, rest = dep.partition(" ")
                deps[name] = rest.strip() or "*"
            entry = {
                "name": pkg.name, "version": pkg.version, "manager": "conda", "platform": plat,
                "dependencies": deps, "url": pkg.url,
                "hash": {"md5": pkg.get("md5") or "", "sha256": pkg.sha256},
                "category": "main", "optional": False,
            }  # fmt: skip
            if pkg.get("build"):
                entry["build"] = pkg.get("build")
            packages.append(entry)
        for pkg in _pypi(lock, plat):
            packages.append({
                "name": pkg.name, "version": pkg.version, "manager": "pip", "platform": plat,
                "dependencies": {}, "url": pkg.url, "hash": {"sha256": pkg.sha256},
                "category": "main", "optional": False,
            })  # fmt: skip
    if any(_pypi(lock, p) for p in platforms):
        notes.append(
            "mlenv.lock does not record PyPI dependency edges; conda-lock `dependencies` of pip packages are "
            "empty (its installer installs pip packages with --no-deps, so installs are unaffected)"
        )
    digest = lock.content_hash.split(":", 1)[-1]
    data = {
        "version": 1,
        "metadata": {
            "content_hash": dict.fromkeys(platforms, digest),
            "channels": channels,
            "platforms": platforms,
            "sources": [spec.path.name],
            "custom_metadata": {
                "mlenv.content-hash": lock.content_hash,
                "mlenv.name": spec.name,
                "mlenv.image": image_reference(lock),
            },
        },
        "package": packages,
    }
    head = _header(spec, lock, None, "conda-lock.yml (version 1)")
    head.append("# metadata.content_hash holds mlenv's content hash, not conda-lock's spec hash.")
    return Exported("\n".join(head) + "\n" + _yaml_dump(data), notes)


# --- pylock.toml (PEP 751) --------------------------------------------------------------------


def pylock(spec, lock, platform=None) -> Exported:
    from ..lockfile import _s

    platform = pick_platform(lock, platform, "pylock.toml")
    notes: list[str] = []
    conda = _conda(lock, platform)
    if conda:
        notes.append(f"{len(conda)} conda package(s) cannot be in pylock.toml (PEP 751 is for Python packages)")
    python = spec.python or _python_of(lock, platform) or ""
    mm = ".".join(python.split(".")[:2])
    out = _header(spec, lock, platform, "pylock.toml (PEP 751)")
    out.append(_meta_line(spec, lock, platform))
    out += [
        'lock-version = "1.0"',
        f"environments = [{_s(PLATFORM_MARKERS[platform])}]",
    ]
    if mm:
        out.append(f"requires-python = {_s('==' + mm + '.*')}")
    out.append('created-by = "mlenv"')
    for pkg in _pypi(lock, platform):
        filename = pkg.url.rsplit("/", 1)[-1].split("#", 1)[0]
        out += ["", "[[packages]]", f"name = {_s(pkg.name)}", f"version = {_s(pkg.version)}"]
        if pkg.get("index"):
            out.append(f"index = {_s(safe_url(pkg.get('index')))}")
        if pkg.get("requires-python"):
            out.append(f"requires-python = {_s(pkg.get('requires-python'))}")
        if pkg.get("source") in ("git", "path", "url"):
            out.append(_pylock_direct(pkg, _s))
            continue
        art = [f"name = {_s(filename)}", f"url = {_s(pkg.url)}"]
        if pkg.get("size"):
            art.append(f"size = {int(pkg.get('size'))}")
        art.append(f"hashes = {{ sha256 = {_s(pkg.sha256)} }}")
        if filename.endswith(".whl"):
            out.append("wheels = [{ " + ", ".join(art) + " }]")
        else:
            out += ["", "[packages.sdist]"] + [a.replace(" = ", " = ", 1) for a in art]
    return Exported("\n".join(out) + "\n", notes)


def _pylock_direct(pkg, _s) -> str:
    """PEP 751's vcs (the commit), directory (relative to the lock) or archive (URL + sha256)."""
    source = pkg.get("source")
    if source == "git":
        repo = str(pkg.url)[len("git+") :].split("#", 1)[0].rsplit("@", 1)[0]
        items = [f"type = {_s('git')}", f"url = {_s(repo)}"]
        if pkg.get("requested"):
            items.append(f"requested-revision = {_s(pkg.get('requested'))}")
        items.append(f"commit-id = {_s(pkg.get('commit'))}")
        if pkg.get("subdirectory"):
            items.append(f"subdirectory = {_s(pkg.get('subdirectory'))}")
        return "vcs = { " + ", ".join(items) + " }"
    if source == "path":
        rel = "." if pkg.url == "." else str(pkg.url)[2:]
        if pkg.get("source-tree"):
            return f"directory = {{ path = {_s(rel)} }}"
        return f"archive = {{ path = {_s(rel)}, hashes = {{ sha256 = {_s(pkg.sha256)} }} }}"
    size = f", size = {int(pkg.get('size'))}" if pkg.get("size") else ""
    return f"archive = {{ url = {_s(pkg.url)}{size}, hashes = {{ sha256 = {_s(pkg.sha256)} }} }}"


# --- Azure ML v2 environment YAML -----------------------------------------------------------------


def azureml_dict(
    spec, lock, platform: str, notes: list[str], *, version: str | None = None, description: str | None = None
) -> dict:
    env_notes: list[str] = []
    conda = environment_dict(spec, lock, platform, env_notes)
    conda.pop("name", None)
    variables = conda.pop("variables", None)
    if variables:
        notes.append(
            "Azure ML environments have no environment variables; [variables] are kept in the tag "
            "mlenv.variables only (set them on the job)"
        )
    # the environment.yml note on [image] does not hold here: apt-packages travel in tags (below)
    notes += [n for n in env_notes if not n.startswith("environment.yml cannot hold [image]")]
    if lock.image.get("steps") or lock.image.get("python"):
        notes.append("Azure ML environment YAML cannot hold [image] steps or python; they are not exported")
    data: dict = {"$schema": AZUREML_SCHEMA, "name": spec.name}
    if version:
        data["version"] = str(version)
    desc = spec.description if description is None else description
    if desc:
        data["description"] = desc
    data["image"] = image_reference(lock)
    data["conda_file"] = conda
    data["os_type"] = "windows" if platform == "win-64" else "linux"
    tags = {"mlenv.content-hash": lock.content_hash, "mlenv.platform": platform}
    if spec.python:
        tags["mlenv.python"] = spec.python
    if variables:
        tags["mlenv.variables"] = json.dumps(variables, sort_keys=True, separators=(",", ":"))
    # an Azure ML environment has no apt field: the request set travels in one tag (what `mlenv init --from`
    # reads back into [image] apt-packages, so a relock gives the same content hash) and the locked
    # closure, each `name=version`, in another (for whoever installs them by hand)
    requested = sorted(set(lock.image.get("apt-packages", [])))
    pins = apt_pins(lock, platform)
    if requested:
        tags["mlenv.apt-packages"] = " ".join(requested)
    if pins:
        tags["mlenv.apt-pins"] = " ".join(pins)
    if requested or pins:
        notes.append(
            "Azure ML environments cannot install apt packages; [image] apt-packages are kept in the tag "
            "mlenv.apt-packages and the locked versions in mlenv.apt-pins (build the image with `mlenv build` "
            "and register it to get them)"
        )
    data["tags"] = tags
    return data


def azureml(spec, lock, platform=None) -> Exported:
    platform = pick_platform(lock, platform, "an Azure ML environment")
    notes: list[str] = []
    data = azureml_dict(spec, lock, platform, notes)
    head = _header(spec, lock, platform, "Azure ML v2 environment")
    head.append(_meta_line(spec, lock, platform))
    head.append(
        "# Register: az ml environment create --file <this file>   (or `mlenv register --registry azureml://...`)"
    )
    return Exported("\n".join(head) + "\n" + _yaml_dump(data), notes)


# --- Dockerfile ---------------------------------------------------------------------------------------


def dockerfile(spec, lock, platform=None) -> Exported:
    """A standalone single-stage Dockerfile (no build context needed): PyPI
    packages are installed with pip --require-hashes into a venv on the base
    image's Python. `mlenv build` renders its own Dockerfile, which needs mlenv's
    artifact server during the build (mlenv/build/dockerfile.py); this export is
    for people who build without mlenv (tested with a plain `docker build`)."""
    platform = pick_platform(lock, platform, "a Dockerfile")
    if _conda(lock, platform):
        raise ExportError(
            "a standalone Dockerfile cannot install conda packages without mlenv",
            hint="use `mlenv build`, or export --format conda-explicit / conda-lock for a conda installer",
        )
    built = _built(_pypi(lock, platform))
    if built:
        names = ", ".join(sorted(p.name for p in built))
        raise ExportError(f"a standalone Dockerfile cannot install the packages mlenv built from git or a local path "
                          f"({names}) without git or the sources in the image",
                          hint="use `mlenv build` (the image gets the locked wheels, and neither git nor the sources)")  # fmt: skip
    notes: list[str] = []
    base = image_reference(lock)
    interpreter = lock.image.get("python") or "python3"
    index, extras = _index_urls(spec)
    reqs = _source_lines(spec)
    reqs += [
        f"{direct_reference(p) or p.name + '==' + p.version} --hash=sha256:{p.sha256}" for p in _pypi(lock, platform)
    ]
    if any("${" in u for u in [index, *extras]):
        notes.append(
            "an index URL reads credentials from ${VAR}; pass them as build args at build time (they end up "
            "in the build cache of this single-stage Dockerfile; `mlenv build` keeps them out of the image)"
        )
    out = _header(spec, lock, platform, "Dockerfile (standalone, single stage)")
    out += [f"FROM {base}"]
    # the lock's whole apt closure, each pinned name=version (a lock from before apt pinning: the names)
    apt = apt_pins(lock, platform) or sorted(set(lock.image.get("apt-packages", [])))
    if apt:
        out.append(
            "RUN apt-get update \\\n && apt-get install -y --no-install-recommends "
            + " ".join(apt)
            + " \\\n && rm -rf /var/lib/apt/lists/*"
        )
    printf = " \\\n        ".join(_sh_quote(r) for r in reqs)
    out.append(
        f"RUN {interpreter} -m venv /opt/mlenv/venv \\\n && printf '%s\\n' \\\n        {printf} \\\n"
        "        > /tmp/mlenv-requirements.txt \\\n"
        " && /opt/mlenv/venv/bin/pip install --no-cache-dir --no-deps --require-hashes "
        "-r /tmp/mlenv-requirements.txt \\\n && rm /tmp/mlenv-requirements.txt"
    )
    env = {
        "PATH": "/opt/mlenv/venv/bin:$PATH",
        "VIRTUAL_ENV": "/opt/mlenv/venv",
        **dict(sorted(lock.variables.items())),
    }
    out.append("ENV " + " \\\n    ".join(f"{k}={json.dumps(v) if k != 'PATH' else v}" for k, v in env.items()))
    out += list(lock.image.get("steps", []))
    out.append(f'LABEL org.mlenv.content-hash="{lock.content_hash}" org.mlenv.name="{spec.name}"')
    return Exported("\n".join(out) + "\n", notes)


def apt_pins(lock, platform: str) -> list[str]:
    """`name=version` of every locked Debian package of the platform, sorted."""
    return sorted(f"{p.name}={p.version}" for p in lock.for_platform(platform, "apt"))


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


EXPORTERS = {
    "requirements": requirements,
    "environment-yml": environment_yml,
    "conda-explicit": conda_explicit,
    "conda-lock": conda_lock,
    "pylock": pylock,
    "azureml": azureml,
    "dockerfile": dockerfile,
}


def export(fmt: str, spec, lock, platform: str | None = None) -> Exported:
    try:
        fn = EXPORTERS[fmt]
    except KeyError:
        raise ExportError(f"unknown export format {fmt!r}", hint="one of " + ", ".join(FORMATS)) from None
    return fn(spec, lock, platform)
