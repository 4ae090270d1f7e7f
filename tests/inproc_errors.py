"""Expected failures of in-process API calls, checked the way the CLI shows them: the
CLI prints `error: <message>` and `  hint: <hint>` (mlenv.cli.main), so an error a user
can fix must be an MlenvError whose message and hint are one line each. The rendering
itself (prefix, exit code, no traceback) is covered by one CLI test per command family."""

from __future__ import annotations

import pytest

from mlenv.errors import MlenvError


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """str() of the raised MlenvError (message, then its hint) once its message and hint are
    checked to be one line each; assert on the words with `in`, as the CLI tests did."""
    exc = excinfo.value
    assert isinstance(exc, MlenvError), f"{type(exc).__name__} is not an MlenvError: {exc}"
    assert exc.message.strip() and "\n" not in exc.message, repr(exc.message)
    assert exc.hint is None or "\n" not in exc.hint, repr(exc.hint)
    return str(exc)
