"""mlenv.runtime.journal: a multi-file replacement is all or nothing, also when a signal
lands at the commit point itself (test_kill.py finds such windows at random; these place
the interruption exactly)."""

from __future__ import annotations

import hashlib

import pytest

from mlenv.runtime import journal


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _setup(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"old a\n")
    (tmp_path / "b.txt").write_bytes(b"old b\n")
    files = {"a.txt": b"new a\n", "b.txt": b"new b\n"}
    old = {"a.txt": _sha(b"old a\n"), "b.txt": _sha(b"old b\n")}
    return files, old


def test_interrupted_right_after_the_journal_is_written_completes_the_change(tmp_path, monkeypatch):
    files, old = _setup(tmp_path)
    real = journal.atomic_write

    def then_interrupted(path, text):
        real(path, text)  # the journal is in place: committed
        raise KeyboardInterrupt  # ... and the signal lands before the code can say so

    monkeypatch.setattr(journal, "atomic_write", then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        journal.write_files(tmp_path, files, old)
    assert (tmp_path / "a.txt").read_bytes() == b"new a\n" and (tmp_path / "b.txt").read_bytes() == b"new b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no journal, no temporary file


def test_interrupted_before_the_journal_leaves_the_old_files(tmp_path, monkeypatch):
    files, old = _setup(tmp_path)

    def interrupted(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(journal, "atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        journal.write_files(tmp_path, files, old)
    assert (tmp_path / "a.txt").read_bytes() == b"old a\n" and (tmp_path / "b.txt").read_bytes() == b"old b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_ctrl_c_as_a_temporary_file_is_created_leaves_neither_it_nor_a_change(tmp_path, signal_after_mkstemp):
    import signal

    files, old = _setup(tmp_path)
    signal_after_mkstemp(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        journal.write_files(tmp_path, files, old)
    assert (tmp_path / "a.txt").read_bytes() == b"old a\n" and (tmp_path / "b.txt").read_bytes() == b"old b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # the temporary file went at once
