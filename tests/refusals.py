"""Refusals of untrusted input, checked two ways (issue 10):

- in-process, `one_line(excinfo)`: the `MlenvError` an API call raised has a one-line
  message (what, where) and returns `str()` of it (message plus hint, as the CLI prints it);
- at the command line, `cli_refused(proc)`: the one test per command family that proves an
  MlenvError renders as one `error:` line (plus its hint), its exit code, and no traceback.
"""

from __future__ import annotations

import subprocess

import pytest

from mlenv.errors import MlenvError


def one_line(excinfo: pytest.ExceptionInfo[MlenvError], *, code: int | None = None) -> str:
    """The refusal's text (message and hint); its message is one line and, when `code` is
    given, its exit code is that."""
    err = excinfo.value
    assert isinstance(err, MlenvError), repr(err)
    assert err.message and "\n" not in err.message, repr(err.message)
    assert err.hint is None or "\n" not in err.hint, repr(err.hint)
    if code is not None:
        assert err.exit_code == code, (err.exit_code, str(err))
    return str(err)


def cli_refused(proc: subprocess.CompletedProcess, *, code: int = 2) -> str:
    """A refused command as a user sees it: exit `code`, no traceback, exactly one `error:`
    line (after any progress lines), at most a `hint:` line after it; returns the error line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    rest = lines[errors[0] + 1 :]
    assert len(rest) <= 1 and all(line.startswith("  hint: ") for line in rest), proc.stderr
    return lines[errors[0]]
