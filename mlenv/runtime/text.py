"""Small text helpers for messages: one home for each."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def clip(text: str, limit: int = 200) -> str:
    """text cut to `limit` characters with an ellipsis: messages quote untrusted
    input, and a 1 MB key must not come back as a 1 MB error line."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as docker prints them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
