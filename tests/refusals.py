"""Expected errors, checked two ways (issue 10): the one home of these helpers.

- in-process, `one_line(excinfo)`: the `MlenvError` an API call raised has a one-line
  message (what, where) and returns `str()` of it (message plus hint, as the CLI prints it);
- in-process, `with mlenv_error(kind, exit_code=2) as e:` for errors that may carry an
  indented explanation under their one head line (a solver's), and `error_line(err)`, that
  head line;
- at the command line, `cli_refused(proc)`: the one test per command family that proves an
  MlenvError renders as one `error:` line (plus its hint), its exit code, and no traceback.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def mlenv_error(kind: type[MlenvError] = MlenvError, *, exit_code: int = 2) -> Iterator[pytest.ExceptionInfo]:
    """`with mlenv_error(SolveError) as e: mlenv.lock(d)`, then `str(e.value)`: the call raised
    `kind` with the CLI's exit code, and a message the CLI prints as one `error:` line: one head
    line, then only indented detail (a solver's explanation), and a one-line hint."""
    with pytest.raises(kind) as info:
        yield info
    err = info.value
    head, *detail = err.message.split("\n")
    assert head.strip() and all(not line or line[0].isspace() for line in detail), err.message
    assert err.hint is None or "\n" not in err.hint, err.hint
    assert err.exit_code == exit_code, (err.exit_code, str(err))


def error_line(err: MlenvError) -> str:
    """The head line of an error's message: what the CLI prints after `error: `."""
    return err.message.split("\n", 1)[0]
