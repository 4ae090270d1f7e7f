"""Debian packages locked and installed for real: the test base image
(mlenv-test/debian-python:bookworm, in the local Engine and the local registry),
deb.debian.org, gpgv, both builders, the daemonless unpacker. mlenv is called
in-process (`import mlenv`); one test keeps `mlenv lock` on the terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from image_api import verified
from refusals import one_line

import mlenv
from mlenv.errors import MlenvError
from mlenv.lockfile import read_lock

pytestmark = [pytest.mark.network, pytest.mark.docker]
WANT = ["libgomp1", "curl"]


@pytest.fixture(autouse=True)
def _no_ca_setting(monkeypatch):
    """Each test names its CA bundle itself."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)


def one_line_error(call, *needles) -> str:
    """call() raises an MlenvError of one line (exit code 2) holding every needle; returns the line."""
    with pytest.raises(MlenvError) as e:
        call()
    line = one_line(e)
    assert e.value.exit_code == 2, (e.value.exit_code, line)
    for needle in needles:
        assert needle in line, line
    return line


def project(d: Path, base: str, apt, name: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        f'[environment]\nname = "{name}"\nplatforms = ["linux-64"]\n\n'
        f'[image]\nbase = "{base}"\napt-packages = {json.dumps(list(apt))}\n'
    )
    return d


@pytest.fixture(scope="module")
def locked(tmp_path_factory, base_image_remote):
    d = project(tmp_path_factory.mktemp("apt-lock"), base_image_remote, WANT, "apt-test")
    with pytest.MonkeyPatch.context() as mp:  # module scope: before the autouse fixture
        mp.delenv("MLENV_CA_BUNDLE", raising=False)
        mlenv.lock(d)
    return d


def debs(lock, platform="linux-64"):
    return {p.name: p for p in lock.for_platform(platform, "apt")}


def test_lock_pins_the_closure_with_urls_hashes_and_snapshot_urls(locked, base_image_remote):
    lock = read_lock(locked / "mlenv.lock")
    got = debs(lock)
    assert {"libgomp1", "curl", "libcurl4"} <= set(got)
    assert "libc6" not in got and "python3" not in got  # the base has them
    for p in got.values():
        assert p.url.startswith("http://deb.debian.org/debian/pool/main/") and p.url.endswith(
            f"_{p.get('architecture')}.deb"
        )
        assert len(p.sha256) == 64 and p.get("size") > 0 and p.get("architecture") in ("amd64", "all")
        assert p.get("snapshot-url").startswith("https://snapshot.debian.org/archive/debian/")
        assert p.get("snapshot-url").endswith(p.url.split("/debian/", 1)[1])
    assert got["curl"].version == got["libcurl4"].version  # curl Depends: libcurl4 (= its version)
    assert lock.inputs["apt-base"] == lock.image["reference"] and lock.inputs["apt-packages"] == sorted(WANT)


def test_relock_is_deterministic_and_the_noop_reads_no_index(locked, tmp_path, monkeypatch):
    before = (locked / "mlenv.lock").read_bytes()
    # a second lock of the same spec in another directory: same bytes
    other = project(
        tmp_path / "again", read_lock(locked / "mlenv.lock").image["base"], list(reversed(WANT)), "apt-test"
    )
    mlenv.lock(other)
    again = read_lock(other / "mlenv.lock")
    assert again.content_hash == read_lock(locked / "mlenv.lock").content_hash  # apt-packages order does not count
    # the no-op: no network (a dead proxy), no gpgv, no docker: still current, nothing written
    dead = {
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "MLENV_GPGV": "/nonexistent",
        "DOCKER_HOST": "unix:///nonexistent.sock",
    }
    for name, value in dead.items():
        monkeypatch.setenv(name, value)
    outcome = mlenv.lock(locked)
    assert outcome.action == "fresh" and not outcome.changed  # `mlenv lock` says "up to date"
    assert (locked / "mlenv.lock").read_bytes() == before


def test_upgrade_package_moves_one_package_and_what_it_needs(locked, tmp_path):
    from dataclasses import replace

    lock = read_lock(locked / "mlenv.lock")
    d = tmp_path / "up"
    d.mkdir()
    (d / "mlenv.toml").write_bytes((locked / "mlenv.toml").read_bytes())
    old = "7.88.1-10+deb12u0"  # a pin the mirror no longer has (as if superseded since)
    lock.packages = [replace(p, version=old) if p.name in ("curl", "libcurl4") else p for p in lock.packages]
    lock.seal().write(d / "mlenv.lock")
    mlenv.lock(d)  # pins kept while they satisfy the spec
    assert debs(read_lock(d / "mlenv.lock"))["curl"].version == old
    mlenv.lock(d, upgrade_packages=["curl"])
    new = debs(read_lock(d / "mlenv.lock"))
    fresh = debs(read_lock(locked / "mlenv.lock"))
    assert new["curl"].version == new["libcurl4"].version == fresh["curl"].version != old
    assert {n: p.version for n, p in new.items()} == {n: p.version for n, p in fresh.items()}


def test_locked_sha256_is_the_signed_index_entry(locked):
    """Each pin's url, size and sha256 against the Packages index entry of its version, where the
    index is the one the gpgv-verified InRelease names (size and sha256 checked by fetch_index) and is
    parsed here with python-debian directly, not through mlenv's resolver."""
    from debian.deb822 import Packages

    from mlenv.apt.archive import fetch_index, keyring_bytes, packages_entry, read_release
    from mlenv.apt.base import read_base
    from mlenv.apt.sources import read_sources

    lock = read_lock(locked / "mlenv.lock")
    facts = read_base(lock.image["reference"], lock.image["digest"], "amd64")  # cached by the lock
    rings = [keyring_bytes(v) for k, v in sorted(facts.keyrings.items()) if k.startswith("/etc/apt/trusted.gpg")]
    index: dict[tuple[str, str, str], dict] = {}
    for src in read_sources(facts.sources, "amd64").sources:
        release = read_release(src, rings)  # raises unless gpgv vouches for it
        for comp in src.components:
            entry = packages_entry(release, comp, "amd64")
            assert entry is not None, f"{src.dist_url}: no {comp} index"
            for st in Packages.iter_paragraphs(
                fetch_index(release, *entry).splitlines(keepends=True), use_apt_pkg=False
            ):
                index[(st["Package"], st["Version"], src.uri)] = st
    pins = debs(lock)
    assert pins
    for p in pins.values():
        uri = next(u for (_, _, u) in index if p.url.startswith(u + "/"))
        st = index[(p.name, p.version, uri)]
        assert st["SHA256"] == p.sha256, p.name
        assert int(st["Size"]) == p.get("size") and p.url == f"{uri}/{st['Filename']}"
        assert st["Architecture"] == p.get("architecture")


def test_azureml_round_trip_keeps_apt_packages(locked, tmp_path):
    """Export to Azure ML, import, lock: the same apt requests and pins, the same content hash
    (while deb.debian.org still has the versions just locked: this test locks them first)."""
    import yaml

    src = tmp_path / "src"
    src.mkdir()
    spec = (
        (locked / "mlenv.toml")
        .read_text()
        .replace('platforms = ["linux-64"]', 'python = "3.11"\nplatforms = ["linux-64"]')
    )
    (src / "mlenv.toml").write_text(spec)
    mlenv.lock(src)
    before = read_lock(src / "mlenv.lock")
    exported = mlenv.export("azureml", spec=src, output=tmp_path / "env.yml")
    assert any("mlenv.apt-pins" in n for n in exported.notes), exported.notes
    tags = yaml.safe_load((tmp_path / "env.yml").read_text())["tags"]
    assert tags["mlenv.apt-packages"] == " ".join(sorted(WANT))
    assert tags["mlenv.apt-pins"].split() == sorted(f"{n}={p.version}" for n, p in debs(before).items())
    dst = tmp_path / "dst"
    dst.mkdir()
    mlenv.init(dst / "mlenv.toml", from_file=tmp_path / "env.yml")
    mlenv.lock(dst)
    after = read_lock(dst / "mlenv.lock")
    assert {n: p.sha256 for n, p in debs(after).items()} == {n: p.sha256 for n, p in debs(before).items()}
    assert after.content_hash == before.content_hash
    dockerfile = mlenv.export("dockerfile", spec=dst).text
    assert "apt-get install -y --no-install-recommends " + tags["mlenv.apt-pins"] + " \\" in dockerfile


# --- bad input: one line, nothing written ------------------------------------------------------------------


def test_unknown_and_other_architecture_packages(tmp_path, base_image_remote):
    d = project(tmp_path / "unknown", base_image_remote, ["libgomp1", "no-such-package-mlenv"], "apt-bad")
    one_line_error(lambda: mlenv.lock(d), "no package named no-such-package-mlenv for amd64")
    assert not (d / "mlenv.lock").exists()
    d = project(tmp_path / "arch", base_image_remote, ["grub-efi-arm64-bin"], "apt-arch")  # built for arm64 only
    one_line_error(lambda: mlenv.lock(d), "no package named grub-efi-arm64-bin for amd64")
    assert not (d / "mlenv.lock").exists()


def test_an_apt_lock_error_on_the_terminal(tmp_path, base_image_remote):
    """`mlenv lock` prints the refusal as one `error:` line after any progress lines, exits 2,
    no traceback, writes nothing."""
    d = project(tmp_path / "unknown", base_image_remote, ["libgomp1", "no-such-package-mlenv"], "apt-bad")
    full = {k: v for k, v in os.environ.items() if k != "MLENV_CA_BUNDLE"}
    proc = subprocess.run([sys.executable, "-m", "mlenv.cli", "lock"], cwd=d, capture_output=True, text=True,
                          env=full, check=False)  # fmt: skip
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no package named no-such-package-mlenv for amd64" in lines[0], proc.stderr
    assert not (d / "mlenv.lock").exists()


def derived(docker_client, base_image: str, dockerfile: str) -> str:
    tag = f"mlenv-test-apt/{uuid.uuid4().hex[:10]}:1"
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tar:
        data = f"FROM {base_image}\n{dockerfile}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    ctx.seek(0)
    docker_client.images.build(fileobj=ctx, custom_context=True, tag=tag, network_mode="host", rm=True)
    return tag


def test_a_keyring_that_does_not_vouch_for_the_index_is_refused(tmp_path, docker_client, base_image):
    tag = derived(
        docker_client,
        base_image,
        "RUN rm -f /etc/apt/trusted.gpg.d/* && cp "
        "/usr/share/keyrings/debian-archive-removed-keys.gpg /etc/apt/trusted.gpg.d/removed.gpg",
    )
    try:
        d = project(tmp_path / "key", tag, ["libgomp1"], "apt-key")
        one_line_error(lambda: mlenv.lock(d), "InRelease: signature check failed")
        assert not (d / "mlenv.lock").exists()
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_tampered_inrelease_fails_gpgv(locked):
    from mlenv.apt.archive import ArchiveError, fetch, keyring_bytes, verify_clearsigned
    from mlenv.apt.base import read_base

    lock = read_lock(locked / "mlenv.lock")
    facts = read_base(lock.image["reference"], lock.image["digest"], "amd64")  # cached by the lock
    rings = [keyring_bytes(v) for k, v in sorted(facts.keyrings.items()) if k.startswith("/etc/apt/trusted.gpg")]
    data = fetch("http://deb.debian.org/debian/dists/bookworm/InRelease")
    assert b"Codename: bookworm" in verify_clearsigned(data, rings)
    tampered = data.replace(b"Codename: bookworm", b"Codename: bookwork", 1)
    with pytest.raises(ArchiveError, match="BAD signature"):
        verify_clearsigned(tampered, rings)


def test_a_base_without_apt_is_refused(tmp_path, docker_client):
    tag = f"mlenv-test-apt/noapt-{uuid.uuid4().hex[:10]}:1"
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 5
        t.addfile(info, io.BytesIO(b"tiny\n"))
    docker_client.api.import_image_from_data(tar.getvalue(), repository=tag.split(":")[0], tag="1")
    try:
        d = project(tmp_path / "noapt", tag, ["libgomp1"], "apt-noapt")
        one_line_error(lambda: mlenv.lock(d), "has no dpkg database")
        assert not (d / "mlenv.lock").exists()
    finally:
        docker_client.images.remove(tag, force=True)


def _sealed_copy(locked: Path, d: Path, name: str, **change) -> Path:
    from dataclasses import replace

    d.mkdir(parents=True)
    (d / "mlenv.toml").write_bytes((locked / "mlenv.toml").read_bytes())
    lock = read_lock(locked / "mlenv.lock")
    extra = change.pop("extra", None)
    lock.packages = [
        replace(p, **change, extra=extra if extra is not None else p.extra) if p.name == name else p
        for p in lock.packages
    ]
    lock.seal().write(d / "mlenv.lock")
    return d


def test_a_deb_whose_sha256_does_not_match_is_refused(locked, tmp_path, monkeypatch):
    # the real curl .deb from the mirror, under a sha256 it does not have (the lock resealed)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    d = _sealed_copy(locked, tmp_path / "sha", "curl", sha256="cd" * 32)
    line = one_line_error(
        lambda: mlenv.build(d, repository="mlenv-test-apt"), "sha256 mismatch for Debian package curl"
    )
    assert "cd" * 32 in line and not (cache / "mlenv" / "artifacts" / "sha256" / ("cd" * 32)).exists()
    # a Debian package's URL is an http(s) URL of a .deb: a file:// one is refused before anything is read
    d = _sealed_copy(locked, tmp_path / "file", "curl", url=(tmp_path / "curl.deb").as_uri())
    one_line_error(lambda: mlenv.build(d), "is not an http(s) URL")


def test_a_superseded_deb_names_itself_and_the_way_out(locked, tmp_path, monkeypatch):
    gone = "http://deb.debian.org/debian/pool/main/c/curl/curl_7.88.1-0mlenv_amd64.deb"
    d = _sealed_copy(locked, tmp_path / "gone", "curl", url=gone, sha256="ab" * 32)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(MlenvError) as e:
        mlenv.build(d, repository="mlenv-test-apt")
    line = one_line(e)
    assert e.value.exit_code == 2
    assert "Debian package curl" in line and "no longer at " + gone in line and "superseded" in line
    assert "mlenv lock --upgrade-package curl" in str(e.value)


# --- builds ----------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _buildkit_cli(request):
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("builder") == "buildkit":
        from plugin_docker import _unavailable

        from mlenv.image.buildkit import find_cli

        if find_cli() is None:
            _unavailable("no docker CLI on PATH builds with BuildKit")


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_build_installs_exactly_the_locked_debs(locked, docker_client, builder):
    repo = f"mlenv-test-apt-{builder}-{uuid.uuid4().hex[:6]}"
    result = mlenv.build(locked, force=True, builder=builder, repository=repo)
    assert result.builder == builder and result.action == "built"
    ref = result.image
    try:
        lock = read_lock(locked / "mlenv.lock")
        want = {n: p.version for n, p in debs(lock).items()}
        out = docker_client.containers.run(
            ref, ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *sorted(want)], network_mode="none", remove=True
        ).decode()
        assert dict(ln.split(" ", 1) for ln in out.strip().splitlines()) == want
        script = (
            "find /var/lib/apt/lists -type f ! -name lock; find / -xdev -name '*.deb'; ls /tmp;"
            " curl --version | head -1"
        )
        out = docker_client.containers.run(ref, ["sh", "-c", script], network_mode="none", remove=True).decode()
        assert out.strip().startswith("curl 7.88.1"), out  # no lists, no .deb, nothing left in /tmp
        from mlenv.runtime.fetch import artifact_cache_dir, sha256_file

        for p in debs(lock).values():  # the .debs that were served are the locked bytes
            assert sha256_file(artifact_cache_dir() / p.sha256) == p.sha256
        verified(ref, locked)
        bad = mlenv.verify(image=read_lock(locked / "mlenv.lock").image["reference"], lock=locked / "mlenv.lock")
        assert not bad.ok and any(str(x).startswith("apt: missing curl ") for x in bad.differences), bad.differences
    finally:
        docker_client.images.remove(ref, force=True)


def test_daemonless_unpack_matches_what_dpkg_does(locked, tmp_path, docker_client):
    """mlenv.image.debs on libgomp1 + curl's closure: the files, dpkg's info entries, and a
    status file byte-identical to the one dpkg writes when the classic builder installs them."""
    from mlenv.apt.base import read_base
    from mlenv.image.debs import UnpackError, script_verdict, unpack_debs
    from mlenv.runtime.fetch import artifact_cache_dir

    lock = read_lock(locked / "mlenv.lock")
    built = mlenv.build(locked, builder="classic", repository="mlenv-test-apt-dl")
    ref = f"mlenv-test-apt-dl/apt-test:{lock.short_hash}"
    assert built.image == ref
    try:
        dpkg_status = docker_client.containers.run(
            ref, ["cat", "/var/lib/dpkg/status"], network_mode="none", remove=True
        ).decode()
    finally:
        docker_client.images.remove(ref, force=True)
    facts = read_base(lock.image["reference"], lock.image["digest"], "amd64")
    files = [artifact_cache_dir() / p.sha256 for p in debs(lock).values()]
    got = unpack_debs(files, tmp_path / "stage", base_status=facts.status)
    stage = tmp_path / "stage"
    assert got.status == dpkg_status == (stage / "var/lib/dpkg/status").read_text()
    assert (stage / "usr/lib/x86_64-linux-gnu/libgomp.so.1").is_symlink()
    assert (stage / "usr/bin/curl").stat().st_mode & 0o111
    listing = (stage / "var/lib/dpkg/info/libgomp1:amd64.list").read_text().splitlines()
    assert listing[0] == "/." and "/usr/lib/x86_64-linux-gnu/libgomp.so.1" in listing
    assert (stage / "var/lib/dpkg/info/curl.md5sums").is_file()  # curl is not Multi-Arch: same
    assert got.scripts["libgomp1"] == ["triggers"] and "ldconfig" in got.allowed["libgomp1"]
    assert "curl" not in got.scripts
    assert script_verdict("postinst", b"#!/bin/sh\nset -e\nupdate-alternatives --install x\n") is None
    with pytest.raises(UnpackError):
        unpack_debs([tmp_path / "stage" / "var/lib/dpkg/status"], tmp_path / "stage2")
