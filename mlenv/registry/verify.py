"""Read one registered version with every hash checked: the one rule every reader
(show, diff, restore, the web catalog, search) applies before trusting the bytes."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .base import Registry, RegistryError, Version

if TYPE_CHECKING:
    from ..lockfile import Lock


def read_verified(reg: Registry, v: Version) -> tuple[bytes, bytes, Lock]:
    """(spec bytes, lock bytes, Lock) of v: the sha256 of both blobs equals the one the
    registry recorded, the lock parses and verifies its own content hash, and that hash
    equals the one the registry recorded. Anything else raises RegistryError (LockError when
    the lock itself is malformed or edited)."""
    from ..lockfile import loads_lock

    spec_bytes, lock_bytes = reg.read(v)
    if (
        hashlib.sha256(spec_bytes).hexdigest() != v.spec_sha256
        or hashlib.sha256(lock_bytes).hexdigest() != v.lock_sha256
    ):
        raise RegistryError(f"{v.ref}: stored files do not match their recorded sha256; refusing to use them")
    try:
        lock = loads_lock(lock_bytes.decode("utf-8"), f"{v.ref}:mlenv.lock")
    except UnicodeDecodeError:
        raise RegistryError(f"{v.ref}: the stored lock is not UTF-8 text (corrupt)") from None
    if lock.content_hash != v.content_hash:
        raise RegistryError(
            f"{v.ref}: the stored lock has content hash {lock.content_hash[:19]}…, "
            f"the registry recorded {v.content_hash[:19]}…; refusing to use it"
        )
    return spec_bytes, lock_bytes, lock
