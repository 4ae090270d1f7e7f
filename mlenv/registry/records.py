"""Checks for what a registry hands back: index rows, OCI annotations and state documents,
Azure ML properties and tags.

A registry is shared storage that other people (and other tools) write, so every
record is untrusted input: a name, number, hash, label or text is checked here before
mlenv builds a Version from it or uses it in a path. One rule set for every backend
(docs/security.md, "Registry entries").
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


def damaged(where: str, what: str) -> RegistryError:
    return RegistryError(
        f"{where}: damaged registry record: invalid {what}; refusing to use it",
        hint="the registry was edited outside mlenv or is corrupt; restore it from a backup",
    )


__all__ = [
    "check_name",
    "damaged",
    "is_label",
    "is_name",
    "is_number",
    "is_optional_ref",
    "is_text",
    "make_version",
    "parse_number",
]
