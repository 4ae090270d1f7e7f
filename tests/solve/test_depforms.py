"""Issue 13: git, direct URL, find-links, local path, constraint and override forms in
[pypi], against real servers on 127.0.0.1 (git smart HTTP, a static wheel server, the
fixture index): lock, install, verify, rebuilds, moved tags, bad input. The library is
called in-process (`mlenv.lock`, `mlenv.check`, `mlenv.install`, ...): none of these tests
is about the command line (tests/solve/test_lock.py and tests/test_spec.py keep the ones
that are)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from plugin_sources import SOURCE_MARKER
from refusals import error_line, mlenv_error
from solve_api import Said

import mlenv
from mlenv.lockfile import read_lock


@pytest.fixture(autouse=True)
def _no_ca_bundle_variable(monkeypatch):
    """The host's MLENV_CA_BUNDLE (if any) does not decide what these tests fetch."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)


def pkgs(d: Path) -> dict:
    return {p.name: p for p in read_lock(d / "mlenv.lock").for_platform("linux-64", "pypi")}


def use_empty_cache(monkeypatch, tmp_path: Path, name: str) -> None:
    """An empty mlenv (and uv) cache from here on: what another machine has."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / name))


def check_text(res) -> str:
    """What `mlenv lock --check` prints of a CheckResult: its reasons and its notes."""
    return "; ".join(res.reasons + res.notes)


@pytest.fixture
def all_forms(make_project, git_tools, wheel_site):
    return make_project(
        [git_tools.requirement(), "features @ ./libs/features", f"urlpkg @ {wheel_site.wheel_url}", "flpkg"],
        extra=f'find-links = ["{wheel_site.find_links}"]\nconstraints = ["fixalpha<2"]\n',
    )


def test_lock_pins_commit_sha256_and_sources(all_forms, git_tools, wheel_site):
    d = all_forms
    assert mlenv.lock(d).action == "solved"
    p = pkgs(d)
    tools = p["teamtools"]
    assert tools.get("source") == "git" and tools.get("commit") == git_tools.commit
    assert tools.url == f"git+{git_tools.repo_url}@{git_tools.commit}#subdirectory=tools"
    assert tools.get("requested") == "v1.0" and tools.get("subdirectory") == "tools"
    assert tools.get("filename") == "teamtools-1.0.0-py3-none-any.whl" and tools.version == "1.0.0"
    from mlenv.runtime.fetch import artifact_cache_dir, sha256_file

    for name in ("teamtools", "features", "urlpkg"):  # every artifact is in the content-addressed cache
        assert sha256_file(artifact_cache_dir() / p[name].sha256) == p[name].sha256
    feat = p["features"]
    assert feat.url == "./libs/features" and feat.get("source") == "path"
    assert str(feat.get("source-tree")).startswith("sha256:") and feat.get("filename").endswith(".whl")
    url = p["urlpkg"]
    assert url.url == wheel_site.wheel_url and url.get("source") == "url" and url.sha256 == wheel_site.wheel_sha256
    assert p["flpkg"].version == "2.0.0" and p["flpkg"].get("find-links") == wheel_site.find_links
    assert p["fixalpha"].version == "1.1.0"  # the constraint fixalpha<2
    lock_text = (d / "mlenv.lock").read_text()
    assert str(d) not in lock_text  # no host path in the lock
    inputs = read_lock(d / "mlenv.lock").inputs
    assert inputs["find-links"] == [wheel_site.find_links] and inputs["constraints"] == ["fixalpha<2"]
    # a no-op lock: nothing rebuilt, nothing written
    before = (d / "mlenv.lock").stat().st_mtime_ns
    again = mlenv.lock(d)
    assert again.action == "fresh" and not again.changed and (d / "mlenv.lock").stat().st_mtime_ns == before
    assert mlenv.check(d).ok


def test_install_and_verify_each_form(all_forms, tmp_path):
    d = all_forms
    mlenv.lock(d)
    prefix = tmp_path / "env"
    mlenv.install(prefix, spec=d)
    code = ("import teamtools, features, urlpkg, flpkg, fixalpha; "
            "print(teamtools.__version__, features.__version__, urlpkg.__version__, flpkg.__version__)")  # fmt: skip
    out = subprocess.run([str(prefix / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1.0.0", "0.1.0", "1.0.0", "2.0.0"]
    verified = mlenv.verify(prefix=prefix, spec=d)
    assert verified.ok, verified.differences
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert not any(SOURCE_MARKER in f.read_text(errors="replace") for f in site.rglob("*") if f.is_file())


def test_another_machine_rebuilds_the_same_wheels(all_forms, tmp_path, monkeypatch):
    """An empty cache (another machine): install rebuilds the git and local wheels from
    source, byte for byte; a second project path gives the same content hash."""
    d = all_forms
    mlenv.lock(d)
    lock = read_lock(d / "mlenv.lock")
    other = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(d, other)
    use_empty_cache(monkeypatch, tmp_path, "cache2")
    mlenv.install(tmp_path / "env2", spec=other)
    outcome = mlenv.lock(other, upgrade=True)
    assert read_lock(other / "mlenv.lock").content_hash == lock.content_hash, outcome.warnings


def test_same_source_same_hash_one_changed_file_changes_it(make_project, tmp_path):
    d = make_project(["features @ ./libs/features"])
    mlenv.lock(d)
    first = read_lock(d / "mlenv.lock").content_hash
    init = d / "libs" / "features" / "src" / "features" / "__init__.py"
    original = init.read_text()
    init.write_text(original + "CHANGED = True\n")
    check = mlenv.check(d)
    assert not check.ok and "local package ./libs/features changed" in check_text(check)
    mlenv.lock(d)
    second = read_lock(d / "mlenv.lock").content_hash
    assert second != first
    init.write_text(original)  # back to the same source: the same wheel, the same hash
    os.utime(init, ns=(1, 1))  # mtimes do not count
    mlenv.lock(d)
    assert read_lock(d / "mlenv.lock").content_hash == first
    # a file outside the wheel that changes does not change the environment
    (d / "libs" / "features" / "NOTES.txt").write_text("edited notes\n")
    mlenv.lock(d)
    assert read_lock(d / "mlenv.lock").content_hash == first


def test_the_project_itself(tmp_path, pypi_server):
    """`train @ .`: the project is a package; mlenv.toml and mlenv.lock are not part of its tree."""
    from plugin_sources import package_files

    d = tmp_path / "train"
    for rel, text in package_files("train", "0.2.0", deps=["fixalpha>=1"]).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    (d / "mlenv.toml").write_text(f'[environment]\nname = "train"\npython = "3.11"\n[pypi]\nindex-url = "{pypi_server}"\n'
                                  'dependencies = ["train @ ."]\n')  # fmt: skip
    mlenv.lock(d)
    p = pkgs(d)
    assert p["train"].url == "." and p["train"].version == "0.2.0"
    again = mlenv.lock(d)  # writing mlenv.lock did not change the project's tree
    assert again.action == "fresh" and not again.changed


def test_git_history_rewritten_under_the_same_tag(make_project, git_tools, tmp_path):
    d = make_project([git_tools.requirement("v1.0")])
    mlenv.lock(d)
    old = pkgs(d)["teamtools"]
    saved = (d / "mlenv.lock").read_text()
    try:
        new_commit = git_tools.rewrite_tag(
            "v1.0", {"tools/src/teamtools/__init__.py": '__version__ = "1.0.0"\nREWRITTEN = 1\n'}
        )
        check = mlenv.check(d)
        assert not check.ok, check
        said = check_text(check)
        assert "history was rewritten under the same tag" in said and old.get("commit")[:12] in said
        # an install from the lock uses the locked wheel anyway
        prefix = tmp_path / "env"
        mlenv.install(prefix, spec=d)
        out = subprocess.run([str(prefix / "bin" / "python"), "-c", "import teamtools; print(hasattr(teamtools, 'REWRITTEN'))"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert out.stdout.strip() == "False"
        # `mlenv lock` reports the move and pins the new commit
        warned = "\n".join(mlenv.lock(d).warnings)
        assert "tag v1.0 was moved" in warned and new_commit[:12] in warned
        new = pkgs(d)["teamtools"]
        assert new.get("commit") == new_commit and new.sha256 != old.sha256
    finally:  # other tests use v1.0 as first published
        git_tools_restore(git_tools, saved_commit=old.get("commit"))
        (d / "mlenv.lock").write_text(saved)


def git_tools_restore(git_tools, saved_commit: str) -> None:
    from plugin_sources import git_server

    git_server.git("tag", "-f", "-a", "v1.0", saved_commit, "-m", "v1.0", cwd=git_tools.work)
    git_server.git("push", "-q", "-f", "origin", "--tags", cwd=git_tools.work)


def test_a_moved_branch_is_a_note_not_stale(make_project, git_tools):
    d = make_project([git_tools.requirement("main")])
    mlenv.lock(d)
    locked = pkgs(d)["teamtools"].get("commit")
    git_tools.add_commit({"tools/CHANGELOG": "more\n"})
    check = mlenv.check(d)
    assert check.ok and not check.reasons
    assert any("branch main" in n and "has moved on" in n for n in check.notes), check.notes
    mlenv.lock(d)
    assert pkgs(d)["teamtools"].get("commit") == locked  # kept until asked
    mlenv.lock(d, upgrade_packages=["teamtools"])
    assert pkgs(d)["teamtools"].get("commit") != locked


def test_credentials_for_git_stay_in_memory(tmp_path, make_project, git_tools, monkeypatch):
    """A git server behind Basic auth, the token in ${VAR}: lock and install work; the
    token is in no file mlenv wrote and in no message (progress, warning, error, result)."""
    from plugin_sources import GitServer

    token = "s3cr3t-GIT-t0ken"
    with GitServer(git_tools.root, "oauth2", token) as srv:
        url = "http://oauth2:${MLENV_TEST_GIT_TOKEN}@" + srv.url.split("://", 1)[1] + "/tools.git"
        d = make_project([f"teamtools @ git+{url}@v1.0#subdirectory=tools"], name="git-auth")
        monkeypatch.delenv("MLENV_TEST_GIT_TOKEN", raising=False)
        with mlenv_error() as no:
            mlenv.lock(d)
        assert token not in str(no.value)
        monkeypatch.setenv("MLENV_TEST_GIT_TOKEN", token)
        said = Said()
        outcome = mlenv.lock(d, progress=said, on_warning=said)
        installed = mlenv.install(tmp_path / "env", spec=d, progress=said, on_warning=said)
        assert srv.requests and said.lines  # the authenticated server was used; progress was reported
        results = json.dumps(outcome.to_json()) + json.dumps(installed.to_json())
        for text in (said.text, results, (d / "mlenv.lock").read_text()):
            assert token not in text
        from mlenv.runtime.fetch import default_cache_root

        for f in default_cache_root().rglob("*.json"):
            assert token not in f.read_text(errors="replace"), f


def test_constraints_and_overrides(make_project):
    d = make_project(["fixbeta"], extra='overrides = ["fixalpha==2.0.0"]\n')
    mlenv.lock(d)
    assert pkgs(d)["fixalpha"].version == "2.0.0"  # the override replaces fixbeta's fixalpha>=1.1,<2
    d2 = make_project(["fixalpha"], name="constrained", extra='constraints = ["fixalpha<1.1"]\n')
    mlenv.lock(d2)
    assert pkgs(d2)["fixalpha"].version == "1.0.0"
    t = d2 / "mlenv.toml"
    t.write_text(t.read_text().replace('constraints = ["fixalpha<1.1"]', 'constraints = ["fixalpha<2"]'))
    check = mlenv.check(d2)
    assert not check.ok and "constraints changed" in check_text(check)


# --- bad input: one line (exit code 2), nothing written ----------------------------------


def _nothing_written(d: Path) -> None:
    assert not (d / "mlenv.lock").exists()


def test_unreachable_git_repository(make_project):
    d = make_project(["teamtools @ git+http://127.0.0.1:9/tools.git@v1.0#subdirectory=tools"])
    with mlenv_error() as e:
        mlenv.lock(d)
    assert "cannot reach git repository http://127.0.0.1:9/tools.git" in error_line(e.value)
    _nothing_written(d)


def test_unknown_git_ref(make_project, git_tools):
    d = make_project([git_tools.requirement("v9.9")])
    with mlenv_error() as e:
        mlenv.lock(d)
    assert f"git repository {git_tools.repo_url} has no branch or tag 'v9.9'" in error_line(e.value)
    _nothing_written(d)


def test_wheel_with_a_wrong_hash(make_project, wheel_site):
    d = make_project([f"urlpkg @ {wheel_site.wheel_url}#sha256={'0' * 64}"])
    with mlenv_error() as e:
        mlenv.lock(d)
    assert f"has sha256 {wheel_site.wheel_sha256}, but the requirement says #sha256={'0' * 64}" in error_line(e.value)
    _nothing_written(d)
    # the right hash is verified and recorded
    t = d / "mlenv.toml"
    t.write_text(t.read_text().replace("0" * 64, wheel_site.wheel_sha256))
    mlenv.lock(d)
    assert pkgs(d)["urlpkg"].sha256 == wheel_site.wheel_sha256


def test_path_outside_the_project(make_project, tmp_path):
    d = make_project(["features @ ../outside"], name="inner")
    (tmp_path / "outside").mkdir()
    with mlenv_error() as e:
        mlenv.lock(d)
    assert "points outside the project" in error_line(e.value) and "mlenv.toml:" in error_line(e.value)
    _nothing_written(d)
    # a symlink that leaves the project is outside too
    (d / "libs" / "escape").symlink_to(tmp_path / "outside")
    t = d / "mlenv.toml"
    t.write_text(t.read_text().replace("../outside", "./libs/escape"))
    with mlenv_error() as e:
        mlenv.lock(d)
    assert "points outside the project" in error_line(e.value)
    _nothing_written(d)


@pytest.mark.parametrize("case", ["index-403", "index-down", "find-links-404", "find-links-no-links"])
def test_a_declared_source_that_fails_fails_the_lock(case, make_project, wheel_site, pypi_auth_server):
    if case == "index-403":  # answers, but refuses (401 without credentials): uv would move on to the next index
        extra = f'extra-index-urls = ["{pypi_auth_server.url}"]\n'
        want = f"index {pypi_auth_server.url} answers HTTP 401"
    elif case == "index-down":
        extra = 'extra-index-urls = ["http://127.0.0.1:9/simple"]\n'
        want = "index http://127.0.0.1:9/simple does not answer"
    elif case == "find-links-404":
        extra = f'find-links = ["{wheel_site.url}/nowhere/"]\n'
        want = f"find-links page {wheel_site.url}/nowhere/ answers HTTP 404"
    else:
        extra = f'find-links = ["{wheel_site.url}/empty/"]\n'
        want = "links no wheel or source archive"
    d = make_project(["fixalpha"], name=case, extra=extra)
    with mlenv_error() as e:
        mlenv.lock(d)
    assert want in error_line(e.value), str(e.value)
    _nothing_written(d)


# --- registries carry the built wheels: restore --prefix needs neither git nor the sources ---


@pytest.mark.parametrize("kind", ["local", pytest.param("oci", marks=pytest.mark.registry)])
def test_restore_prefix_elsewhere_without_git_or_sources(kind, make_project, git_tools, tmp_path, request, monkeypatch):
    import uuid

    if kind == "oci":
        registry = f"oci://{request.getfixturevalue('test_registry')}/mlenv-depforms-{uuid.uuid4().hex[:10]}"
    else:
        registry = str(tmp_path / "registry")
    d = make_project([git_tools.requirement(), "features @ ./libs/features"], name=f"carry-{kind}")
    mlenv.lock(d)
    warned = Said()
    reg = mlenv.register(d, registry=registry, image=False, on_warning=warned)
    assert reg.created and not [w for w in warned.lines if "cannot hold" in w]
    lock = read_lock(d / "mlenv.lock")
    # another machine: an empty cache, no project sources, no git on PATH, the git server unreachable
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to("/usr/bin/python3")
    use_empty_cache(monkeypatch, tmp_path, "machine2")
    monkeypatch.setenv("PATH", str(bin_dir))
    target = tmp_path / "machine2-checkout"
    target.mkdir()
    prefix = tmp_path / "machine2-env"
    restored = mlenv.restore(f"carry-{kind}@1", registry=registry, into=target, prefix=prefix)
    assert restored.installed is not None and restored.content_hash == lock.content_hash
    assert not (target / "libs").exists() and shutil.which("git", path=str(bin_dir)) is None
    out = subprocess.run([str(prefix / "bin" / "python"), "-c", "import teamtools, features; print('ok')"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "ok"
    verified = mlenv.verify(prefix=prefix, spec=target)
    assert verified.ok, verified.differences
    assert read_lock(target / "mlenv.lock").content_hash == lock.content_hash


def test_a_wheel_that_is_nowhere_is_one_clear_error(make_project, tmp_path, monkeypatch):
    """A lock whose local package is not on this machine and not in the cache: install says
    where the wheel can come from; nothing is installed."""
    d = make_project(["features @ ./libs/features"], name="nowhere")
    mlenv.lock(d)
    shutil.rmtree(d / "libs")
    use_empty_cache(monkeypatch, tmp_path, "empty")
    with mlenv_error() as e:
        mlenv.install(tmp_path / "env", spec=d)
    assert "is not on this machine" in error_line(e.value) and "features" in error_line(e.value)
    assert not (tmp_path / "env").exists()


# --- images: every builder, no git, no sources --------------------------------------------


@pytest.fixture(scope="module")
def image_project(tmp_path_factory, git_tools, wheel_site, pypi_server):
    import textwrap
    import uuid

    from plugin_sources import package_files

    d = tmp_path_factory.mktemp("depforms-image") / "proj"
    for rel, text in package_files("features", "0.1.0", deps=["fixalpha>=1"]).items():
        (d / "libs" / "features" / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / "libs" / "features" / rel).write_text(text)
    base = os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE") or "mlenv-test/debian-python:bookworm"
    deps = [git_tools.requirement(), "features @ ./libs/features", f"urlpkg @ {wheel_site.wheel_url}", "flpkg"]
    (d / "mlenv.toml").write_text(
        textwrap.dedent(f"""\
        [environment]
        name = "depforms-image"
        python = "3.11"
        [pypi]
        index-url = "{pypi_server}"
        find-links = ["{wheel_site.find_links}"]
        dependencies = {json.dumps(deps)}
        [variables]
        MLENV_TEST_RUN = "{uuid.uuid4().hex}"
        [image]
        base = "{base}"
        python = "/usr/bin/python3"
        """)
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLENV_CA_BUNDLE", raising=False)
        mlenv.lock(d)
    return d


@pytest.mark.docker
@pytest.mark.parametrize("builder", ["buildkit", "classic", "daemonless"])
def test_image_of_each_form_has_no_git_and_no_sources(builder, image_project, docker_client, monkeypatch):
    if builder == "buildkit":
        from plugin_docker import _unavailable

        from mlenv.image.buildkit import find_cli

        if find_cli() is None:
            _unavailable("no docker CLI on PATH builds with BuildKit")
    d = image_project
    monkeypatch.setenv("MLENV_BUILD_GROUP_MIN_BYTES", "1")
    image = mlenv.build(d, builder=builder, force=True, repository=f"mlenv-depforms-{builder}")
    ref = image.id or image.image  # the daemonless builder loads by id (and its own tag)
    try:
        assert image.builder == builder and image.action == "built"
        code = ("import teamtools, features, urlpkg, flpkg, fixalpha; "
                "print(teamtools.__version__, features.__version__, urlpkg.__version__, flpkg.__version__)")  # fmt: skip
        out = docker_client.containers.run(ref, ["python", "-c", code], network_mode="none", remove=True)
        assert out.decode().split() == ["1.0.0", "0.1.0", "1.0.0", "2.0.0"]
        verified = mlenv.verify(image=ref, spec=d)
        assert verified.ok, verified.differences
        probe = ("import os, shutil, sys; "
                 "hits = [os.path.join(r, f) for top in ('/opt', '/usr', '/root', '/tmp', '/srv', '/home') "
                 "for r, _, fs in os.walk(top) for f in fs "
                 "if f == 'NOTES.txt' or f == 'test_source_only.py' or r.endswith('/.git')]; "
                 "print(shutil.which('git'), len(hits), hits[:3])")  # fmt: skip
        seen = docker_client.containers.run(ref, ["python", "-c", probe], network_mode="none", remove=True).decode()
        assert seen.split()[:2] == ["None", "0"], seen
        grep = docker_client.containers.run(
            ref, ["sh", "-c", f"grep -rl {SOURCE_MARKER} /opt /usr/lib/python3* 2>/dev/null | head -3; true"],
            network_mode="none", remove=True).decode()  # fmt: skip
        assert grep.strip() == "", grep
    finally:
        try:
            docker_client.api.remove_image(ref, force=True)
        except Exception:
            pass


def test_a_local_archive_is_used_as_is(make_project, wheel_site, tmp_path):
    d = make_project(["urlpkg @ ./wheels/urlpkg-1.0.0-py3-none-any.whl"], name="local-archive")
    (d / "wheels").mkdir()
    shutil.copy(wheel_site.root / "direct" / "urlpkg-1.0.0-py3-none-any.whl", d / "wheels")
    mlenv.lock(d)
    p = pkgs(d)["urlpkg"]
    assert p.url == "./wheels/urlpkg-1.0.0-py3-none-any.whl" and p.sha256 == wheel_site.wheel_sha256
    assert p.get("source") == "path" and p.get("source-tree") is None
    mlenv.install(tmp_path / "env", spec=d)
    verified = mlenv.verify(prefix=tmp_path / "env", spec=d)
    assert verified.ok, verified.differences
    (d / "wheels" / "urlpkg-1.0.0-py3-none-any.whl").write_bytes(b"not the same file")
    check = mlenv.check(d)
    assert not check.ok and "local archive ./wheels/urlpkg-1.0.0-py3-none-any.whl changed" in check_text(check)
