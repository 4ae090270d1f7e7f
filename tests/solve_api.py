"""In-process helpers for the lock, spec and settings tests (tests/solve/, test_spec.py,
test_settings.py): they call the API (`import mlenv`) where the CLI is not the subject.

- `mlenv_error(kind, exit_code=2)`: an expected MlenvError, checked to be what the CLI
  prints as one `error:` line (plus its hint, and a solver's indented explanation) and
  exits with `exit_code`.
- `Said`: a progress / on_warning callable that keeps every message the CLI would print,
  so a test can assert that no secret reaches any of them.
- `error_line(err)`: the head line of an error, what the CLI prints after `error: `.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mlenv.errors import MlenvError


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


class Said:
    """Every message a call reported (pass as `progress=` and `on_warning=`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def error_line(err: MlenvError) -> str:
    """The head line of an error's message: what the CLI prints after `error: `."""
    return err.message.split("\n", 1)[0]
