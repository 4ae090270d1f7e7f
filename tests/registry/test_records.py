"""The bulk row check (mlenv.registry.records.rows_pass / make_versions) accepts exactly what
the per-row check (make_version, plus the local index's archived flag) accepts, on generated
rows; and a damaged row among many in a real local index is still refused in one line naming
the row and the field."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlenv.registry.base import RegistryError
from mlenv.registry.local import LocalRegistry
from mlenv.registry.records import MAX_TEXT, ROW_COLUMNS, is_label, make_version, make_versions, rows_pass

HEX = "0123456789abcdef"
# characters at the edges of what the checks accept: controls (C0, DEL, C1), tab and newline,
# space, a non-ASCII digit, upper case, the separators the checks use, the replacement character
EDGES = "\x00\x01\t\n\x0b\x1f\x7f\x80\x85\x9f\xa0 Z٠:._-@/\ufffd%"
WRONG_TYPES = st.sampled_from([None, 0, 1, -1, 1.0, 1.5, True, False, b"abc", b"", ""])


def _mutated(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with one character replaced, inserted or removed, or cut at either end."""

    @st.composite
    def mutate(draw):
        text = draw(valid)
        if not isinstance(text, str):
            return text
        i = draw(st.integers(0, len(text)))
        c = draw(st.sampled_from(EDGES) | st.characters())
        return draw(
            st.sampled_from([text[:i] + c + text[i + 1 :], text[:i] + c + text[i:], text[:i] + text[i + 1 :], text[:i],
                             text + "\n", "\n" + text])
        )  # fmt: skip

    return mutate()


_VERSION = st.integers(1, 10**9 - 1)
hex64 = st.text(HEX, min_size=64, max_size=64)
NAME = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,20}\Z")
TEXT_LINE = st.text(st.characters(blacklist_categories=["Cc"]), max_size=30)
TEXT = st.text(st.characters(blacklist_categories=["Cc"]) | st.sampled_from("\n\t"), max_size=30)
REF_TEXT = st.text(st.characters(blacklist_categories=["Cc", "Zs"]), max_size=30)

VALID = (NAME, _VERSION, hex64.map("sha256:".__add__), hex64, hex64, TEXT_LINE, TEXT, st.sampled_from([0, 1]),
         st.none() | REF_TEXT, st.none() | REF_TEXT)  # fmt: skip

# Values at the edges of each column's rule, on both sides
_A64 = "a" * 64
_TEXTS = ["", "a", "a\nb", "a\tb", "a\rb", "a\x00b", "\x1f", "\x7f", "\x80", "\x85", "\x9f", "\xa0", "a b", " ", "é",
          "\ufffd", "\U0001f600", "x" * MAX_TEXT, "x" * (MAX_TEXT + 1), "é" * MAX_TEXT, "é" * (MAX_TEXT + 1)]  # fmt: skip
_HEXES = [_A64, _A64 + "\n", "\n" + _A64, _A64[:63], _A64 + "a", "A" * 64, "٠" * 64, _A64[:63] + "g", _A64 + "\x00",
          " " + _A64[1:], "0" * 64, _A64[:63] + "\n", "\n" + _A64[1:], _A64[:32] + "\x00" + _A64[33:], _A64[:63] + "é",
          _A64[:60] + "sha2"]  # fmt: skip
_WRONG = [None, 0, 1, -1, 1.0, 1.5, True, False, b"abc", b"", 2**63 - 1]
EDGE_VALUES = {
    "name": [*"a 0 -a .a _a A é a/b a:b a_b-c.d".split(), "a" * 128, "a" * 129, "a b", "a\n", "", *_WRONG],
    "version": [1, 999999999, 0, 10**9, -1, True, 1.0, "1", "٣", None, 2**63 - 1, b"1"],
    "content_hash": [*("sha256:" + h for h in _HEXES), "sha512:" + _A64, "SHA256:" + _A64, _A64, "sha256:", *_WRONG],
    "spec_sha256": [*_HEXES, "sha256:" + _A64, *_WRONG],
    "lock_sha256": [*_HEXES, *_WRONG],
    "created": [*_TEXTS, "2026-01-01T00:00:00.000000Z", *_WRONG],
    "description": [*_TEXTS, "line\nline\n\ttab", *_WRONG],
    "archived": [0, 1, 2, -1, 1.0, 0.0, 0.5, "1", "0", None, True, False, b"\x01"],
    "image": [*_TEXTS, "registry.example:5000/env@sha256:" + _A64, *_WRONG],
    "image_digest": [*_TEXTS, "sha256:" + _A64, *_WRONG],
}
assert list(EDGE_VALUES) == list(ROW_COLUMNS)
ANY = tuple(
    st.one_of(valid, valid, st.sampled_from(EDGE_VALUES[column]), _mutated(valid) if column not in ("version", "archived")
              else st.nothing(), WRONG_TYPES)
    for column, valid in zip(ROW_COLUMNS, VALID, strict=True)
)  # fmt: skip


@st.composite
def listings(draw) -> list[tuple]:
    """Rows as a listing holds them: valid ones, then a few fields (or whole rows) of any kind."""
    rows = draw(st.lists(st.tuples(*VALID), min_size=1, max_size=8))
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(rows) - 1))
        if draw(st.booleans()):
            rows[i] = draw(st.tuples(*ANY))
        else:
            c = draw(st.integers(0, len(ANY) - 1))
            rows[i] = (*rows[i][:c], draw(ANY[c]), *rows[i][c + 1 :])
    return rows


LABEL = st.from_regex(r"\A[a-z][a-z0-9._-]{0,8}\Z") | st.sampled_from(["latest", "1x", "Prod", "a b", "", "x\n", 7])


def _one(labels: dict):
    """The per-row path LocalRegistry takes (its archived check, then make_version)."""

    def one(row):
        if row[7] not in (0, 1):
            raise RegistryError(f"damaged archived flag {row[7]!r}")
        return make_version(
            "test row",
            **{c: v for c, v in zip(ROW_COLUMNS, row, strict=True) if c != "archived"},
            archived=bool(row[7]),
            labels=labels.get(row[1], []),
        )

    return one


def _row_ok(one, row) -> bool:
    try:
        one(row)
        return True
    except RegistryError:
        return False


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=listings(), labels=st.dictionaries(_VERSION, st.lists(LABEL, max_size=2)))
def test_the_bulk_check_accepts_exactly_what_the_per_row_check_accepts(rows, labels):
    one = _one(labels)
    per_row = all(_row_ok(one, r) for r in rows) and all(is_label(x) for ls in labels.values() for x in ls)
    assert rows_pass(rows, labels.values()) == per_row


@pytest.mark.parametrize("column", ROW_COLUMNS)
def test_the_bulk_check_agrees_with_the_per_row_check_on_every_edge_value(column):
    good = ("env", 3, "sha256:" + _A64, _A64, _A64, "2026-01-01T00:00:00Z", "text", 0, None, None)
    c = ROW_COLUMNS.index(column)
    one = _one({})
    for value in EDGE_VALUES[column]:
        row = (*good[:c], value, *good[c + 1 :])
        rows = [good, row, good]
        assert rows_pass(rows) == _row_ok(one, row), (column, value)


@settings(max_examples=500, deadline=None)
@given(rows=listings(), env_archived=st.booleans())
def test_make_versions_returns_what_the_per_row_path_returns_or_raises_its_error(rows, env_archived):
    labels = {r[1]: ["prod"] for r in rows[:1] if type(r[1]) is int}
    one = _one(labels)

    def slow(row):
        v = one(row)
        v.archived = v.archived or env_archived
        return v

    try:
        expected = [slow(r) for r in rows]
    except RegistryError as exc:
        with pytest.raises(RegistryError) as got:
            make_versions(rows, slow, labels=labels, env_archived=env_archived)
        assert str(got.value) == str(exc)
        return
    got_versions = make_versions(rows, slow, labels=labels, env_archived=env_archived)
    assert got_versions == expected
    assert len({id(v.labels) for v in got_versions}) == len(got_versions)  # no list shared between versions


def test_a_checked_listing_is_not_fooled_by_valid_rows_around_a_damaged_one():
    rows = [("env", n, "sha256:" + "a" * 64, "b" * 64, "c" * 64, "2026-01-01T00:00:00Z", "", 0, None, None)
            for n in range(1, 2001)]  # fmt: skip
    assert rows_pass(rows)
    for column, bad in (("description", "x\x00y"), ("spec_sha256", "b" * 63 + "B"), ("image", "a b"),
                        ("created", "x" * (MAX_TEXT + 1)), ("version", 10**9), ("archived", 2), ("name", "Env")):  # fmt: skip
        damaged = list(rows)
        i = ROW_COLUMNS.index(column)
        damaged[1234] = (*rows[1234][:i], bad, *rows[1234][i + 1 :])
        assert not rows_pass(damaged), column


@pytest.mark.parametrize(
    "column, value, field",
    [
        ("description", "fine\x1b[2J", "description"),
        ("spec_sha256", "../" * 21 + "x", "spec sha256"),
        ("content_hash", "sha256:" + "0" * 63 + "\n", "content hash"),
        ("created", "2026-01-01\n", "created"),
        ("image_digest", "sha256:x y", "image digest"),
        ("archived", 3, "archived flag"),
    ],
)
def test_one_damaged_row_among_many_in_a_local_index_is_refused_naming_it(tmp_path, column, value, field):
    reg = LocalRegistry(tmp_path / "r")
    items = [("env", b"spec", f"lock {i}".encode(), "sha256:" + f"{i:064x}", f"version {i}") for i in range(300)]
    reg.register_many(items)
    assert len(reg.versions("env")) == 300
    reg.close()
    db = sqlite3.connect(tmp_path / "r" / "index.sqlite3")
    db.execute(f"UPDATE versions SET {column} = ? WHERE version = 217", (value,))
    db.commit()
    db.close()
    with pytest.raises(RegistryError) as exc:
        LocalRegistry(tmp_path / "r").versions("env")
    message = str(exc.value).splitlines()[0]  # then its hint
    assert "damaged registry record" in message and "versions row 'env'@217" in message, message
    assert f"invalid {field} " in message


def test_text_that_is_not_utf8_among_many_rows_is_refused(tmp_path):
    reg = LocalRegistry(tmp_path / "r")
    reg.register_many([("env", b"spec", f"lock {i}".encode(), "sha256:" + f"{i:064x}", "") for i in range(50)])
    reg.close()
    db = sqlite3.connect(tmp_path / "r" / "index.sqlite3")
    db.execute("UPDATE versions SET lock_sha256 = CAST(X'ff41' AS TEXT) WHERE version = 40")
    db.commit()
    db.close()
    with pytest.raises(RegistryError, match=r"versions row 'env'@40\).*invalid lock sha256"):
        LocalRegistry(tmp_path / "r").versions("env")


def test_a_description_that_is_not_utf8_is_read_as_before_with_replacement_characters(tmp_path):
    reg = LocalRegistry(tmp_path / "r")
    reg.register_many([("env", b"spec", f"lock {i}".encode(), "sha256:" + f"{i:064x}", f"v{i}") for i in range(50)])
    reg.close()
    db = sqlite3.connect(tmp_path / "r" / "index.sqlite3")
    db.execute("UPDATE versions SET description = CAST(X'41ff42' AS TEXT) WHERE version = 9")
    db.commit()
    db.close()
    versions = LocalRegistry(tmp_path / "r").versions("env")
    assert len(versions) == 50 and versions[8].description == "A\ufffdB" and versions[9].description == "v9"
