"""In-process helpers for the lock, spec and settings tests (tests/solve/, test_spec.py,
test_settings.py): `Said`, a progress / on_warning callable that keeps every message the CLI
would print, so a test can assert that no secret reaches any of them. (Expected errors:
tests/refusals.py.)"""

from __future__ import annotations


class Said:
    """Every message a call reported (pass as `progress=` and `on_warning=`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
