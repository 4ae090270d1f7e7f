"""mlenv.oci.store: a blob is in the store whole, or not at all (no partial file left)."""

from __future__ import annotations

import hashlib
import signal

import pytest

from mlenv.oci.store import BlobStore


def test_a_blob_written_is_stored_under_its_digest(tmp_path):
    store = BlobStore(tmp_path)
    with store.writer() as w:
        w.write(b"layer bytes")
    assert w.digest == "sha256:" + hashlib.sha256(b"layer bytes").hexdigest()
    assert store.path(w.digest).read_bytes() == b"layer bytes"
    assert [p.name for p in store.blob_dir.iterdir()] == [w.digest.split(":")[1]]


def test_ctrl_c_as_the_partial_blob_is_created_leaves_nothing(tmp_path, signal_after_mkstemp):
    store = BlobStore(tmp_path)
    signal_after_mkstemp(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with store.writer() as w:
            w.write(b"never stored")
    assert list(store.blob_dir.iterdir()) == []
