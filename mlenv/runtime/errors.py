"""The error type every mlenv module raises for what a user can fix.

The CLI (and the notebook API) prints `error: <message>` plus its hint and exits
with `exit_code`, never a traceback. It lives in the stdlib-only layer because the
installer that runs inside images raises it too; mlenv.errors adds the host-side
kinds (spec, lock, solve).
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


class InstallError(MlenvError):
    """An install could not complete (download, hash mismatch, interpreter)."""
