"""mlenv.runtime.fsutil: an interrupted write leaves the old file and no temporary file."""

from __future__ import annotations

import signal

import pytest

from mlenv.runtime.fsutil import atomic_write, interrupts_held


@pytest.fixture
def cli_handlers():
    """The CLI's handlers (SIGTERM raises Terminated, SIGINT KeyboardInterrupt), put back after."""
    from mlenv.cli.main import _on_sigterm

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _on_sigterm}
    for signum, handler in before.items():
        signal.signal(signum, handler)


def test_sigterm_as_an_atomic_write_creates_its_temporary_file_removes_it(tmp_path, signal_after_mkstemp, cli_handlers):
    from mlenv.cli.main import Terminated

    (tmp_path / "f").write_text("old\n")
    signal_after_mkstemp(signal.SIGTERM)
    with pytest.raises(Terminated):
        atomic_write(tmp_path / "f", "new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"] and (tmp_path / "f").read_text() == "old\n"


def _handlers() -> dict:
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def test_interrupts_held_delivers_the_signal_after_the_block_and_restores_the_handlers(cli_handlers):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert _handlers() == cli_handlers


def test_interrupts_held_delivers_each_signal_once_in_order(cli_handlers):
    seen = []
    signal.signal(signal.SIGTERM, lambda n, f: seen.append("TERM"))  # a handler that only notes
    signal.signal(signal.SIGINT, lambda n, f: seen.append("INT"))
    with interrupts_held():
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            signal.raise_signal(s)
        assert seen == []
    assert seen == ["TERM", "INT"]


def test_interrupts_held_nested_and_with_an_error_in_the_block(cli_handlers):
    with pytest.raises(RuntimeError, match="the block failed"):
        with interrupts_held():
            with interrupts_held():
                pass
            raise RuntimeError("the block failed")
    assert _handlers() == cli_handlers
    with pytest.raises(KeyboardInterrupt):  # a signal held by the inner block reaches the outer one's
        with interrupts_held():
            with interrupts_held():
                signal.raise_signal(signal.SIGINT)
    assert _handlers() == cli_handlers


def test_a_signal_landing_while_the_handlers_are_swapped_leaves_them_all_put_back(cli_handlers, monkeypatch):
    """A SIGTERM that arrives once SIGINT is held but before SIGTERM is (its handler raises
    on the way in), and a SIGINT that arrives once SIGINT's handler is back but before
    SIGTERM's is (on the way out): either way every handler swapped is put back."""
    from mlenv.cli.main import Terminated

    real = signal.signal

    def with_a_signal_after(first: int, pending: int):
        calls = []

        def swap(signum, handler):
            old = real(signum, handler)
            calls.append(signum)
            if len(calls) == first:
                signal.raise_signal(pending)  # its handler runs at once, between the two swaps
            return old

        return swap

    monkeypatch.setattr(signal, "signal", with_a_signal_after(1, signal.SIGTERM))  # on the way in
    with pytest.raises(Terminated):
        with interrupts_held():
            pytest.fail("the block must not run")
    monkeypatch.setattr(signal, "signal", real)
    # SIGINT's is back; SIGTERM's was never swapped, and the CLI's handler ignores a second SIGTERM itself
    assert _handlers() == {signal.SIGINT: cli_handlers[signal.SIGINT], signal.SIGTERM: signal.SIG_IGN}
    signal.signal(signal.SIGTERM, cli_handlers[signal.SIGTERM])

    monkeypatch.setattr(signal, "signal", with_a_signal_after(3, signal.SIGINT))  # the first put back
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            pass
    monkeypatch.setattr(signal, "signal", real)
    assert _handlers() == cli_handlers


def test_interrupts_held_sets_the_wakeup_fd_aside_so_a_loop_hears_a_signal_once(cli_handlers):
    import os

    r, w = os.pipe()
    os.set_blocking(w, False)
    os.set_blocking(r, False)
    signal.signal(signal.SIGTERM, lambda n, f: None)  # like asyncio's add_signal_handler: the loop reads the fd
    previous = signal.set_wakeup_fd(w)
    try:
        with interrupts_held():
            signal.raise_signal(signal.SIGTERM)
        assert os.read(r, 100) == bytes([signal.SIGTERM])  # once, when delivered
        assert signal.set_wakeup_fd(w) == w  # put back
    finally:
        signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)


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
