"""find-links pages: an HTML page (or a local directory) listing distribution files,
as pip and uv read them (`--find-links`). mlenv reads one only to check that it is
healthy before a solve: a page that answers with an error, or a 200 that links no
distribution file (a login page, a proxy's block page), fails the lock instead of
letting uv fall back to another source. uv does the resolving.

Parsing uses the standard library's html.parser (tolerant of broken HTML, no
network, no entity surprises): every `<a href>`, resolved against the page URL or
its `<base href>`, kept when its last path segment is a distribution file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

from ..reqforms import ARCHIVE_SUFFIXES

MAX_LINKS = 200_000
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Link:
    url: str  # absolute, without the fragment
    filename: str
    sha256: str | None = None
    requires_python: str | None = None


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if len(self.anchors) >= MAX_LINKS:
            return
        values = dict(attrs)
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "a" and values.get("href"):
            self.anchors.append((str(values["href"]), values.get("data-requires-python")))


def parse_links(html: str, page_url: str) -> list[Link]:
    """The distribution files an HTML find-links page links to, in page order, unique by URL."""
    parser = _Anchors()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on pathological input
        pass
    base = page_url
    if parser.base:
        base = urljoin(page_url, parser.base.strip())
    seen: set[str] = set()
    out: list[Link] = []
    for href, requires in parser.anchors:
        href = href.strip()
        if not href or any(ord(c) < 0x20 for c in href):
            continue
        try:
            absolute = urljoin(base, href)
            parts = urlsplit(absolute)
        except ValueError:
            continue
        if parts.scheme not in ("http", "https", "file"):
            continue
        url, _, fragment = absolute.partition("#")
        filename = unquote(parts.path.rsplit("/", 1)[-1])
        if not filename.endswith(ARCHIVE_SUFFIXES) or "/" in filename or url in seen:
            continue
        seen.add(url)
        sha = None
        m = re.search(r"(?:^|&)sha256=([0-9a-fA-F]{64})(?:&|$)", fragment)
        if m:
            sha = m.group(1).lower()
        out.append(Link(url, filename, sha, requires.strip() if requires else None))
    return out
