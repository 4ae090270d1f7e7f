"""Package search: the query language (hypothesis against packaging), the derived
index (incremental, discarded when corrupt or foreign), and `mlenv search` on the local
and OCI backends (specifiers, platforms, conda/PyPI names, --json, exit status)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from cli_run import mlenv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.specifiers import InvalidSpecifier, Specifier
from packaging.version import Version
from ui_envs import fraud_train, make_rich_env, pkg, register

import mlenv as mlenv_api  # the API; `mlenv` here is the command line (cli_run)
from mlenv.registry.local import LocalRegistry
from mlenv.ui.catalog import Catalog
from mlenv.ui.search import (
    Clause,
    Query,
    QueryError,
    clause_matches,
    loose_compare,
    loose_key,
    parse_query,
)

# --- strategies -----------------------------------------------------------------------------

small = st.integers(min_value=0, max_value=12)
names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?\Z", fullmatch=True)


@st.composite
def pep440(draw) -> str:
    """PEP 440 versions in their many spellings (normalized or not)."""
    out = ""
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        out += f"{draw(st.integers(0, 3))}!"
    out += ".".join(str(draw(small)) for _ in range(draw(st.integers(1, 4))))
    if draw(st.integers(0, 3)) == 0:
        out += draw(st.sampled_from(["a", "b", "rc", "c", "alpha", "beta", "pre", "preview", ".a", "-rc", "_b"]))
        out += draw(st.sampled_from(["", "0", "1", "2", "11"]))
    if draw(st.integers(0, 3)) == 0:
        out += (
            draw(st.sampled_from([".post", "post", "-post", ".r", "rev"])) + draw(st.sampled_from(["", "0", "1", "3"]))
            if draw(st.booleans())
            else f"-{draw(small)}"
        )
    if draw(st.integers(0, 3)) == 0:
        out += draw(st.sampled_from([".dev", "dev", "-dev", "_dev"])) + draw(st.sampled_from(["", "0", "1", "4"]))
    if draw(st.integers(0, 5)) == 0:
        out += "+" + draw(st.sampled_from(["ubuntu", "1", "abc.2", "local-7", "cpu", "cu124"]))
    return out


loose_versions = st.from_regex(r"\A[0-9]{1,3}([._-]?[0-9a-z]{1,3}){0,4}\Z", fullmatch=True)
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "~="])
fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the query parser -----------------------------------------------------------------------


@fast
@given(
    manager=st.sampled_from([None, "conda", "pypi", "CONDA", "PyPI"]),
    name=names,
    clauses=st.lists(st.tuples(ops, pep440()), max_size=3),
    space=st.sampled_from(["", " ", "  "]),
)
def test_query_round_trips(manager, name, clauses, space):
    valid = []
    for op, version in clauses:
        try:
            Specifier(f"{op}{version}")
        except InvalidSpecifier:
            continue
        valid.append((op, version))
    text = (
        (f"{manager}:{space}" if manager else "")
        + name
        + space
        + f"{space},{space}".join(f"{op}{space}{v}" for op, v in valid)
    )
    q = parse_query(text)
    import re

    assert q.name == re.sub(r"[-_.]+", "-", name).lower()
    assert q.manager == (manager.lower() if manager else None)
    assert q.clauses == tuple(Clause(op, v) for op, v in valid)
    assert parse_query(str(q)) == q  # the normalized form reads back the same


@fast
@given(st.text(max_size=80))
def test_query_parser_answers_any_text_with_a_query_or_one_line_error(text):
    try:
        q = parse_query(text)
    except QueryError as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert isinstance(q, Query) and q.name and all(isinstance(c, Clause) for c in q.clauses)


@pytest.mark.parametrize(
    "text, hint",
    [
        ("", "empty"),
        ("numpy=1.26", "single = is conda"),
        ("npm:left-pad", "unknown package manager"),
        ("numpy~=1", "at least two release"),
        ("numpy>=1.*", "trailing .*"),
        ("numpy 1.2", "invalid version specifier"),
        ("-numpy", "invalid package name"),
        ("x" * 600, "too long"),
    ],
)
def test_bad_queries_say_what_is_wrong(text, hint):
    with pytest.raises(QueryError, match=hint):
        parse_query(text)


# --- matching ---------------------------------------------------------------------------------


@fast
@given(op=ops, want=pep440(), have=pep440())
def test_pep440_matching_is_packagings_with_prereleases(op, want, have):
    try:
        spec = Specifier(f"{op}{want}")
    except InvalidSpecifier:
        return
    assert clause_matches(Clause(op, want), have) == spec.contains(Version(have), prereleases=True)


@fast
@given(prefix=st.lists(small, min_size=1, max_size=3), have=pep440(), op=st.sampled_from(["==", "!="]))
def test_wildcards_are_packagings(prefix, have, op):
    want = ".".join(map(str, prefix)) + ".*"
    assert clause_matches(Clause(op, want), have) == Specifier(f"{op}{want}").contains(Version(have), prereleases=True)


@fast
@given(a=loose_versions, b=loose_versions, c=loose_versions)
def test_loose_order_is_a_total_order(a, b, c):
    assert loose_compare(a, b) == -loose_compare(b, a)
    assert (loose_compare(a, b) == 0) == (loose_key(a) == loose_key(b))
    if loose_compare(a, b) <= 0 and loose_compare(b, c) <= 0:
        assert loose_compare(a, c) <= 0


def test_conda_versions_that_are_not_pep440_compare_loosely():
    q = parse_query("openssl>=1.1.1k")
    assert [v for v in ["1.1.1w", "1.1.1", "1.1.1a", "3.0.14", "1.1.0l"] if q.matches(v)] == ["1.1.1w", "3.0.14"]
    assert parse_query("openssl==1.1.1w").matches("1.1.1w") and not parse_query("openssl==1.1.1w").matches("1.1.1v")
    assert parse_query("jpeg==9.*").matches("9e") and not parse_query("jpeg!=9.*").matches("9e")
    assert not parse_query("openssl~=1.1").matches("1.1.1w")  # ~= is PEP 440 only
    assert parse_query("tzdata===2024a").matches("2024A")


def test_specifier_sets_and_prereleases():
    q = parse_query("urllib3>=2,<2.2.2")
    assert [v for v in ["1.26.18", "2.0.0", "2.2.1", "2.2.2rc1", "2.2.2", "2.2.3"] if q.matches(v)] == [
        "2.0.0",
        "2.2.1",
    ]
    assert parse_query("numpy<2.1").matches("2.1.0rc1") is False  # PEP 440: <V leaves out V's pre-releases
    assert parse_query("numpy>=2").matches("2.1.0rc1") is True  # ... but pre-releases count otherwise


# --- the index and the catalog ---------------------------------------------------------------


@pytest.fixture
def local(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = str(tmp_path / "registry")
    fraud_train(tmp_path / "envs", url)
    return url


def test_index_is_incremental_and_keyed_by_lock(local, tmp_path):
    with Catalog.open(local) as c:
        first = c.search("numpy")
        assert first.indexed == 2 and first.searched == 2
        assert {(h.version.ref, h.row.platform, h.row.version) for h in first.hits} == {
            ("fraud-train@2", "linux-64", "2.0.1"),
            ("fraud-train@2", "osx-arm64", "2.0.1"),
            ("fraud-train@1", "linux-64", "1.26.4"),
            ("fraud-train@1", "osx-arm64", "1.26.4"),
        }
        assert c.search("numpy").indexed == 0
        path = c.index.path
    assert path.parent == tmp_path / "cache" / "mlenv" / "search"
    # a third version: one more lock read, the others come from the index
    make_rich_env(tmp_path / "v3", "fraud-train", [pkg("numpy", "2.1.0")])
    register(tmp_path / "v3", local)
    with Catalog.open(local) as c:
        r = c.search("numpy>=2")
        assert r.indexed == 1
        assert [h.version.ref for h in r.hits] == ["fraud-train@3", "fraud-train@2", "fraud-train@2"]


@pytest.mark.parametrize("damage", ["garbage", "foreign", "bad-row", "truncated"])
def test_a_damaged_or_foreign_index_is_discarded_and_rebuilt(local, damage):
    with Catalog.open(local) as c:
        assert len(c.search("urllib3").hits) == 4
        path = c.index.path
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    else:
        db = sqlite3.connect(path)
        if damage == "foreign":
            db.execute("UPDATE meta SET value = 'oci://elsewhere/ns' WHERE key = 'registry'")
        else:
            db.execute("UPDATE packages SET size = 'big' WHERE key = 'urllib3'")  # a row of the wrong shape
        db.commit()
        db.close()
    with Catalog.open(local) as c:
        r = c.search("urllib3<2.2.2")
        assert [(h.version.ref, h.row.version) for h in r.hits] == [("fraud-train@1", "2.2.1")] * 2
        assert c.index.rebuilt == 1 and r.indexed == 2
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'registry'").fetchone()[0] == str(Path(local).resolve())
    db.close()


def test_a_tampered_lock_is_reported_not_searched(local, tmp_path):
    reg = LocalRegistry(local)
    v1 = reg.resolve("fraud-train", "1")
    blob = reg.blob_path(v1.lock_sha256)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b'version = "2.2.1"', b'version = "2.2.9"'))
    reg.close()
    with Catalog.open(local) as c:
        r = c.search("urllib3")
    assert {h.version.ref for h in r.hits} == {"fraud-train@2"}
    assert [ref for ref, _ in r.problems] == ["fraud-train@1"] and "sha256" in r.problems[0][1]


def test_a_record_that_disagrees_with_its_indexed_lock_is_not_trusted(local):
    reg = LocalRegistry(local)
    v2 = reg.resolve("fraud-train", "2")
    with Catalog.open(local) as c:
        c.search("numpy")
    # a third version row that names v2's lock but claims another content hash
    reg.db.execute(
        "INSERT INTO versions(name, version, content_hash, spec_sha256, lock_sha256, created) "
        "VALUES ('fraud-train', 3, ?, ?, ?, '2026-01-01T00:00:00Z')",
        ("sha256:" + "0" * 64, v2.spec_sha256, v2.lock_sha256),
    )
    reg.close()
    with Catalog.open(local) as c:
        r = c.search("numpy")
    assert "fraud-train@3" not in {h.version.ref for h in r.hits}
    assert r.problems and r.problems[0][0] == "fraud-train@3" and "content hash" in r.problems[0][1]


# --- mlenv search on both backends ------------------------------------------------------------


@pytest.fixture(params=["local", "oci"])
def registry(request, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the in-process searches' index
    if request.param == "local":
        url = str(tmp_path / "registry")
    else:
        addr = request.getfixturevalue("test_registry")
        url = f"oci://{addr}/mlenv-search-{uuid.uuid4().hex[:10]}"
    fraud_train(tmp_path / "envs", url)
    make_rich_env(tmp_path / "other", "batch-score", [pkg("urllib3", "1.26.18"), pkg("numpy", "1.26.4")])
    register(tmp_path / "other", url)
    return url


def search(registry: str, cwd: Path, *args: str):
    return mlenv("search", *args, cwd=cwd, env={"MLENV_REGISTRY": registry, "XDG_CACHE_HOME": str(cwd / "cache")})


def hits(
    registry: str, cwd: Path, query: str, platform: str | None = None, include_archived: bool = False
) -> list[tuple]:
    """The matches of `query`, in-process (the CLI's own rendering is test_mlenv_search's subject)."""
    data = mlenv_api.search(query, registry=registry, platform=platform, include_archived=include_archived).to_json()
    return sorted(
        (h["name"], h["version"], h["platform"], h["package"], h["package_version"], h["manager"]) for h in data["hits"]
    )


def test_mlenv_search(registry, tmp_path):
    cwd = tmp_path
    # a name: every version, every platform
    assert hits(registry, cwd, "urllib3") == [
        ("batch-score", 1, "linux-64", "urllib3", "1.26.18", "pypi"),
        ("fraud-train", 1, "linux-64", "urllib3", "2.2.1", "pypi"),
        ("fraud-train", 1, "osx-arm64", "urllib3", "2.2.1", "pypi"),
        ("fraud-train", 2, "linux-64", "urllib3", "2.2.3", "pypi"),
        ("fraud-train", 2, "osx-arm64", "urllib3", "2.2.3", "pypi"),
    ]
    # specifiers and a platform
    assert hits(registry, cwd, "urllib3<2.2.2", platform="linux-64") == [
        ("batch-score", 1, "linux-64", "urllib3", "1.26.18", "pypi"),
        ("fraud-train", 1, "linux-64", "urllib3", "2.2.1", "pypi"),
    ]
    assert hits(registry, cwd, "numpy==1.26.4") == [
        ("batch-score", 1, "linux-64", "numpy", "1.26.4", "pypi"),
        ("fraud-train", 1, "linux-64", "numpy", "1.26.4", "pypi"),
        ("fraud-train", 1, "osx-arm64", "numpy", "1.26.4", "pypi"),
    ]
    assert hits(registry, cwd, "NumPy >= 2, < 3", platform="osx-arm64") == [
        ("fraud-train", 2, "osx-arm64", "numpy", "2.0.1", "pypi")
    ]
    assert [h[:3] for h in hits(registry, cwd, "pandas")] == [("fraud-train", 2, "linux-64")]
    assert [h[:3] for h in hits(registry, cwd, "six")] == [
        ("fraud-train", 1, "linux-64"),
        ("fraud-train", 1, "osx-arm64"),
    ]
    # conda and PyPI names: torch finds conda's pytorch; prefixes pick a manager
    assert {h[3] for h in hits(registry, cwd, "torch")} == {"pytorch"}
    assert hits(registry, cwd, "pypi:torch") == []
    assert [h[4] for h in hits(registry, cwd, "conda:openssl>=3.0.14", platform="linux-64")] == ["3.0.14"]
    assert hits(registry, cwd, "pypi:openssl") == []
    # the table, and the exit status: 0 found, 1 nothing, 2 a bad query
    proc = search(registry, cwd, "scikit_learn~=1.5.2")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0].split() == [
        "VERSION",
        "PLATFORM",
        "PACKAGE",
        "PKG",
        "VERSION",
        "MANAGER",
        "LABELS",
        "CREATED",
    ]
    assert [line.split()[:5] for line in proc.stdout.splitlines()[1:]] == [
        ["fraud-train@2", "linux-64", "scikit-learn", "1.5.2", "pypi"],
        ["fraud-train@2", "osx-arm64", "scikit-learn", "1.5.2", "pypi"],
    ]
    assert "prod" in proc.stdout.splitlines()[1]
    assert search(registry, cwd, "tensorflow").returncode == 1
    bad = search(registry, cwd, "numpy=1.26")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_mlenv_search_json_and_archived(registry, tmp_path):
    mlenv_api.archive("fraud-train@1", registry=registry)
    assert [h[:2] for h in hits(registry, tmp_path, "urllib3<2.2.2")] == [("batch-score", 1)]
    assert [h[:2] for h in hits(registry, tmp_path, "urllib3<2.2.2", include_archived=True)] == [
        ("batch-score", 1),
        ("fraud-train", 1),
        ("fraud-train", 1),
    ]
    data = json.loads(search(registry, tmp_path, "urllib3<2.2.2", "--all", "--json").stdout)
    assert data["query"] == {"name": "urllib3", "manager": None, "clauses": [["<", "2.2.2"]]}
    assert data["searched"] == 3 and data["problems"] == [] and data["include_archived"] is True
    archived = [h for h in data["hits"] if h["name"] == "fraud-train"]
    assert all(h["archived"] and h["size"] == 121_000 and h["source"] == "https://pypi.org/simple" for h in archived)
    assert archived[0]["content_hash"].startswith("sha256:")
    again = json.loads(search(registry, tmp_path, "urllib3<2.2.2", "--all", "--json", "--reindex").stdout)
    assert again == data


def test_export_reports_a_version_it_cannot_show_and_goes_on(local, tmp_path):
    reg = LocalRegistry(local)
    blob = reg.blob_path(reg.resolve("fraud-train", "1").lock_sha256)
    reg.close()
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"\n# edited\n")
    site = tmp_path / "site"
    proc = mlenv(
        "ui", "--registry", local, "--export", str(site), cwd=tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: env/fraud-train/v1.html: " in proc.stderr and "tampered with" in proc.stderr
    page = (site / "env" / "fraud-train" / "v1.html").read_text()
    assert "<local registry>/blobs/sha256/" in page.replace("&lt;", "<").replace("&gt;", ">")  # no host path
    assert "refusing to use it" in page and str(tmp_path) not in page
    assert "numpy" in (site / "env" / "fraud-train" / "v2.html").read_text()
    data = (site / "search-data.js").read_text()
    assert '"name":"fraud-train","page":"env/fraud-train/v2.html"' in data and "v1.html" not in data


# --- what pages show of a record: credentials out ---------------------------------------------------


def test_page_scrub_removes_userinfo_with_and_without_scheme():
    from mlenv.ui.views import scrub

    assert scrub("ci:tok3n@registry.example.internal/team/img:1") == "registry.example.internal/team/img:1"
    assert scrub("see https://ci:tok3n@x.example/simple and bob:hunter22@mirror.example.org") == (
        "see https://x.example/simple and mirror.example.org"
    )
    kept = [
        "python:3.11@sha256:" + "ab" * 32,  # a tag and a digest, not userinfo
        "127.0.0.1:5000/team/img:1@sha256:" + "cd" * 32,
        "https://ci:${TOKEN}@pypi.example.internal/simple",  # references are not secrets
        "ci:${TOKEN}@pypi.example.internal",
        "mail bob@example.org at 10:30",
    ]
    assert [scrub(t) for t in kept] == kept


@given(
    user=st.from_regex(r"[a-z][a-z0-9._-]{0,10}", fullmatch=True),
    secret=st.text(  # what a URL password can hold unencoded (not a delimiter, a quote or a bracket)
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#@$<>'\"`()[]"),
        min_size=6,
        max_size=30,
    ),
    host=st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,8}){1,3}", fullmatch=True),
    scheme=st.sampled_from(["", "https://", "oci://"]),
    before=st.sampled_from(["", "pull ", "(", "x\n"]),
)
def test_page_scrub_never_shows_a_written_out_password(user, secret, host, scheme, before):
    from mlenv.ui.views import scrub

    assert f"{user}:{secret}@" not in scrub(f"{before}{scheme}{user}:{secret}@{host}/repo:1")


# --- an OCI registry's listing, cached by its state token ------------------------------------------


@pytest.mark.registry
def test_oci_listing_is_cached_by_the_registry_state(test_registry, tmp_path, monkeypatch):
    """A fresh catalog on an OCI registry lists a name from the search index's cache while the
    name's tags and state manifest are unchanged (shown by a record edited only in the cache),
    and lists it again as soon as a version, a label or a description changes it."""
    from mlenv.registry import open_registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"oci://{test_registry}/mlenv-listing-{uuid.uuid4().hex[:10]}"
    fraud_train(tmp_path / "envs", url)
    index = tmp_path / "index.sqlite3"
    with Catalog.open(url, index_path=index) as c:
        assert [v.version for v in c.versions("fraud-train")] == [1, 2]
        assert len(c.search("numpy").hits) == 4
    db = sqlite3.connect(index)
    (cached,) = db.execute("SELECT versions FROM listing WHERE name = 'fraud-train'").fetchone()
    db.execute("UPDATE listing SET versions = ?", (cached.replace("first cut", "from the cache"),))
    db.commit()
    with Catalog.open(url, index_path=index) as c:
        assert c.get("fraud-train", 1).description == "from the cache"  # no version manifest was read
    # a record that does not check out is not used: the registry is listed again
    db.execute("UPDATE listing SET versions = ?", (cached.replace('"version":1', '"version":-1'),))
    db.commit()
    with Catalog.open(url, index_path=index) as c:
        assert c.get("fraud-train", 1).description == "first cut"
    # every kind of change is seen by the next fresh catalog
    with open_registry(url) as reg:
        reg.update("fraud-train", 1, description="edited")
    with Catalog.open(url, index_path=index) as c:
        assert c.get("fraud-train", 1).description == "edited"
    with open_registry(url) as reg:
        reg.set_label("fraud-train", 1, "prod")
    with Catalog.open(url, index_path=index) as c:
        assert c.get("fraud-train", 1).labels == ["prod"] and c.get("fraud-train", 2).labels == []
    make_rich_env(tmp_path / "v3", "fraud-train", [pkg("numpy", "2.1.0")])
    register(tmp_path / "v3", url)
    make_rich_env(tmp_path / "other", "batch-score", [pkg("numpy", "1.26.4")])
    register(tmp_path / "other", url)
    with Catalog.open(url, index_path=index) as c:
        assert [v.version for v in c.versions("fraud-train")] == [1, 2, 3]
        assert {h.version.ref for h in c.search("numpy").hits} == {
            "fraud-train@1", "fraud-train@2", "fraud-train@3", "batch-score@1"
        }  # fmt: skip
    assert {r[0] for r in db.execute("SELECT name FROM listing")} == {"fraud-train", "batch-score"}
    db.close()
