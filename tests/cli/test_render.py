"""What the CLI prints for long listings: `--json` text (mlenv.cli.jsontext.dumps) is
json.dumps(indent=2, sort_keys=True) byte for byte, and a piped table (mlenv.cli.render.table)
is the aligned text it always was; both compared on generated values, and `mlenv versions`
run on a registry with a version whose fields carry what JSON must escape."""

from __future__ import annotations

import contextlib
import io
import json

from cli_run import mlenv
from hypothesis import given, settings
from hypothesis import strategies as st

from mlenv.cli.jsontext import dumps
from mlenv.cli.render import table
from mlenv.registry.local import LocalRegistry

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # nan and infinities included: json.dumps writes NaN / Infinity
    | st.text()
    | st.sampled_from(["%s", "%%", "%(x)s", "\n", '"', "\\", "\u2028", "é", "\U0001f600", "\x00"])
)
LABELS = st.lists(st.text(max_size=3), max_size=2)  # a column of lists, most of them empty
KEYS = st.text(max_size=6) | st.sampled_from(["%s", "a%", "labels", "version"])


def _json_values():
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(KEYS, inner, max_size=4)
        | st.dictionaries(st.integers(-3, 3), inner, max_size=3),  # json.dumps writes int keys as strings
        max_leaves=20,
    )


@st.composite
def record_lists(draw):
    """A list of objects with the same keys, as listings are (now and then one that differs)."""
    keys = draw(st.lists(KEYS, min_size=1, max_size=5, unique=True))
    value = st.one_of(SCALARS, LABELS, _json_values())
    column_kinds = [draw(st.sampled_from([st.text(), st.integers(), st.none() | st.text(), st.booleans(), LABELS, value]))
                    for _ in keys]  # fmt: skip
    rows = draw(st.lists(st.tuples(*column_kinds), min_size=0, max_size=6))
    records = [dict(zip(keys, r, strict=True)) for r in rows]
    if records and draw(st.booleans()):
        odd = draw(st.dictionaries(KEYS, SCALARS, max_size=3))
        records.insert(draw(st.integers(0, len(records))), odd)
    return records


@settings(max_examples=600, deadline=None)
@given(st.one_of(_json_values(), record_lists(), st.dictionaries(KEYS, record_lists(), max_size=2)))
def test_json_text_is_json_dumps_byte_for_byte(value):
    assert dumps(value) == json.dumps(value, indent=2, sort_keys=True)


def test_json_text_raises_what_json_dumps_raises():
    for bad in ({"a": {1, 2}}, [{"a": b"x"}, {"a": b"y"}], {"a": 1, 2: 3}):
        try:
            json.dumps(bad, indent=2, sort_keys=True)
        except TypeError as exc:
            expected = type(exc)
        else:  # pragma: no cover - every case above is refused
            raise AssertionError(bad)
        try:
            dumps(bad)
        except expected:
            continue
        raise AssertionError(f"{bad!r} was encoded")


def _table_before(rows, header, title=None) -> str:
    """render.table's plain text as it was written before the C-level path (the reference)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    out = [title] if title else []
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip())
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
    return "\n".join(out) + "\n"


CELL = st.text(st.characters(blacklist_categories=["Cs"]), max_size=8) | st.sampled_from(["", " ", "{}", "{0}", "%s"])


@settings(max_examples=300, deadline=None)
@given(
    header=st.lists(CELL, min_size=1, max_size=5),
    data=st.data(),
    title=st.none() | CELL,
)
def test_a_piped_table_is_the_aligned_text_it_always_was(header, data, title):
    width = len(header)
    ragged = data.draw(st.booleans())  # rows longer than the header (their extra cells are not shown)
    row = st.lists(CELL, min_size=width, max_size=width + 2 if ragged else width)
    rows = data.draw(st.lists(row, max_size=6))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        table(rows, header, title)
    assert out.getvalue() == _table_before(rows, header, title)


def test_mlenv_versions_json_and_table_on_a_registry(tmp_path):
    reg = LocalRegistry(tmp_path / "reg")
    items = [("text-env", b"spec", f"lock {i}".encode(), "sha256:" + f"{i:064x}", f"v{i} \"q\" \\ %s é\n")
             for i in range(1, 40)]  # fmt: skip
    reg.register_many(items)
    reg.set_label("text-env", 7, "prod")
    reg.set_label("text-env", 7, "stable")
    reg.update("text-env", 3, image="registry.example:5000/text-env:abc", image_digest="sha256:" + "d" * 64)
    expected = {"registry": reg.url, "name": "text-env", "versions": [v.to_json() for v in reg.versions("text-env")]}
    reg.close()
    env = {"MLENV_REGISTRY": str(tmp_path / "reg")}
    proc = mlenv("versions", "text-env", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == json.dumps(expected, indent=2, sort_keys=True) + "\n"
    data = json.loads(proc.stdout)["versions"]
    assert data[6]["labels"] == ["prod", "stable"] and data[2]["image_digest"] == "sha256:" + "d" * 64
    lines = mlenv("versions", "text-env", cwd=tmp_path, env=env).stdout.splitlines()
    assert lines[0].split() == ["VERSION", "HASH", "CREATED", "LABELS", "IMAGE", "DIGEST", "ARCHIVED"]
    assert len(lines) == 40
    assert lines[7].split()[4] == "prod,stable"  # VERSION HASH DATE TIME LABELS ...
    assert lines[3].split()[4:] == ["registry.example:5000/text-env:abc", "d" * 12]
