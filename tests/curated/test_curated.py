"""The curated catalog: naming scheme, shipped locks current and verified, the
release rule (a version changes only when the locked result changes), list / show /
init through the API in-process and the `mlenv curated` commands' output, and
(network) every entry still locks against the real indexes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import textwrap
from pathlib import Path

import pytest
from cli_run import mlenv as cli
from refusals import one_line

import mlenv
from mlenv.curated.catalog import NAME_RE, dumps_catalog, load_catalog, lock_text, spec_text
from mlenv.curated.release import release
from mlenv.lockfile import read_lock
from mlenv.locking import status
from mlenv.spec import load_spec, parse_spec

ENTRIES = load_catalog()
REQUIRED = {"minimal", "sklearn", "pytorch", "tensorflow", "xgboost", "lightgbm"}


def test_catalog_covers_the_required_frameworks():
    frameworks = {NAME_RE.match(e.name)["framework"] for e in ENTRIES}
    assert REQUIRED <= frameworks
    names = {e.name for e in ENTRIES}
    assert "pytorch-2.5-py311-cpu" in names and "pytorch-2.5-py311-cu124" in names
    assert len(names) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_follows_the_naming_scheme_and_documents_itself(entry):
    m = NAME_RE.match(entry.name)
    assert m, f"{entry.name} does not follow <framework>[-<version>]-py<XY>-<cpu|cuXYZ>"
    spec = load_spec(entry.spec_path)
    assert spec.name == entry.name and spec.description and entry.purpose == spec.description
    assert spec.python == f"3.{m['python'][1:]}" == entry.python
    assert spec.platforms == ["linux-64"] and spec.base_image == entry.base
    if m["accel"] == "cpu":
        assert "cuda" not in spec.system and entry.accelerator == "cpu"
    else:
        cuda = spec.system["cuda"]
        assert m["accel"] == "cu" + cuda.replace(".", "") and entry.accelerator == f"cuda {cuda}"
    if m["version"]:
        assert entry.framework_version == m["version"]
    spec.validate_requirements()


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.released], ids=lambda e: e.name)
def test_shipped_lock_is_verified_current_and_matches_the_index(entry):
    lock = read_lock(entry.lock_path)  # verifies its content hash
    assert lock.content_hash == entry.content_hash
    spec = load_spec(entry.spec_path)
    assert lock.spec_hash == spec.spec_hash() and status(spec, lock).check_ok
    assert sorted(lock.platforms) == ["linux-64"] and lock.for_platform("linux-64", "pypi")
    for pkg in lock.packages:
        assert pkg.url.startswith("https://") and len(pkg.sha256) == 64
    if entry.accelerator == "cpu":
        assert not [p for p in lock.packages if p.name.startswith("nvidia-")]


def test_unreleased_entries_are_marked_and_ship_no_lock():
    for e in ENTRIES:
        if not e.released:
            assert e.version == 0 and e.content_hash == "" and not e.lock_path.exists() and lock_text(e.name) is None


def test_spec_text_renames_and_keeps_the_lock_current(tmp_path):
    entry = next(e for e in ENTRIES if e.released)
    text = spec_text(entry.name, name="my-env")
    spec = parse_spec(text, tmp_path / "mlenv.toml")
    assert spec.name == "my-env"
    assert spec.spec_hash() == load_spec(entry.spec_path).spec_hash()  # the shipped lock fits the renamed spec
    assert spec_text(entry.name) == entry.spec_path.read_text()


def test_list_show_init(tmp_path):
    assert [e.name for e in mlenv.curated.list()] == [e.name for e in ENTRIES]
    entry = next(e for e in ENTRIES if e.released)
    shown = mlenv.curated.show(entry.name)
    assert shown.entry.content_hash == entry.content_hash and shown.entry.purpose == entry.purpose
    assert shown.packages() and shown.lock.content_hash == entry.content_hash
    mlenv.init(tmp_path / "mlenv.toml", curated=entry.name, name="mine")
    assert load_spec(tmp_path / "mlenv.toml").name == "mine"
    (tmp_path / "mlenv.lock").write_text(lock_text(entry.name))
    checked = mlenv.check(tmp_path)
    assert checked.ok and checked.content_hash == entry.content_hash
    outcome = mlenv.lock(tmp_path)  # up to date: no solve, no write
    assert (outcome.action, outcome.changed, outcome.content_hash) == ("fresh", False, entry.content_hash)
    with pytest.raises(mlenv.MlenvError) as e:
        mlenv.curated.show("sklearn")
    assert "did you mean" in one_line(e) and e.value.exit_code == 2


def test_cli_curated_list_and_show(tmp_path):
    """`mlenv curated list|show`: --json is the entries' to_json(), the text names them; an
    unknown name is `error: ... (did you mean ...)` and its hint, exit 2, no traceback."""
    data = json.loads(cli("curated", "list", "--json", cwd=tmp_path, check=True).stdout)
    assert data == [e.to_json() for e in mlenv.curated.list()]
    assert [d["name"] for d in data] == [e.name for e in ENTRIES]
    plain = cli("curated", "list", cwd=tmp_path, check=True).stdout
    assert all(e.name in plain for e in ENTRIES)
    entry = next(e for e in ENTRIES if e.released)
    shown = json.loads(cli("curated", "show", entry.name, "--json", cwd=tmp_path, check=True).stdout)
    assert shown == mlenv.curated.show(entry.name).to_json()
    assert shown["content_hash"] == entry.content_hash and shown["packages"] and shown["purpose"] == entry.purpose
    assert entry.content_hash in cli("curated", "show", entry.name, cwd=tmp_path, check=True).stdout
    with pytest.raises(mlenv.MlenvError) as e:
        mlenv.curated.show("sklearn")
    bad = cli("curated", "show", "sklearn", cwd=tmp_path)
    assert bad.returncode == 2 == e.value.exit_code
    assert bad.stderr == f"error: {e.value}\n" and "did you mean" in bad.stderr and "Traceback" not in bad.stderr


# --- the release rule, on a catalog of our own against the local index ----------------------------


def _catalog(directory: Path, index: str, deps: str, description="first") -> None:
    from mlenv.curated.catalog import Entry

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fix-1.0-py311-cpu.toml").write_text(
        textwrap.dedent(f'''\
        [environment]
        name = "fix-1.0-py311-cpu"
        description = "{description}"
        python = "3.11"
        [pypi]
        index-url = "{index}"
        dependencies = {deps}
        [image]
        base = "python:3.11-slim-bookworm"
    ''')
    )
    if not (directory / "catalog.toml").exists():
        entry = Entry(
            "fix-1.0-py311-cpu", 0, "", "fix", "1.0", "3.11", "cpu", "python:3.11-slim-bookworm", "first", directory
        )
        (directory / "catalog.toml").write_text(dumps_catalog([entry]))


def test_release_bumps_only_when_the_locked_result_changes(tmp_path, pypi_server):
    d = tmp_path / "catalog"
    _catalog(d, pypi_server, '["fixalpha==1.0.0"]')
    assert [c.action for c in release(d)] == ["released"]
    first = load_catalog(d)[0]
    assert first.version == 1 and first.content_hash == read_lock(first.lock_path).content_hash
    lock_bytes = first.lock_path.read_bytes()

    assert [c.action for c in release(d)] == ["unchanged"]  # same result: nothing moves
    assert load_catalog(d)[0].version == 1 and first.lock_path.read_bytes() == lock_bytes

    _catalog(d, pypi_server, '["fixalpha==1.0.0"]', description="reworded")  # spec hash unchanged, nothing moves
    assert [c.action for c in release(d)] == ["unchanged"]

    _catalog(d, pypi_server, '["fixalpha>=1.0,<=1.0.0"]')  # new spec hash, same locked result
    assert [c.action for c in release(d)] == ["relocked"]
    assert load_catalog(d)[0].version == 1 and load_catalog(d)[0].content_hash == first.content_hash

    _catalog(d, pypi_server, '["fixalpha==1.1.0"]')  # the result changes: version 2
    changes = release(d)
    assert [c.action for c in changes] == ["bumped"] and changes[0].new_version == 2
    second = load_catalog(d)[0]
    assert second.version == 2 and second.content_hash != first.content_hash
    assert read_lock(second.lock_path).content_hash == second.content_hash
    assert [c.action for c in release(d, check=True)] == ["unchanged"]


def test_release_refuses_a_broken_entry_and_keeps_the_old_one(tmp_path, pypi_server):
    d = tmp_path / "catalog"
    _catalog(d, pypi_server, '["fixalpha==1.0.0"]')
    release(d)
    before = (d / "catalog.toml").read_text(), (d / "fix-1.0-py311-cpu.lock").read_text()
    _catalog(d, pypi_server, '["fixalpha==9.9.9"]')
    changes = release(d)
    assert changes[0].action == "failed" and "fixalpha" in changes[0].warnings[0]
    assert ((d / "catalog.toml").read_text(), (d / "fix-1.0-py311-cpu.lock").read_text()) == before


# --- network: every entry still locks against the real indexes --------------------------------------


def _reachable(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


@pytest.mark.network
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_locks_against_real_indexes(entry, tmp_path):
    """Locking metadata only: uv reads PEP 658 metadata, no wheel (torch is 900 MB) is downloaded."""
    spec = load_spec(entry.spec_path)
    for url in [spec.index_url or "https://pypi.org/simple", *spec.extra_index_urls]:
        host = url.split("/")[2]
        if not _reachable(host) and os.environ.get("MLENV_REQUIRE_NETWORK") != "1":
            pytest.skip(f"{host} is not reachable from here")
    work = tmp_path / "env"
    work.mkdir()
    shutil.copyfile(entry.spec_path, work / "mlenv.toml")
    if entry.released:  # the shipped pins must still resolve: same content hash
        shutil.copyfile(entry.lock_path, work / "mlenv.lock")
        from mlenv.locking import lock_spec

        result = lock_spec(load_spec(work / "mlenv.toml"), existing=read_lock(work / "mlenv.lock"), force_solve=True)
        assert result.lock.content_hash == entry.content_hash
    mlenv.lock(work, upgrade=True)  # and the newest allowed versions resolve too
    lock = read_lock(work / "mlenv.lock")
    assert lock.for_platform("linux-64", "pypi")


def test_init_curated_writes_a_current_lock(tmp_path):
    mlenv.init(tmp_path / "mlenv.toml", curated="sklearn-1.5-py311-cpu", name="my-sk")
    assert 'name = "my-sk"' in (tmp_path / "mlenv.toml").read_text()
    checked = mlenv.check(tmp_path)
    assert checked.ok, checked.reasons
