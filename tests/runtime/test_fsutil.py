"""mlenv.runtime.fsutil: an interrupted write leaves the old file and no temporary file."""

from __future__ import annotations

import signal

import pytest

from mlenv.runtime.fsutil import atomic_write, interrupts_held


def test_sigterm_as_an_atomic_write_creates_its_temporary_file_removes_it(tmp_path, signal_after_mkstemp):
    from mlenv.cli.main import Terminated, _on_sigterm

    (tmp_path / "f").write_text("old\n")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # the CLI's handler: SIGTERM becomes an exception
    try:
        signal_after_mkstemp(signal.SIGTERM)
        with pytest.raises(Terminated):
            atomic_write(tmp_path / "f", "new\n")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"] and (tmp_path / "f").read_text() == "old\n"


def test_interrupts_held_delivers_the_signal_after_the_block_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is before


def test_interrupts_held_holds_nothing_outside_the_main_thread():
    import threading

    seen = []

    def worker():
        with interrupts_held():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.getsignal(signal.SIGINT)]  # no handler was swapped (only the main thread may)
