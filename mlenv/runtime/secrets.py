"""Credentials in URLs: the one scrubber every message, log, record and JSON output uses.

Stdlib only (this package is shipped into images). Three questions, three functions:

- `strip_credentials(url)`: the URL without its userinfo (`https://user:tok@host/x` ->
  `https://host/x`), for locks, hashes, logs and messages.
- `scrub(text, secrets=())`: every URL in a free text loses its userinfo, and every
  string in `secrets` (say, the values `${VAR}` references expanded to) becomes `****`.
  For solver output, tool stderr, error messages.
- `has_literal_credential(url)`: whether the URL carries a credential written out in
  full rather than as a `${VAR}` reference (the spec rule: docs/security.md, "Secrets").

The userinfo of a URL is what sits between `scheme://` and the last `@` before the
first `/`, `?` or `#` (RFC 3986 authority). A userinfo may hold `@` when percent-encoded
only, but tools print it raw, so the last `@` is the one that counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "****"

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
# scheme://userinfo@ inside a free text: the userinfo stops at whitespace, a slash,
# '?', '#' or a quote/backtick/bracket that tools put around URLs.
_USERINFO_IN_TEXT = re.compile(rf"({_SCHEME})[^\s/?#'\"`<>()\[\]]*@", re.ASCII)
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", re.ASCII)


def split_userinfo(url: str) -> tuple[str, str | None, str]:
    """(scheme://, userinfo or None, rest) of a URL; ("", None, url) when it has no scheme://."""
    m = re.match(_SCHEME, url, re.ASCII)
    if not m:
        return "", None, url
    scheme, rest = m.group(0), url[m.end() :]
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1 and i < end:
            end = i
    authority = rest[:end]
    at = authority.rfind("@")
    if at == -1:
        return scheme, None, rest
    return scheme, authority[:at], rest[at + 1 :]


def strip_credentials(url: str) -> str:
    """https://user:token@host/simple -> https://host/simple (for locks, hashes, logs)."""
    scheme, userinfo, rest = split_userinfo(url)
    return url if userinfo is None else scheme + rest


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the userinfo of any URL in it, and with every non-empty string of
    `secrets` replaced by ****, longest first (so a secret that contains another one
    goes whole)."""
    out = _USERINFO_IN_TEXT.sub(r"\1", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def _is_reference(part: str) -> bool:
    """True when `part` is made only of ${VAR} references (at least one)."""
    return bool(part) and not _REFERENCE.sub("", part)


def has_literal_credential(url: str) -> bool:
    """Whether `url` carries a credential written out in full.

    - `user:password@`: literal when the password is not only `${VAR}` references
      (a literal user name with a `${VAR}` password is fine: `__token__:${TOKEN}@`);
    - `token@` (no colon, or an empty password): literal unless it is only `${VAR}`
      references, since a lone userinfo is how tokens travel (`https://<token>@host`)."""
    _, userinfo, _ = split_userinfo(url)
    if userinfo is None:
        return False
    user, colon, password = userinfo.partition(":")
    if colon and password:
        return not _is_reference(password)
    return not _is_reference(user)


def references(text: str) -> list[str]:
    """The VAR names of the ${VAR} references in text, in order."""
    return [m.group(0)[2:-1] for m in _REFERENCE.finditer(text)]


def referenced_values(texts: Iterable[str | None], environ: dict[str, str] | None = None) -> list[str]:
    """The values the ${VAR} references in `texts` expand to (set variables only): what
    `scrub` must mask in the output of a tool that was given the expanded URLs."""
    env = os.environ if environ is None else environ
    return [env[name] for text in texts if text for name in references(text) if env.get(name)]


__all__ = [
    "MASK",
    "has_literal_credential",
    "referenced_values",
    "references",
    "scrub",
    "split_userinfo",
    "strip_credentials",
]
