"""Credentials out of everything mlenv writes or prints: one scrubber.

A URL's userinfo (`https://user:token@host/...`) is removed from messages, logs,
locks, registry records and JSON output; known secret strings (the expanded value
of a `${VAR}` in an index URL, say) are masked wherever they appear."""

from __future__ import annotations

import re

# userinfo runs to the LAST "@" before the path: a password may hold an unencoded "@"
_USERINFO_URL = re.compile(r"\A([a-zA-Z][a-zA-Z0-9+.-]*://)[^/]*@")
_USERINFO_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s`'\"]*@")


def strip_credentials(url: str) -> str:
    """https://user:token@host/simple -> https://host/simple."""
    return _USERINFO_URL.sub(r"\1", url)


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """text with every URL's userinfo removed and every given secret masked as ***."""
    text = _USERINFO_TEXT.sub(r"\1", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
