"""The embedded local registry (SQLite + content-addressed blobs): semantics,
addressing, integrity, and 16 concurrent `mlenv register` processes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_run import mlenv
from registry_envs import fake, make_env, register_all

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


# --- CLI, reliability ------------------------------------------------------------------


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


def test_register_refuses_stale_or_missing_lock(tmp_path, reg_dir):
    make_env(tmp_path, variables={"A": "1"})
    text = (tmp_path / "mlenv.toml").read_text().replace('A = "1"', 'A = "2"')
    (tmp_path / "mlenv.toml").write_text(text)
    proc = mlenv("register", cwd=tmp_path)
    assert proc.returncode != 0
    assert "is not current" in proc.stderr and "mlenv lock" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "mlenv.lock").unlink()
    proc = mlenv("register", cwd=tmp_path)
    assert proc.returncode != 0 and "mlenv.lock: no such file" in proc.stderr
    assert not reg_dir.exists() or LocalRegistry(reg_dir).names() == []


def test_register_says_already_registered_and_updates_description(tmp_path, reg_dir):
    make_env(tmp_path, name="fraud-train")
    first = mlenv("register", "--no-image", cwd=tmp_path, check=True)
    assert first.stdout.startswith("registered fraud-train@1 (")
    again = mlenv("register", "--no-image", "--description", "baseline", cwd=tmp_path, check=True)
    assert "already registered as fraud-train@1" in again.stdout and "updated description" in again.stdout
    data = json.loads(mlenv("show", "fraud-train@1", "--json", cwd=tmp_path, check=True).stdout)
    assert data["description"] == "baseline" and data["version"] == 1


def test_read_commands_and_json(tmp_path, reg_dir):
    make_env(tmp_path / "a", variables={"A": "1"}, packages={"fixalpha": "1.0.0", "gone": "1.0"})
    mlenv("register", "--no-image", cwd=tmp_path / "a", check=True)
    make_env(tmp_path / "a", variables={"A": "2", "B": "x"}, packages={"fixalpha": "2.0.0", "fixbeta": "1.0.0"})
    mlenv("register", "--no-image", cwd=tmp_path / "a", check=True)
    mlenv("label", "demo@1", "prod", cwd=tmp_path, check=True)

    listing = json.loads(mlenv("list", "--json", cwd=tmp_path, check=True).stdout)
    assert [(e["name"], e["versions"], e["latest"]) for e in listing["environments"]] == [("demo", 2, 2)]
    vs = json.loads(mlenv("versions", "demo", "--json", cwd=tmp_path, check=True).stdout)["versions"]
    assert [(v["version"], v["labels"]) for v in vs] == [(1, ["prod"]), (2, [])]
    table = mlenv("versions", "demo", cwd=tmp_path, check=True).stdout.splitlines()
    assert table[0].split() == ["VERSION", "HASH", "CREATED", "LABELS", "IMAGE", "DIGEST", "ARCHIVED"]
    assert table[1].split()[0:2] == ["1", vs[0]["short_hash"]] and "prod" in table[1]

    show = json.loads(mlenv("show", "demo@prod", "--json", cwd=tmp_path, check=True).stdout)
    assert show["platforms"]["linux-64"]["pypi"] == 2 and show["variables"] == {"A": "1"}
    assert show["spec"] == (tmp_path / "a" / "mlenv.toml").read_text().replace('A = "2"\nB = "x"', 'A = "1"')
    text = mlenv("show", "demo@1", cwd=tmp_path, check=True).stdout
    assert "fixalpha==1.0.0" in text and "A=1" in text

    d = json.loads(mlenv("diff", "demo@1", "demo@2", "--json", cwd=tmp_path, check=True).stdout)
    plat = d["platforms"]["linux-64"]
    assert [p["name"] for p in plat["added"]] == ["fixbeta"]
    assert [p["name"] for p in plat["removed"]] == ["gone"]
    assert plat["upgraded"] == [{"manager": "pypi", "name": "fixalpha", "from": "1.0.0", "to": "2.0.0"}]
    assert d["variables"] == {"added": {"B": "x"}, "removed": {}, "changed": {"A": ["1", "2"]}}
    back = json.loads(mlenv("diff", "demo@2", "demo@1", "--json", cwd=tmp_path, check=True).stdout)
    assert back["platforms"]["linux-64"]["downgraded"][0]["name"] == "fixalpha"
    human = mlenv("diff", "demo@1", "demo@2", cwd=tmp_path, check=True).stdout
    assert "↑ fixalpha 1.0.0 -> 2.0.0" in human and "+ fixbeta" in human and "- gone" in human

    mlenv("archive", "demo@2", cwd=tmp_path, check=True)
    assert [v["version"] for v in json.loads(mlenv("versions", "demo", "--json", cwd=tmp_path).stdout)["versions"]] == [
        1
    ]
    assert json.loads(mlenv("show", "demo", "--json", cwd=tmp_path, check=True).stdout)["version"] == 1
    mlenv("archive", "demo", cwd=tmp_path, check=True)
    assert json.loads(mlenv("list", "--json", cwd=tmp_path).stdout)["environments"] == []
    assert "demo" in mlenv("list", "--all", cwd=tmp_path, check=True).stdout
    mlenv("unarchive", "demo", cwd=tmp_path, check=True)
    mlenv("unarchive", "demo@2", cwd=tmp_path, check=True)
    assert json.loads(mlenv("show", "demo", "--json", cwd=tmp_path).stdout)["version"] == 2
    hist = json.loads(mlenv("label", "demo", "prod", "--history", "--json", cwd=tmp_path, check=True).stdout)
    assert [h["version"] for h in hist["history"]] == [1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "nope@1"], "no environment named 'nope'"),
        (["show", "demo@7"], "demo@7: no such version"),
        (["restore", "demo@zz-top"], "no version, label or content hash matches"),
        (["label", "demo@1", "Bad Label"], "invalid label"),
        (["diff", "demo@1", "demo@9"], "no such version"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, reg_dir, args, message):
    make_env(tmp_path / "a")
    mlenv("register", "--no-image", cwd=tmp_path / "a", check=True)
    proc = mlenv(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "registry"]


def test_ambiguous_prefix_cli(tmp_path, reg_dir):
    reg = LocalRegistry(reg_dir)
    reg.register("env", b"a", b"a", "sha256:abcd" + "1" * 60)
    reg.register("env", b"b", b"b", "sha256:abcd" + "2" * 60)
    proc = mlenv("show", "env@abcd", cwd=tmp_path)
    assert proc.returncode != 0 and "ambiguous" in proc.stderr and "give more digits" in proc.stderr


# --- restore ---------------------------------------------------------------------------


def test_restore_exact_bytes_and_overwrite_rules(tmp_path, reg_dir):
    s1, l1, _ = make_env(tmp_path / "w", variables={"A": "1"})
    mlenv("register", "--no-image", cwd=tmp_path / "w", check=True)
    s2, l2, _ = make_env(tmp_path / "w", variables={"A": "2"})
    mlenv("register", "--no-image", cwd=tmp_path / "w", check=True)

    out = tmp_path / "out"
    mlenv("restore", "demo@1", "--into", str(out), cwd=tmp_path, check=True)
    assert (out / "mlenv.toml").read_bytes() == s1 and (out / "mlenv.lock").read_bytes() == l1
    # files that are a registered version's bytes may be replaced (nothing is lost)
    mlenv("restore", "demo@2", "--into", str(out), cwd=tmp_path, check=True)
    assert (out / "mlenv.toml").read_bytes() == s2 and (out / "mlenv.lock").read_bytes() == l2
    # a local edit is not replaced without --force, and neither file is touched
    edited = s2 + b"# my edit\n"
    (out / "mlenv.toml").write_bytes(edited)
    proc = mlenv("restore", "demo@1", "--into", str(out), cwd=tmp_path)
    assert proc.returncode != 0 and "local changes" in proc.stderr and "--force" in proc.stderr
    assert (out / "mlenv.toml").read_bytes() == edited and (out / "mlenv.lock").read_bytes() == l2
    mlenv("restore", "demo@1", "--into", str(out), "--force", cwd=tmp_path, check=True)
    assert (out / "mlenv.toml").read_bytes() == s1 and (out / "mlenv.lock").read_bytes() == l1
    assert sorted(p.name for p in out.iterdir()) == ["mlenv.lock", "mlenv.toml"]  # no temp files left
    # the restored pair is current: `mlenv lock --check` passes
    assert read_lock(out / "mlenv.lock").content_hash == LocalRegistry(reg_dir).resolve("demo", "1").content_hash


def test_tampered_blob_is_reported_and_nothing_is_restored(tmp_path, reg_dir):
    _, lock, _ = make_env(tmp_path / "w")
    mlenv("register", "--no-image", cwd=tmp_path / "w", check=True)
    blob = reg_dir / "blobs" / "sha256" / hashlib.sha256(lock).hexdigest()
    os.chmod(blob, 0o644)
    blob.write_bytes(lock.replace(b"3.11", b"3.12"))
    out = tmp_path / "out"
    proc = mlenv("restore", "demo@1", "--into", str(out), cwd=tmp_path)
    assert proc.returncode != 0
    assert "corrupt or was tampered with" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # message + hint
    assert not out.exists() or list(out.iterdir()) == []
    for cmd in (["show", "demo@1"], ["diff", "demo@1", "demo@1"]):
        proc = mlenv(*cmd, cwd=tmp_path)
        assert proc.returncode != 0 and "tampered" in proc.stderr


def test_versions_on_local_registry_imports_nothing_heavy(tmp_path, reg_dir):
    reg = LocalRegistry(reg_dir)
    reg.register("env", *fake(1))
    code = (
        "import sys; from mlenv.cli.main import main\n"
        "try:\n    main(['versions', 'env'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('rich', 'requests', 'docker', 'packaging', 'rattler', 'tomlkit') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, MLENV_REGISTRY=str(reg_dir)),
    )
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
