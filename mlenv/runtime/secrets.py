"""Credentials out of everything mlenv writes or prints: the one scrubber.

Every message, log line, registry record and JSON output goes through `scrub`:

- the userinfo of every URL in the text is removed (`https://user:token@host/x` ->
  `https://host/x`), unless it is made only of `${VAR}` references (and an optional
  literal user name before a `${VAR}` password, `__token__:${TOKEN}@`): those are not
  secrets, and a spec or an export that carries them must stay usable;
- every secret value mlenv holds in memory is masked as `****`: the values `${VAR}`
  references expanded to, passwords read from ~/.netrc, the userinfo of
  MLENV_INDEX_URL. The code that loads a secret calls `remember(value)`, so a
  message that quotes it anywhere, in any form, is masked without each call site
  knowing which secrets exist.

Stdlib only (this package is shipped into image build steps).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "****"

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
# scheme://userinfo@ inside a free text: the authority ends at whitespace, a slash, '?' or
# '#', and its userinfo at the last '@' in it (as URL parsers split it). Quotes and
# brackets may be part of a password, so they do not end it: masking too much is safe.
_USERINFO_IN_TEXT = re.compile(rf"({_SCHEME})([^\s/?#]*)@", re.ASCII)
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", re.ASCII)
_MIN_SECRET = 4  # shorter values (a user name "ci", an empty password) would mask ordinary words

_remembered: set[str] = set()


def remember(*values: str | None) -> None:
    """Mark values as secret for the rest of this process: `scrub` masks them wherever
    they appear (also percent-decoded). Called where a secret enters memory."""
    for value in values:
        if value and len(value) >= _MIN_SECRET:
            _remembered.add(value)
            decoded = unquote(value)
            if decoded != value and len(decoded) >= _MIN_SECRET:
                _remembered.add(decoded)


def split_userinfo(url: str) -> tuple[str, str | None, str]:
    """(scheme://, userinfo or None, rest) of a URL; ("", None, url) without scheme://."""
    m = re.match(_SCHEME, url, re.ASCII)
    if not m:
        return "", None, url
    scheme, rest = m.group(0), url[m.end() :]
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1 and i < end:
            end = i
    at = rest[:end].rfind("@")
    if at == -1:
        return scheme, None, rest
    return scheme, rest[:at], rest[at + 1 :]


def strip_credentials(url: str) -> str:
    """https://user:token@host/simple -> https://host/simple."""
    scheme, userinfo, rest = split_userinfo(url)
    return url if userinfo is None else scheme + rest


def _is_reference(part: str) -> bool:
    return bool(part) and not _REFERENCE.sub("", part)


def literal_userinfo(userinfo: str) -> bool:
    """Whether a URL's userinfo holds a credential written out (not only ${VAR} references)."""
    user, colon, password = userinfo.partition(":")
    if colon and password:
        return not _is_reference(password)
    return not _is_reference(user)


def has_literal_credential(url: str) -> bool:
    _, userinfo, _ = split_userinfo(url)
    return userinfo is not None and literal_userinfo(userinfo)


def _userinfo(m: re.Match[str]) -> str:
    return m.group(0) if not literal_userinfo(m.group(2)) else m.group(1)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """text without the literal userinfo of any URL in it, and with every secret (the
    given ones and those `remember`ed) masked as ****, longest first."""
    # every match holds "://": without one the scan (slow on long runs of letters and digits,
    # 100 ms over `mlenv versions --json` on 10,000 versions) cannot change anything
    out = _USERINFO_IN_TEXT.sub(_userinfo, text) if "://" in text else text
    masked = {s for s in secrets if s and len(s) >= _MIN_SECRET} | _remembered
    for secret in sorted(masked, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def references(text: str) -> list[str]:
    """The VAR names of the ${VAR} references in text, in order."""
    return [m.group(0)[2:-1] for m in _REFERENCE.finditer(text)]


def referenced_values(texts: Iterable[str | None], environ: dict[str, str] | None = None) -> list[str]:
    """The values the ${VAR} references in `texts` expand to (set variables only)."""
    env = os.environ if environ is None else environ
    return [env[name] for text in texts if text for name in references(text) if env.get(name)]


def remember_url(url: str) -> None:
    """Remember the password (or lone token) of a credentialed URL."""
    _, userinfo, _ = split_userinfo(url)
    if userinfo:
        user, colon, password = userinfo.partition(":")
        remember(password if colon else user)


__all__ = ["MASK", "has_literal_credential", "literal_userinfo", "referenced_values", "references", "remember",
           "remember_url", "scrub", "split_userinfo", "strip_credentials"]  # fmt: skip
