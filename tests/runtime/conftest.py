from __future__ import annotations

import pytest


@pytest.fixture
def signal_after_mkstemp(monkeypatch):
    """signal_after_mkstemp(SIG): send SIG to this process the moment a temporary file
    exists, before make_temp returns it: the window in which nobody yet knows its name
    (tests/test_kill.py hits it at random)."""
    import signal
    import tempfile

    real = tempfile.mkstemp

    def arm(signum: int) -> None:
        def mkstemp(*args, **kwargs):
            made = real(*args, **kwargs)
            signal.raise_signal(signum)
            return made

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return arm
