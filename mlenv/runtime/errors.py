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


class WriteError(MlenvError, OSError):
    """A file could not be written (disk full, no permission, read-only filesystem).

    It names the file (an ENOSPC from write() carries no file name of its own) and is
    an OSError too, so code that treats a failed cache write as a miss keeps doing so."""

    def __init__(self, path: object, exc: OSError):
        import errno as _errno

        hints = {
            _errno.ENOSPC: "free space on that filesystem (or move mlenv's cache: XDG_CACHE_HOME)",
            _errno.EDQUOT: "your disk quota is exhausted; free space",
            _errno.EACCES: "check the permissions of that directory",
            _errno.EPERM: "check the permissions of that directory",
            _errno.EROFS: "that filesystem is mounted read-only",
        }
        reason = exc.strerror or str(exc) or type(exc).__name__
        MlenvError.__init__(self, f"could not write {path}: {reason}", hint=hints.get(exc.errno or 0))
        self.errno = exc.errno
        self.strerror = exc.strerror
        self.filename = str(path)
