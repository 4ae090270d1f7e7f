"""`--json` text: exactly `json.dumps(value, indent=2, sort_keys=True)`, faster for long lists of
records (`mlenv versions --json` on 10,000 versions: every version one flat object).

With `indent`, the json module encodes in pure Python, one generator step per key and value
(about 230 ms for 10,000 versions). Here a list of objects that all have the same keys is
encoded a key at a time: each key's values by one C-level pass (the json module's own C
string encoder for str, int.__repr__ for int), then every object by one `%` format of a
template. Anything else is encoded as the json module does, and whatever this module does not
handle itself (floats, tuples, non-str keys, other types) is left to json.dumps, whose text is
indented into place: a raw newline never occurs inside JSON text (strings escape it), so
indenting is replacing "\\n". tests/cli/test_render.py compares both on generated values.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _string  # C, as json.dumps uses it (ensure_ascii)
from operator import itemgetter
from typing import Any

INDENT = "  "
_CONSTANTS = {None: "null", True: "true", False: "false"}


def dumps(value: Any) -> str:
    """json.dumps(value, indent=2, sort_keys=True), byte for byte."""
    try:
        return _encode(value, "\n")
    except RecursionError:  # a cycle or a very deep value: json.dumps says what is wrong
        return json.dumps(value, indent=2, sort_keys=True)


def _encode(value: Any, nl: str) -> str:
    """`value` as it appears in json.dumps' output where a line break is followed by `nl`."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    if value is None or kind is bool:
        return _CONSTANTS[value]
    if kind is dict and all(type(k) is str for k in value):
        if not value:
            return "{}"
        inner = nl + INDENT
        items = sorted(value.items())
        return "{" + inner + ("," + inner).join(_string(k) + ": " + _encode(v, inner) for k, v in items) + nl + "}"
    if kind is list:
        if not value:
            return "[]"
        inner = nl + INDENT
        records = _records(value, inner)
        if records is None:
            records = [_encode(v, inner) for v in value]
        return "[" + inner + ("," + inner).join(records) + nl + "]"
    return json.dumps(value, indent=2, sort_keys=True).replace("\n", nl)  # floats, tuples, other keys, errors


def _records(items: list[Any], nl: str) -> list[str] | None:
    """Each object of a list of objects with the same str keys, encoded a key at a time; None
    for any other list."""
    if len(items) < 2 or set(map(type, items)) != {dict}:
        return None
    keys = sorted(items[0])
    if not keys or not all(type(k) is str for k in keys) or set(map(len, items)) != {len(keys)}:
        return None
    inner = nl + INDENT
    try:
        columns = [list(map(itemgetter(k), items)) for k in keys]
    except KeyError:  # same number of keys, other keys
        return None
    encoded = [_column(c, inner) for c in columns]
    template = "{" + inner + ("," + inner).join(_string(k).replace("%", "%%") + ": %s" for k in keys) + nl + "}"
    return list(map(template.__mod__, zip(*encoded, strict=True)))


def _column(values: list[Any], nl: str) -> list[str] | map[str]:
    kinds = set(map(type, values))
    if kinds == {str}:
        return map(_string, values)
    if kinds == {int}:
        return map(int.__repr__, values)
    if kinds <= {bool, type(None)}:  # (no int here: 1 would find True's text)
        return map(_CONSTANTS.__getitem__, values)
    if kinds == {str, type(None)}:
        return [_string(v) if v is not None else "null" for v in values]
    if kinds == {list}:  # labels: most are empty
        return [_encode(v, nl) if v else "[]" for v in values]
    return [_encode(v, nl) for v in values]


__all__ = ["dumps"]
