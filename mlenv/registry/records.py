"""Checks for what a registry hands back: index rows, OCI annotations and state documents,
Azure ML properties and tags.

A registry is shared storage that other people (and other tools) write, so every
record is untrusted input: a name, number, hash, label or text is checked here before
mlenv builds a Version from it or uses it in a path. One rule set for every backend
(docs/security.md, "Registry entries").
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from ..spec import NAME_RE
from ..validation import has_control, quote
from .base import LABEL_RE, RegistryError, Version

HEX64 = re.compile(r"^[0-9a-f]{64}\Z", re.ASCII)
CONTENT_HASH = re.compile(r"^sha256:[0-9a-f]{64}\Z", re.ASCII)
NUMBER = re.compile(r"^[1-9][0-9]{0,8}\Z", re.ASCII)  # a version number as text: ASCII digits, no sign
MAX_TEXT = 64 << 10  # a description, an image reference, a time stamp


def is_name(v: object) -> bool:
    return isinstance(v, str) and NAME_RE.match(v) is not None


def is_label(v: object) -> bool:
    return isinstance(v, str) and v != "latest" and LABEL_RE.match(v) is not None


def is_number(v: object) -> bool:
    """A version number: an int (not a bool) from 1 to 999999999."""
    return type(v) is int and 1 <= v < 10**9


def parse_number(v: object) -> int | None:
    """'3' -> 3; None for anything that is not ASCII digits without sign or leading zero."""
    return int(v) if isinstance(v, str) and NUMBER.match(v) else None


def is_text(v: object, *, newlines: bool = True) -> bool:
    return isinstance(v, str) and len(v) <= MAX_TEXT and not has_control(v, allow_newlines=newlines)


def is_optional_ref(v: object) -> bool:
    """An image reference or digest recorded on a version: absent, or one line of text."""
    return v is None or (isinstance(v, str) and is_text(v, newlines=False) and " " not in v)


def check_name(name: str) -> str:
    """An environment name as the spec allows it (mlenv.spec.NAME_RE)."""
    if not is_name(name):
        raise RegistryError(
            f"invalid environment name {quote(name)}",
            hint="lowercase ASCII letters, digits, '.', '_' and '-' (at most 128)",
        )
    return name


def make_version(
    where: str | Callable[[], str],
    *,
    name: Any,
    version: Any,
    content_hash: Any,
    spec_sha256: Any,
    lock_sha256: Any,
    created: Any,
    description: Any,
    archived: bool,
    image: Any = None,
    image_digest: Any = None,
    labels: list[str] | None = None,
) -> Version:
    """A Version from a stored record, every field checked; RegistryError names `where` and
    the field otherwise. `where` may be a function: made only for an error (a listing of
    10,000 rows would otherwise format 10,000 locations it never shows)."""
    checks = (
        ("name", name, is_name(name)),
        ("version", version, is_number(version)),
        ("content hash", content_hash, isinstance(content_hash, str) and CONTENT_HASH.match(content_hash) is not None),
        ("spec sha256", spec_sha256, isinstance(spec_sha256, str) and HEX64.match(spec_sha256) is not None),
        ("lock sha256", lock_sha256, isinstance(lock_sha256, str) and HEX64.match(lock_sha256) is not None),
        ("created", created, is_text(created, newlines=False)),
        ("description", description, is_text(description)),
        ("image", image, is_optional_ref(image)),
        ("image digest", image_digest, is_optional_ref(image_digest)),
    )
    for field, value, ok in checks:
        if not ok:
            raise damaged(where() if callable(where) else where, f"{field} {quote(value)}")
    for label in labels or []:
        if not is_label(label):
            raise damaged(where() if callable(where) else where, f"label {quote(label)}")
    return Version(
        name=name,
        version=version,
        content_hash=content_hash,
        spec_sha256=spec_sha256,
        lock_sha256=lock_sha256,
        created=created,
        description=description,
        archived=archived,
        image=image or None,
        image_digest=image_digest or None,
        labels=list(labels or []),
    )


# The columns of a row as make_versions takes it (the local index's `versions` table): every
# field make_version checks, and `archived`, an integer flag that must be 0 or 1.
ROW_COLUMNS = (
    "name", "version", "content_hash", "spec_sha256", "lock_sha256", "created", "description", "archived", "image",
    "image_digest",
)  # fmt: skip


def make_versions(
    rows: Sequence[Sequence[Any]],
    one: Callable[[Sequence[Any]], Version],
    *,
    labels: dict[int, list[str]],
    env_archived: bool,
) -> list[Version]:
    """Versions from many stored rows (ROW_COLUMNS), every field of every row checked.

    The checks are make_version's, run a column at a time (`rows_pass`): the same compiled
    patterns and predicates, applied by C-level loops (map, join, set, min/max), so a listing
    of 10,000 rows pays no Python call per row and field. Only when every row passes are the
    Versions built without further checks; otherwise each row goes through `one`, the backend's
    per-row constructor (make_version), which refuses the first damaged row in one line naming
    where and the field, exactly as before. `labels`: version number -> its labels."""
    if not rows:
        return []
    if not rows_pass(rows, labels.values()):
        return [one(r) for r in rows]  # raises at the first damaged row; reached only when one is damaged
    name, number, content_hash, spec, lock, created, description, archived, image, digest = zip(*rows, strict=True)
    with _collector_paused():
        return list(
            map(
                Version,
                name,
                number,
                content_hash,
                spec,
                lock,
                created,
                description,
                map(list, map(labels.get, number, repeat(()))),  # a list of its own for every Version
                repeat(True) if env_archived else map(bool, archived),
                map(_or_none, image) if "" in image else image,
                map(_or_none, digest) if "" in digest else digest,
            )
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while many Versions are built: they hold no cycles (str, int,
    a list of str), and the 40,000 objects of 10,000 Versions would otherwise set off a full
    collection, which walks every object of the process (15 ms of a 190 ms listing)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def rows_pass(rows: Sequence[Sequence[Any]], labels: Iterable[Iterable[Any]] = ()) -> bool:
    """Whether every row (ROW_COLUMNS) passes make_version's checks and has an archived flag of
    0 or 1, and every label is a label: make_version's predicates, a column at a time. Never
    True for a row make_version would refuse (tests/registry/test_records.py compares both on
    generated rows); False sends the caller to the per-row path, which names the damage."""
    try:
        columns = list(zip(*rows, strict=True))
        if len(columns) != len(ROW_COLUMNS):
            return False
        name, number, content_hash, spec, lock, created, description, archived, image, digest = columns
        return (
            all(map(is_name, set(name)))  # one distinct value in a listing of one name
            and set(map(type, number)) == {int}  # is_number: an int, not a bool ...
            and 1 <= min(number)
            and max(number) < 10**9  # ... from 1 to 999999999
            and _all_hex64(content_hash, "sha256:")  # CONTENT_HASH
            and _all_hex64(spec)  # HEX64
            and _all_hex64(lock)
            and _texts_pass(created, newlines=False)
            and _texts_pass(description, newlines=True)
            and set(archived) <= {0, 1}  # the local index's flag (LocalRegistry._version)
            and all(map(is_optional_ref, set(image)))  # few distinct values: most are None
            and all(map(is_optional_ref, set(digest)))
            and all(map(is_label, chain.from_iterable(labels)))
        )
    except (TypeError, ValueError):  # a value of another type (or not ASCII where hex is due), a row of another length
        return False


def _all_hex64(values: tuple[Any, ...], prefix: str = "") -> bool:
    """HEX64 (after `prefix`, CONTENT_HASH with "sha256:") for every value: each is a str of the
    prefix and 64 more characters, and those characters, all joined, are ASCII that deleting the
    16 digits 0-9a-f leaves empty. (A regex over the joined values is three times slower.)"""
    if set(map(len, values)) != {len(prefix) + 64}:
        return False
    if prefix:
        if not all(map(str.startswith, values, repeat(prefix))):  # TypeError (caught) for what is not a str
            return False
        values = tuple(map(itemgetter(slice(len(prefix), None)), values))
    return not "".join(values).encode("ascii").translate(None, _HEX_DIGITS)  # UnicodeEncodeError: not ASCII


_HEX_DIGITS = b"0123456789abcdef"


def _texts_pass(column: tuple[Any, ...], *, newlines: bool) -> bool:
    """is_text for every value: one join (TypeError for what is not a str), one search for a
    control character over the joined text (a character is in it iff it is in a value)."""
    return max(map(len, column)) <= MAX_TEXT and not has_control("".join(column), allow_newlines=newlines)


def _or_none(value: str | None) -> str | None:
    return value or None


def damaged(where: str, what: str) -> RegistryError:
    return RegistryError(
        f"{where}: damaged registry record: invalid {what}; refusing to use it",
        hint="the registry was edited outside mlenv or is corrupt; restore it from a backup",
    )


__all__ = [
    "ROW_COLUMNS",
    "check_name",
    "damaged",
    "is_label",
    "is_name",
    "is_number",
    "is_optional_ref",
    "is_text",
    "make_version",
    "make_versions",
    "parse_number",
    "rows_pass",
]
