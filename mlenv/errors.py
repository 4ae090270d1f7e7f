"""The errors mlenv raises for bad input or an environment problem the user can fix.

Every module raises MlenvError (or a subclass); the CLI prints `error: <message>`
(and `hint: ...`) and exits with `exit_code`, never a traceback. MlenvError and
InstallError are defined in the stdlib-only layer (mlenv.runtime.errors), because
the installer inside images raises them too.
"""

from __future__ import annotations

from .runtime.errors import InstallError, MlenvError

__all__ = ["MlenvError", "InstallError", "SpecError", "LockError", "SolveError"]


class SpecError(MlenvError):
    """mlenv.toml is invalid. The message starts with file:line."""


class LockError(MlenvError):
    """mlenv.lock is missing, corrupt, tampered with or stale."""


class SolveError(MlenvError):
    """A solver could not produce a result (conflict, unknown package, network)."""
