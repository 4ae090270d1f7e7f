"""The one exception type the CLI turns into a clean, single-line error.

Every module raises MlenvError (or a subclass) for bad input or an
environment problem the user can fix; the CLI prints `error: <message>`
and exits with `exit_code`, never a traceback.
"""

from __future__ import annotations


class MlenvError(Exception):
    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(MlenvError):
    """mlenv.toml is invalid. The message starts with file:line."""


class LockError(MlenvError):
    """mlenv.lock is missing, corrupt, tampered with or stale."""


class SolveError(MlenvError):
    """A solver could not produce a result (conflict, unknown package, network)."""


class StaleLockError(LockError):
    exit_code = 1
