"""The embedded local registry (SQLite + content-addressed blobs): semantics,
addressing, integrity, and 16 concurrent `mlenv register` processes; the API's register /
read / restore on it, called in-process."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fresh_imports import imported_by, roots
from refusals import one_line
from registry_envs import fake, make_env, register_all

import mlenv
from mlenv.errors import LockError
from mlenv.lockfile import read_lock
from mlenv.registry import open_registry
from mlenv.registry.base import NotFound, RegistryError
from mlenv.registry.local import LocalRegistry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reg_dir(tmp_path, monkeypatch):
    path = tmp_path / "registry"
    monkeypatch.setenv("MLENV_REGISTRY", str(path))
    return path


# --- API semantics -----------------------------------------------------------------


def test_versions_are_numbered_and_register_is_idempotent(tmp_path):
    reg = LocalRegistry(tmp_path / "r")
    s1, l1, h1 = fake(1)
    s2, l2, h2 = fake(2)
    r1 = reg.register("env", s1, l1, h1, description="first")
    r2 = reg.register("env", s2, l2, h2)
    again = reg.register("env", s1, l1, h1, description="ignored")
    assert (r1.created, r1.version.version) == (True, 1)
    assert (r2.created, r2.version.version) == (True, 2)
    assert (again.created, again.version.version, again.version.description) == (False, 1, "first")
    # the same content under another name is that name's version 1
    assert reg.register("other", s2, l2, h2).version.version == 1
    assert [v.version for v in reg.versions("env")] == [1, 2]
    assert reg.names() == ["env", "other"]
    assert reg.read(reg.resolve("env", "1")) == (s1, l1)
    # only description / image change on an existing version
    v = reg.update("env", 1, description="edited", image="reg.example/env:abc", image_digest="sha256:" + "1" * 64)
    assert (v.description, v.image, v.content_hash) == ("edited", "reg.example/env:abc", h1)
    # blobs are content-addressed files
    assert (tmp_path / "r" / "blobs" / "sha256" / hashlib.sha256(l1).hexdigest()).read_bytes() == l1


def test_addressing_number_latest_label_and_hash_prefix(tmp_path):
    reg = LocalRegistry(tmp_path / "r")
    # two content hashes sharing a 6-digit prefix, to exercise ambiguity
    ha = "sha256:abcdef" + "1" * 58
    hb = "sha256:abcdef" + "2" * 58
    hc = "sha256:0123" + "3" * 60
    for i, h in enumerate((ha, hb, hc)):
        reg.register("env", f"s{i}".encode(), f"l{i}".encode(), h)
    assert reg.resolve("env", "2").content_hash == hb
    assert reg.resolve("env").version == 3
    assert reg.resolve("env", "abcdef1").version == 1
    assert reg.resolve("env", "sha256:abcdef2").version == 2
    assert reg.resolve("env", hc).version == 3
    with pytest.raises(RegistryError, match="ambiguous: it matches versions 1, 2"):
        reg.resolve("env", "abcdef")
    with pytest.raises(NotFound, match="no such version"):
        reg.resolve("env", "9")
    with pytest.raises(NotFound, match="no environment named 'nope'"):
        reg.resolve("nope", "1")
    with pytest.raises(NotFound, match="no version, label or content hash"):
        reg.resolve("env", "staging")
    reg.set_label("env", 1, "prod")
    assert reg.resolve("env", "prod").version == 1
    reg.set_label("env", 2, "prod")  # moves
    reg.set_label("env", 2, "prod")  # no-op: not a move
    assert reg.resolve("env", "prod").version == 2
    assert [v for _, v in reg.label_history("env", "prod")] == [1, 2]
    assert reg.labels("env") == {"prod": 2}
    for bad in ("3", "latest", "Prod", "-x", ""):
        with pytest.raises(RegistryError, match="invalid label"):
            reg.set_label("env", 1, bad)


def test_archive_hides_from_latest_and_list_but_stays_restorable(tmp_path):
    reg = LocalRegistry(tmp_path / "r")
    for i in (1, 2):
        reg.register("env", *fake(i))
    reg.register("keep", *fake(3))
    reg.set_archived("env", 2, True)
    assert reg.resolve("env").version == 1
    assert reg.resolve("env", "2").archived is True
    assert reg.read(reg.resolve("env", "2")) == fake(2)[:2]
    reg.set_archived("env", 1, True)
    with pytest.raises(NotFound, match="no version that is not archived"):
        reg.resolve("env")
    reg.set_archived("env", 1, False)
    reg.set_archived("env", None, True)  # the whole environment
    assert reg.names() == ["keep"]
    assert reg.names(include_archived=True) == ["env", "keep"]
    assert all(v.archived for v in reg.versions("env"))
    reg.set_archived("env", None, False)  # per-version state comes back as it was
    assert [(v.version, v.archived) for v in reg.versions("env")] == [(1, False), (2, True)]


def test_open_registry_chooses_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("MLENV_REGISTRY", str(tmp_path / "x"))
    assert isinstance(open_registry(), LocalRegistry)
    assert open_registry(f"file://{tmp_path}/y").root == tmp_path / "y"
    from mlenv.registry.oci import OciRegistry

    oci = open_registry("oci://127.0.0.1:5999/team/envs")
    assert isinstance(oci, OciRegistry) and oci.base == "http://127.0.0.1:5999" and oci.repo("a") == "team/envs/a"
    assert open_registry("oci://ghcr.io/acme").base == "https://ghcr.io"
    with pytest.raises(RegistryError, match="unknown registry URL"):
        open_registry("s3://bucket")


def test_sqlite_index_uses_wal_and_schema(tmp_path):
    reg = LocalRegistry(tmp_path / "r")
    reg.register("env", *fake(1))
    reg.close()
    db = sqlite3.connect(tmp_path / "r" / "index.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"environments", "versions", "labels", "label_history", "meta"} <= tables


def test_threads_registering_concurrently_in_process(tmp_path):
    """Separate connections in threads (like separate processes, cheaper): exact versions."""
    root = tmp_path / "r"

    def work(i):
        reg = LocalRegistry(root)
        try:
            return reg.register("env", *fake(i % 5)).version.version
        finally:
            reg.close()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(work, range(20)))
    reg = LocalRegistry(root)
    vs = reg.versions("env")
    assert [v.version for v in vs] == [1, 2, 3, 4, 5]
    assert len({v.content_hash for v in vs}) == 5
    by_hash = {v.content_hash: v.version for v in vs}
    assert got == [by_hash[fake(i % 5)[2]] for i in range(20)]


# --- reliability: separate processes ---------------------------------------------------


def test_sixteen_processes_register_at_once(tmp_path):
    """16 `mlenv register` processes, 8 distinct contents each registered twice:
    exactly versions 1..8, one per content, no duplicate number, none lost."""
    registry = tmp_path / "registry"
    dirs, hashes = [], {}
    for i in range(16):
        d = tmp_path / f"w{i}"
        _, _, h = make_env(d, name="fraud-train", variables={"SEED": str(i % 8)})
        dirs.append(d)
        hashes[i] = h
    results = register_all(dirs, str(registry))
    reg = LocalRegistry(registry)
    vs = reg.versions("fraud-train")
    assert [v.version for v in vs] == list(range(1, 9))
    assert {v.content_hash for v in vs} == set(hashes.values())
    by_hash = {v.content_hash: v.version for v in vs}
    for i, r in enumerate(results):
        assert r["content_hash"] == hashes[i]
        assert r["version"] == by_hash[hashes[i]]
    assert sum(r["new"] for r in results) == 8
    # each content's two registrations agree on the version
    assert sorted(r["version"] for r in results) == sorted(list(range(1, 9)) * 2)


# --- the API on the local backend (the CLI's rendering: tests/registry/test_registry_cli.py) ---------


def test_register_refuses_stale_or_missing_lock(tmp_path, reg_dir):
    work = tmp_path / "w"
    make_env(work, variables={"A": "1"})
    text = (work / "mlenv.toml").read_text().replace('A = "1"', 'A = "2"')
    (work / "mlenv.toml").write_text(text)
    with pytest.raises(LockError) as e:
        mlenv.register(work)
    assert "is not current" in one_line(e) and "mlenv lock" in str(e.value)
    (work / "mlenv.lock").unlink()
    with pytest.raises(LockError) as e:
        mlenv.register(work)
    assert "mlenv.lock: no such file" in one_line(e)
    assert not reg_dir.exists() or LocalRegistry(reg_dir).names() == []


def test_register_says_already_registered_and_updates_description(tmp_path, reg_dir):
    make_env(tmp_path, name="fraud-train")
    first = mlenv.register(tmp_path, image=False)
    assert (first.created, first.ref, first.updated) == (True, "fraud-train@1", [])
    assert first.message().startswith("registered fraud-train@1 (")
    again = mlenv.register(tmp_path, image=False, description="baseline")
    assert (again.created, again.ref, again.updated) == (False, "fraud-train@1", ["description"])
    assert "already registered as fraud-train@1" in again.message() and "updated description" in again.message()
    shown = mlenv.show("fraud-train@1").version
    assert shown.description == "baseline" and shown.version == 1


def test_read_commands(tmp_path, reg_dir):
    """list / versions / label / show / diff / archive / unarchive / label history."""
    a = tmp_path / "a"
    make_env(a, variables={"A": "1"}, packages={"fixalpha": "1.0.0", "gone": "1.0"})
    mlenv.register(a, image=False)
    make_env(a, variables={"A": "2", "B": "x"}, packages={"fixalpha": "2.0.0", "fixbeta": "1.0.0"})
    mlenv.register(a, image=False)
    labelled, before = mlenv.label("demo@1", "prod")
    assert (labelled.ref, before) == ("demo@1", None)

    assert [(e["name"], e["versions"], e["latest"]) for e in mlenv.environments()] == [("demo", 2, 2)]
    vs = mlenv.versions("demo")
    assert [(v.version, v.labels) for v in vs] == [(1, ["prod"]), (2, [])]

    show = mlenv.show("demo@prod")
    assert show.version.version == 1
    assert len(show.lock.for_platform("linux-64", "pypi")) == 2 and show.lock.variables == {"A": "1"}
    assert {p.name: p.version for p in show.lock.for_platform("linux-64", "pypi")} == {
        "fixalpha": "1.0.0",
        "gone": "1.0",
    }
    assert show.spec_text == (a / "mlenv.toml").read_text().replace('A = "2"\nB = "x"', 'A = "1"')

    d = mlenv.diff("demo@1", "demo@2")
    assert (d.left, d.right, d.identical) == ("demo@1", "demo@2", False)
    plat = d.data["platforms"]["linux-64"]
    assert [p["name"] for p in plat["added"]] == ["fixbeta"]
    assert [p["name"] for p in plat["removed"]] == ["gone"]
    assert plat["upgraded"] == [{"manager": "pypi", "name": "fixalpha", "from": "1.0.0", "to": "2.0.0"}]
    assert d.data["variables"] == {"added": {"B": "x"}, "removed": {}, "changed": {"A": ["1", "2"]}}
    back = mlenv.diff("demo@2", "demo@1")
    assert back.data["platforms"]["linux-64"]["downgraded"][0]["name"] == "fixalpha"
    assert mlenv.diff("demo@1", "demo@prod").identical

    assert mlenv.archive("demo@2") == "demo@2"
    assert [v.version for v in mlenv.versions("demo")] == [1]
    assert [v.version for v in mlenv.versions("demo", include_archived=True)] == [1, 2]
    assert mlenv.show("demo").version.version == 1
    assert mlenv.archive("demo") == "demo"
    assert list(mlenv.environments()) == []
    assert [e["name"] for e in mlenv.environments(include_archived=True)] == ["demo"]
    mlenv.unarchive("demo")
    mlenv.unarchive("demo@2")
    assert mlenv.show("demo").version.version == 2
    assert [v for _, v in mlenv.label_history("demo", "prod")] == [1]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda into: mlenv.show("nope@1"), "no environment named 'nope'"),
        (lambda into: mlenv.show("demo@7"), "demo@7: no such version"),
        (lambda into: mlenv.restore("demo@zz-top", into=into), "no version, label or content hash matches"),
        (lambda into: mlenv.label("demo@1", "Bad Label"), "invalid label"),
        (lambda into: mlenv.diff("demo@1", "demo@9"), "no such version"),
    ],
    ids=["show-unknown-name", "show-unknown-version", "restore-unknown-ref", "label-invalid", "diff-unknown-version"],
)
def test_errors_are_one_clear_line(tmp_path, reg_dir, call, message):
    make_env(tmp_path / "a")
    mlenv.register(tmp_path / "a", image=False)
    with pytest.raises(RegistryError) as e:
        call(tmp_path)
    assert message in one_line(e)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "registry"]  # nothing was written


def test_ambiguous_prefix_says_give_more_digits(tmp_path, reg_dir):
    reg = LocalRegistry(reg_dir)
    reg.register("env", b"a", b"a", "sha256:abcd" + "1" * 60)
    reg.register("env", b"b", b"b", "sha256:abcd" + "2" * 60)
    with pytest.raises(RegistryError) as e:
        mlenv.show("env@abcd")
    text = one_line(e)
    assert "ambiguous" in text and "give more digits" in text


# --- restore ---------------------------------------------------------------------------


def test_restore_exact_bytes_and_overwrite_rules(tmp_path, reg_dir):
    s1, l1, _ = make_env(tmp_path / "w", variables={"A": "1"})
    mlenv.register(tmp_path / "w", image=False)
    s2, l2, _ = make_env(tmp_path / "w", variables={"A": "2"})
    mlenv.register(tmp_path / "w", image=False)

    out = tmp_path / "out"
    first = mlenv.restore("demo@1", into=out)
    assert sorted(first.written) == ["mlenv.lock", "mlenv.toml"] and first.version.version == 1
    assert (out / "mlenv.toml").read_bytes() == s1 and (out / "mlenv.lock").read_bytes() == l1
    # files that are a registered version's bytes may be replaced (nothing is lost)
    mlenv.restore("demo@2", into=out)
    assert (out / "mlenv.toml").read_bytes() == s2 and (out / "mlenv.lock").read_bytes() == l2
    # a local edit is not replaced without force, and neither file is touched
    edited = s2 + b"# my edit\n"
    (out / "mlenv.toml").write_bytes(edited)
    with pytest.raises(RegistryError) as e:
        mlenv.restore("demo@1", into=out)
    assert "local changes" in one_line(e) and "--force" in str(e.value)
    assert (out / "mlenv.toml").read_bytes() == edited and (out / "mlenv.lock").read_bytes() == l2
    mlenv.restore("demo@1", into=out, force=True)
    assert (out / "mlenv.toml").read_bytes() == s1 and (out / "mlenv.lock").read_bytes() == l1
    assert sorted(p.name for p in out.iterdir()) == ["mlenv.lock", "mlenv.toml"]  # no temp files left
    # the restored pair is current: `mlenv lock --check` passes
    assert read_lock(out / "mlenv.lock").content_hash == LocalRegistry(reg_dir).resolve("demo", "1").content_hash
    assert mlenv.check(out).ok


def test_tampered_blob_is_reported_and_nothing_is_restored(tmp_path, reg_dir):
    _, lock, _ = make_env(tmp_path / "w")
    mlenv.register(tmp_path / "w", image=False)
    blob = reg_dir / "blobs" / "sha256" / hashlib.sha256(lock).hexdigest()
    os.chmod(blob, 0o644)
    blob.write_bytes(lock.replace(b"3.11", b"3.12"))
    out = tmp_path / "out"
    with pytest.raises(RegistryError) as e:
        mlenv.restore("demo@1", into=out)
    assert "corrupt or was tampered with" in one_line(e)  # message + hint, one line each
    assert not out.exists() or list(out.iterdir()) == []
    for call in (lambda: mlenv.show("demo@1"), lambda: mlenv.diff("demo@1", "demo@1")):
        with pytest.raises(RegistryError) as e:
            call()
        assert "tampered" in one_line(e)


def test_versions_on_local_registry_imports_nothing_heavy(tmp_path, reg_dir):
    reg = LocalRegistry(reg_dir)
    reg.register("env", *fake(1))
    new, err = imported_by(
        "from mlenv.cli.main import main; main(['versions', 'env'])",
        tmp_path,
        dict(os.environ, MLENV_REGISTRY=str(reg_dir)),
    )
    heavy = {"rich", "requests", "docker", "packaging", "rattler", "tomlkit"}
    assert not heavy & roots(new), (sorted(heavy & roots(new)), err)
