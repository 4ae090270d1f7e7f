"""Shared test setup. Fixture families live in their own plugin modules:
plugin_fixtures.py (local conda channel, local PyPI index and server),
plugin_docker.py (Docker Engine, local OCI registry, test base image),
plugin_browser.py (headless Chromium for the web catalog) and plugin_sources.py (a git
smart-HTTP server, a static wheel/find-links server, local packages)."""

import pytest

pytest_plugins = ["plugin_fixtures", "plugin_docker", "plugin_browser", "plugin_sources"]


# Tests call the API in-process, so py-rattler is loaded in this interpreter. py-rattler 0.28
# crashes (SIGSEGV/SIGABRT) in about 1 of 30 interpreter exits after a failed solve, while its
# runtime is torn down (mlenv.cli.entry leaves the same way for the same reason). pytest has
# written its report by the time it unconfigures: leave then with its exit status, without
# interpreter finalization, so a green run cannot end as a crash.
_exit_status: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import os
    import sys

    if _exit_status and "rattler" in sys.modules and not hasattr(config, "workerinput"):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(_exit_status[-1])


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
            monkeypatch.setattr(tempfile, "mkstemp", real)  # once: the cleanup may make files too
            signal.raise_signal(signum)
            return made

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return arm
