"""The credential scan (issue 9, "Must show"): one secret in every kind of source
mlenv has, then every command, then a grep of everything mlenv wrote or printed.

Table-driven: each row of SOURCES places one secret. Adding a source kind is one row; a
row with `pending` says why the kind cannot be tested yet. The dependency forms of issue 13
have rows: a find-links page, a git repository (smart HTTP) and a URL wheel, each behind
Basic auth with its token in a ${VAR} of the spec (the git package is built to a wheel at
lock time, then carried as a registry blob and installed into the image). So has a conda
channel (a copy of the fixture channel over HTTP, Basic auth, `${VAR}` userinfo): rattler
reads its repodata at lock time, mlenv downloads its packages for install and the builds.

Commands run with all secrets in place: lock, install, build (Docker, and the
--dockerfile-only context), register (local and OCI registry), versions/show/show
--json, export in every format (files and stdout), restore (local; OCI with
--prefix; --from-image). Scanned: every stdout/stderr, the project, prefixes and
restore directories, exports, the local registry directory, mlenv's cache and data
directories (build logs, artifact and uv caches), every manifest and blob of the OCI
registry's repositories, and the image: `docker save` (every layer tar, member by
member, and the config with its history) and `docker inspect`/`history`.

Zero hits, for each secret and its encodings (percent-encoded, the base64 of an
HTTP Basic `user:password`).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.registry]

FORMATS = ["requirements", "environment-yml", "conda-explicit", "conda-lock", "pylock", "azureml", "dockerfile"]


@dataclass
class Ctx:
    """What the rows build up: spec lines, environment, netrc lines, servers, secrets."""

    tmp: Path
    fixture_pypi: Path
    conda_channel: Path
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)  # [conda] channels; none: the fixture channel (file://)
    dependencies: list[str] = field(default_factory=list)  # besides fixbeta and fixplat
    env: dict[str, str] = field(default_factory=dict)
    netrc: list[str] = field(default_factory=list)
    servers: list = field(default_factory=list)
    secrets: dict[str, list[bytes]] = field(default_factory=dict)  # row -> byte strings that must not appear

    def server(self, projects: list[str] | None, user: str, password: str):
        """An index over the fixture wheels (only `projects` listed, None: all) behind Basic auth."""
        from plugin_fixtures import IndexServer

        root = self.tmp / f"index-{len(self.servers)}"
        shutil.copytree(self.fixture_pypi, root)
        if projects is not None:
            for page in (root / "simple").iterdir():
                if page.is_dir() and page.name not in projects:
                    shutil.rmtree(page)
        srv = IndexServer(root, user, password).start()
        self.servers.append(srv)
        return srv

    def secret(self, row: str, value: str, user: str | None = None) -> None:
        forms = [value.encode(), urllib.parse.quote(value, safe="").encode()]
        if user:
            forms.append(base64.b64encode(f"{user}:{value}".encode()))
        self.secrets[row] = forms


def _index_env(ctx: Ctx, row: str, extra: bool) -> None:
    """An index whose credentials come from ${VAR} references in the spec's URL."""
    var = "IDX_" + uuid.uuid4().hex[:6].upper()
    user, password = f"user-{var.lower()}", f"Pw-{uuid.uuid4().hex}"
    srv = ctx.server(["fixbeta"] if extra else None, user, password)  # extra indexes are asked first (uv)
    url = srv.url.replace("://", f"://${{{var}_USER}}:${{{var}_TOKEN}}@") + "/simple"
    ctx.env.update({f"{var}_USER": user, f"{var}_TOKEN": password})
    if extra:
        ctx.extra_index_urls.append(url)
    else:
        ctx.index_url = url
    ctx.secret(row, password, user)


def _index_netrc(ctx: Ctx, row: str) -> None:
    """An extra index whose credentials come from a netrc file (NETRC), not the spec."""
    user, password = "netrc-user", f"Nrc-{uuid.uuid4().hex}"
    srv = ctx.server(["fixplat"], user, password)
    ctx.extra_index_urls.append(srv.url + "/simple")
    ctx.netrc.append(f"machine 127.0.0.1 login {user} password {password}")
    ctx.secret(row, password, user)


def _var_userinfo(ctx: Ctx, url: str, user: str, password: str) -> str:
    """url with ${VAR_USER}:${VAR_TOKEN}@ (fresh variable names, set in the commands' environment)."""
    var = "SRC_" + uuid.uuid4().hex[:6].upper()
    ctx.env.update({f"{var}_USER": user, f"{var}_TOKEN": password})
    return url.replace("://", f"://${{{var}_USER}}:${{{var}_TOKEN}}@", 1)


def _site(ctx: Ctx, files: dict[str, bytes], user: str, password: str):
    """A static server behind Basic auth holding `files` (relative path -> bytes)."""
    from plugin_fixtures import IndexServer

    root = ctx.tmp / f"site-{len(ctx.servers)}"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    srv = IndexServer(root, user, password).start()
    ctx.servers.append(srv)
    return srv


def _find_links_env(ctx: Ctx, row: str) -> None:
    """A find-links page (flpkg, on no index) behind Basic auth, its token in ${VAR}."""
    import hashlib

    from plugin_sources import _wheel

    user, password = "fl-user", f"Fl-{uuid.uuid4().hex}"
    fname, data = _wheel("flpkg", "2.0.0")
    page = f'<html><body><a href="{fname}#sha256={hashlib.sha256(data).hexdigest()}">{fname}</a></body></html>\n'
    srv = _site(ctx, {f"flinks/{fname}": data, "flinks/index.html": page.encode()}, user, password)
    ctx.find_links.append(_var_userinfo(ctx, srv.url + "/flinks/", user, password))
    ctx.dependencies.append("flpkg")
    ctx.secret(row, password, user)


def _channel_env(ctx: Ctx, row: str) -> None:
    """A copy of the fixture conda channel at /channel behind Basic auth, its token in ${VAR}:
    rattler reads its repodata, mlenv downloads its packages (install, the builds)."""
    from plugin_fixtures import IndexServer

    user, password = "conda-user", f"Cnd-{uuid.uuid4().hex}"
    root = ctx.tmp / f"site-{len(ctx.servers)}"
    shutil.copytree(ctx.conda_channel, root / "channel")
    srv = IndexServer(root, user, password).start()
    ctx.servers.append(srv)
    ctx.channels.append(_var_userinfo(ctx, f"{srv.url}/channel", user, password))
    ctx.secret(row, password, user)


def _url_wheel_env(ctx: Ctx, row: str) -> None:
    """A wheel at a direct URL behind Basic auth, its token in ${VAR} (no #sha256: mlenv records it)."""
    from plugin_sources import _wheel

    user, password = "url-user", f"Url-{uuid.uuid4().hex}"
    fname, data = _wheel("urlpkg", "1.0.0")
    srv = _site(ctx, {f"direct/{fname}": data}, user, password)
    ctx.dependencies.append(f"urlpkg @ {_var_userinfo(ctx, f'{srv.url}/direct/{fname}', user, password)}")
    ctx.secret(row, password, user)


class _Git:
    """GitServer with the start/stop/port/requests the scan uses for its servers."""

    def __init__(self, root: Path, user: str, password: str):
        from plugin_sources import GitServer

        self.server = GitServer(root, user, password).__enter__()
        self.port, self.url = self.server.port, self.server.url

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def stop(self) -> None:
        self.server.__exit__(None, None, None)


def _git_env(ctx: Ctx, row: str) -> None:
    """A git repository over smart HTTP behind Basic auth (package teamtools in tools/, tag
    v1.0), its token in ${VAR}: cloned and built to a wheel at lock time."""
    from plugin_sources import git_server, package_files

    root = ctx.tmp / "git" / "srv"
    root.mkdir(parents=True)
    files = {f"tools/{k}": v for k, v in package_files("teamtools", "1.0.0").items()}
    git_server.make_repo(root, "tools", files, tag="v1.0")
    user, password = "oauth2", f"Git-{uuid.uuid4().hex}"
    srv = _Git(root, user, password)
    ctx.servers.append(srv)
    url = _var_userinfo(ctx, f"{srv.url}/tools.git", user, password)
    ctx.dependencies.append(f"teamtools @ git+{url}@v1.0#subdirectory=tools")
    ctx.secret(row, password, user)


def _ca_path(ctx: Ctx, row: str) -> None:
    """A CA bundle at a path that holds a secret (a user name, a project code)."""
    secret = f"CaDir-{uuid.uuid4().hex}"
    path = ctx.tmp / secret / "ca.pem"
    path.parent.mkdir()
    shutil.copy(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt", path)
    ctx.env["MLENV_CA_BUNDLE"] = str(path)
    ctx.secret(row, secret)


@dataclass
class Source:
    name: str
    place: object = None  # (ctx, row name) -> None
    pending: str | None = None


SOURCES = [
    Source("index-url with ${VAR} credentials", lambda c, r: _index_env(c, r, extra=False)),
    Source("extra-index-urls with ${VAR} credentials", lambda c, r: _index_env(c, r, extra=True)),
    Source("an extra index with credentials in netrc", _index_netrc),
    Source("the CA bundle path", _ca_path),
    Source("a conda channel URL with a ${VAR} token", _channel_env),
    Source("find-links with a ${VAR} token", _find_links_env),
    Source("a git URL with a ${VAR} token", _git_env),
    Source("a URL wheel with a ${VAR} token", _url_wheel_env),
]  # fmt: skip


def test_no_source_is_pending():
    """Every kind of credentialed source mlenv has is scanned: no row is left pending."""
    assert {s.name: s.pending for s in SOURCES if s.pending} == {}


def _run(args, cwd, env, outputs: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mlenv.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    outputs.append(f"$ mlenv {' '.join(map(str, args))}\n{proc.stdout}\n{proc.stderr}")
    assert proc.returncode == 0, f"mlenv {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _files(root: Path):
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            yield p


def _oci_blobs(registry: str, namespace: str):
    """(where, bytes) of every manifest and blob of the namespace's repositories."""
    from plugin_docker import MANIFEST_ACCEPT, registry_session

    with registry_session() as s:
        catalog: list[str] = []
        while True:  # paginated: n at most 1000, then `last`
            last = f"&last={catalog[-1]}" if catalog else ""
            page = s.get(f"http://{registry}/v2/_catalog?n=1000{last}", timeout=30).json().get("repositories") or []
            catalog += page
            if len(page) < 1000:
                break
        repos = [r for r in catalog if r.startswith(namespace + "/")]
        assert repos, f"no repository under {namespace} in the registry's catalog"
        for repo in repos:
            tags = s.get(f"http://{registry}/v2/{repo}/tags/list", timeout=30).json().get("tags") or []
            for tag in tags:
                r = s.get(f"http://{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT},
                          timeout=30)  # fmt: skip
                yield f"{repo}:{tag} manifest", r.content
                manifest = r.json()
                for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
                    if desc.get("digest"):
                        blob = s.get(f"http://{registry}/v2/{repo}/blobs/{desc['digest']}", timeout=60).content
                        yield f"{repo}@{desc['digest']}", blob


def _image_parts(client, ref: str):
    """(where, bytes) of everything in `docker save REF`: each member of each layer tar, the
    config (history, labels, env) and the manifest; plus inspect and history."""
    yield "docker inspect", json.dumps(client.api.inspect_image(ref)).encode()
    yield "docker history", json.dumps(client.api.history(ref)).encode()
    saved = io.BytesIO(b"".join(client.images.get(ref).save(named=True)))
    with tarfile.open(fileobj=saved) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            yield f"save:{member.name}", data
            if member.name.endswith((".tar", "layer.tar")) or data[257:262] == b"ustar":
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for entry in layer.getmembers():
                        yield f"save:{member.name}:{entry.name} (name)", entry.name.encode()
                        if entry.isfile():
                            yield f"save:{member.name}:{entry.name}", layer.extractfile(entry).read()


def test_no_secret_reaches_anything_mlenv_writes(tmp_path, fixture_paths, docker_client, base_image_remote,
                                                  test_registry):  # fmt: skip
    ctx = Ctx(tmp_path, Path(fixture_paths["pypi"]), Path(fixture_paths["conda_channel"]))
    try:
        for source in SOURCES:
            if not source.pending:
                source.place(ctx, source.name)
        _scan(ctx, docker_client, base_image_remote, test_registry)
    finally:
        for srv in ctx.servers:
            srv.stop()


def _scan(ctx: Ctx, client, base_image: str, registry: str) -> None:
    tmp = ctx.tmp
    pypi = ""
    if ctx.index_url:
        pypi += f'index-url = "{ctx.index_url}"\n'
    if ctx.extra_index_urls:
        pypi += f"extra-index-urls = {json.dumps(ctx.extra_index_urls)}\n"
    if ctx.find_links:
        pypi += f"find-links = {json.dumps(ctx.find_links)}\n"
    deps = ["fixbeta", "fixplat", *ctx.dependencies]
    name = f"scan-{uuid.uuid4().hex[:8]}"

    def write(directory: Path, conda: bool) -> Path:
        directory.mkdir()
        channels = ctx.channels or [ctx.conda_channel.as_uri()]
        conda_table = f'[conda]\nchannels = {json.dumps(channels)}\ndependencies = ["mlenv-hello"]\n'
        (directory / "mlenv.toml").write_text(
            f'[environment]\nname = "{name}"\npython = "3.11"\nplatforms = ["linux-64"]\n'
            + (conda_table if conda else "")
            # a standalone Dockerfile cannot install a package built from git: that export's project has none
            + f"[pypi]\ndependencies = {json.dumps([d for d in deps if conda or ' @ git+' not in d])}\n"
            + pypi
            + f'[image]\nbase = "{base_image}"\npython = "/usr/bin/python3"\n'
        )
        return directory

    proj = write(tmp / "proj", conda=True)
    proj_pypi = write(tmp / "proj-pypi", conda=False)  # `export --format dockerfile` is PyPI-only
    netrc = tmp / "netrc"
    netrc.write_text("\n".join(ctx.netrc) + "\n")
    netrc.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLENV_")}
    env.update(ctx.env, NETRC=str(netrc), XDG_CACHE_HOME=str(tmp / "cache"), XDG_DATA_HOME=str(tmp / "data"),
               MLENV_REGISTRY=str(tmp / "registry"))  # fmt: skip
    namespace = f"mlenv-scan-{uuid.uuid4().hex[:8]}"
    oci = f"oci://{registry}/{namespace}"
    out: list[str] = []

    _run(["lock"], proj, env, out)
    lock_text = (proj / "mlenv.lock").read_text()
    ports = {str(s.port) for s in ctx.servers}
    assert sum(f"127.0.0.1:{p}/" in lock_text for p in ports) == len(ctx.servers)  # every index served a package
    _run(["install", "--prefix", tmp / "prefix"], proj, env, out)  # on [image] python, /usr/bin/python3
    _run(["build", "--dockerfile-only", tmp / "context"], proj, env, out)
    built = json.loads(_run(["build", "--json"], proj, env, out).stdout)
    image = built["image"]
    try:
        _run(["register"], proj, env, out)
        _run(["register", "--registry", oci], proj, env, out)
        for reg in (None, oci):
            flag = ["--registry", reg] if reg else []
            _run(["versions", name, "--json", *flag], proj, env, out)
            _run(["show", f"{name}@1", "--json", *flag], proj, env, out)
            _run(["show", f"{name}@1", "--packages", *flag], proj, env, out)
        (tmp / "exports").mkdir()
        _run(["lock"], proj_pypi, env, out)
        for fmt in FORMATS:
            where = proj_pypi if fmt == "dockerfile" else proj
            _run(["export", "--format", fmt, "-o", tmp / "exports" / fmt], where, env, out)
            _run(["export", "--format", fmt], where, env, out)
        _run(["restore", f"{name}@1", "--into", tmp / "restored-local"], tmp, env, out)
        _run(["restore", f"{name}@1", "--registry", oci, "--into", tmp / "restored-oci", "--prefix",
              tmp / "prefix-oci"], tmp, env, out)  # fmt: skip
        _run(["restore", "--from-image", image, "--into", tmp / "restored-image"], tmp, env, out)

        places: list[tuple[str, bytes]] = [(f"output {i}", text.encode()) for i, text in enumerate(out)]
        for root in ("proj", "proj-pypi", "prefix", "prefix-oci", "context", "exports", "restored-local", "restored-oci",
                     "restored-image", "registry", "cache", "data"):  # fmt: skip
            if (tmp / root).exists():
                places += [(str(p), p.read_bytes()) for p in _files(tmp / root)]
        places += list(_oci_blobs(registry, namespace))
        places += list(_image_parts(client, image))
        # the scan sees what it must: the build log, the image's files (its own lock inside a layer), the OCI
        # registry's blobs; and every credential was used (each server answered authenticated requests)
        assert any("/logs/build-" in where for where, _ in places)
        lock_bytes = (proj / "mlenv.lock").read_bytes()
        assert any(where.startswith("save:") and "(name)" not in where and data == lock_bytes for where, data in places)
        assert any(where.startswith(f"{namespace}/") for where, _ in places)
        assert all(srv.requests for srv in ctx.servers)
        hits = [
            (row, where) for where, data in places for row, forms in ctx.secrets.items() for f in forms if f in data
        ]
        assert hits == [], hits[:20]
        assert len(ctx.secrets) == len([s for s in SOURCES if not s.pending])
    finally:
        try:
            client.api.remove_image(image, force=True)
        except Exception:
            pass
