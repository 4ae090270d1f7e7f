"""Reading untrusted files: size limits, UTF-8, bounded TOML nesting, quoting in messages.

Every parser of an input mlenv does not control (a spec, a lock, the settings file, an
imported environment file, a registry record) reads through here, so the limits are
one set of numbers (docs/security.md, "Validation rules"):

- a file larger than its limit is refused before it is parsed (MAX_*_BYTES);
- bytes that are not UTF-8 are one error naming the file and the byte offset;
- arrays and inline tables nest at most MAX_DEPTH deep (checked before tomllib, which
  recurses and would otherwise raise RecursionError on a few hundred levels);
- a value quoted in an error message is cut to QUOTE_LIMIT characters (`quote`), so a
  1 MB key is never echoed.

Stdlib only and cheap: `mlenv lock` on a fresh lock goes through here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .errors import MlenvError

MAX_SPEC_BYTES = 1 << 20  # mlenv.toml: 1 MiB (a large real spec is a few KB)
MAX_LOCK_BYTES = 64 << 20  # mlenv.lock: 64 MiB (five platforms of a CUDA stack are ~2 MB)
MAX_SETTINGS_BYTES = 64 << 10  # config.toml: 64 KiB
MAX_IMPORT_BYTES = 8 << 20  # environment.yml, requirements.txt, pyproject.toml, pylock.toml, Azure YAML
MAX_DEPTH = 16  # nesting of arrays / inline tables (mlenv's own formats use at most 3)
QUOTE_LIMIT = 80  # characters of a value quoted in a message

# Characters that never belong in a name, version, URL or path: C0 controls, DEL, C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_TAB_NL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr(value) cut to `limit` characters, with how much was left out."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def has_control(text: str, *, allow_newlines: bool = False) -> bool:
    """Whether text holds a control character (tab and newline allowed with allow_newlines)."""
    return bool((_CONTROL_BUT_TAB_NL if allow_newlines else _CONTROL).search(text))


def read_text(path: str | Path, limit: int, error: type[MlenvError], what: str, *, hint: str | None = None) -> str:
    """The UTF-8 text of path, refused (as `error`) above `limit` bytes or when not UTF-8.
    FileNotFoundError is left to the caller (each has its own hint)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {what}", hint=hint) from None
    return decode(data, path, limit, error, what, hint=hint)


def decode(
    data: bytes, where: object, limit: int, error: type[MlenvError], what: str, *, hint: str | None = None
) -> str:
    """`data` as UTF-8 text, or one `error` naming `where`."""
    if len(data) > limit:
        raise error(f"{where}: larger than {limit} bytes; refusing to read it as {what}", hint=hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}); not a valid {what}", hint=hint
        ) from None


_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_skip: re.Pattern[str] | None = None


def _toml_skip() -> re.Pattern[str]:
    """Strings and comments, where brackets do not count (compiled on first need: the
    common case never needs it). Unrolled-loop forms keep the regex linear."""
    global _skip
    if _skip is None:
        _skip = re.compile(
            r'"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""'
            r"|'''[^']*(?:'(?!'')[^']*)*'''"
            r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
            r"|'[^'\n]*'"
            r"|#[^\n]*",
            re.S,
        )
    return _skip


def _deepest(brackets: str) -> int:
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif depth:
            depth -= 1
    return deepest


def toml_depth(text: str) -> int:
    """How deep arrays and inline tables nest in TOML text (table headers count as 1 or 2).

    Cheapest first: a text with few brackets cannot nest deep; then every bracket counts,
    strings included, which overestimates only when a string holds unbalanced openers;
    only then are strings and comments taken out for the exact answer."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    rough = _deepest(_NOT_BRACKET.sub("", text))
    if rough <= MAX_DEPTH:
        return rough
    return _deepest(_NOT_BRACKET.sub("", _toml_skip().sub("", text)))


def _depth_line(text: str) -> int:
    """1-based line where nesting first exceeds MAX_DEPTH (error path only)."""
    skip = _toml_skip()
    depth, pos = 0, 0
    while pos < len(text):
        m = skip.match(text, pos)
        if m:
            pos = m.end()
            continue
        ch = text[pos]
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, pos) + 1
        elif ch in "]}" and depth:
            depth -= 1
        pos += 1
    return 1


def loads_toml(
    text: str,
    where: object,
    error: type[MlenvError],
    *,
    hint: str | None = None,
    lines: bool = True,
    label: str = "invalid TOML",
) -> dict[str, Any]:
    """tomllib.loads with bounded nesting; every failure is one `error` starting with
    `where:LINE:` (or `where:` when lines is False), then `label`."""
    if toml_depth(text) > MAX_DEPTH:
        at = f"{where}:{_depth_line(text)}" if lines else f"{where}"
        raise error(f"{at}: {label}: arrays or inline tables nested deeper than {MAX_DEPTH} levels", hint=hint)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = m.group(1) if m else "1"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        at = f"{where}:{line}" if lines else f"{where}"
        raise error(f"{at}: {label}: {msg}" + ("" if lines or not m else f" (line {line})"), hint=hint) from None
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise error(f"{where}: {label}: nested too deeply to parse", hint=hint) from None


__all__ = [
    "MAX_DEPTH",
    "MAX_IMPORT_BYTES",
    "MAX_LOCK_BYTES",
    "MAX_SETTINGS_BYTES",
    "MAX_SPEC_BYTES",
    "QUOTE_LIMIT",
    "decode",
    "has_control",
    "loads_toml",
    "quote",
    "read_text",
    "toml_depth",
]
