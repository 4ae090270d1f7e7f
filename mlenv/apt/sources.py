"""A base image's apt sources: sources.list one-line entries and deb822 `.sources`
files (sources.list(5)), in apt's order: /etc/apt/sources.list, then the files of
/etc/apt/sources.list.d sorted by name (`*.list` and `*.sources` whose names apt
accepts: letters, digits, `_`, `-`, `.`).

Kept: `deb` entries with an http(s) URI (one entry per suite), their components,
`arch=`/`Architectures`, `signed-by=`/`Signed-By` (keyring paths, fingerprints, or
an inline ASCII-armored key block), and flat repositories (a suite ending in `/`,
no components). Left out with a note: `deb-src`, disabled entries (`Enabled: no`),
URIs apt fetches another way (file:, cdrom:, mirror+, tor+). Refused: `trusted=yes`
(mlenv verifies every index it reads). The one-line format is split by hand (it
is a whitespace-separated line with one optional `[ ... ]` option group); deb822
stanzas are read with python-debian. Every input is the base image's, untrusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import MlenvError

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+\.(list|sources)$")
LIST_DIR = "/etc/apt/sources.list.d"
MAIN_LIST = "/etc/apt/sources.list"
ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"


class SourcesError(MlenvError):
    """A base image's apt sources cannot be read."""


@dataclass(frozen=True)
class Source:
    uri: str  # without a trailing slash
    suite: str  # "bookworm", or for a flat repository the path ending in "/"
    components: tuple[str, ...]
    architectures: tuple[str, ...] = ()  # empty: the native one
    signed_by: tuple[str, ...] = ()  # keyring paths or fingerprints
    signed_by_key: str = ""  # an inline armored key block
    origin: str = ""  # file:line it came from (messages)

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")

    @property
    def dist_url(self) -> str:
        """Where InRelease lives."""
        if self.flat:
            return self.uri + "/" + self.suite.strip("/") + ("/" if self.suite.strip("/") else "")
        return f"{self.uri}/dists/{self.suite}/"


@dataclass
class Sources:
    sources: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_sources(files: list[tuple[str, str]], arch: str) -> Sources:
    """files: (path in the image, text) in apt's order (see sources_files())."""
    out = Sources()
    for path, text in files:
        if path.endswith(".sources"):
            parse_deb822(text, path, arch, out)
        else:
            parse_one_line(text, path, arch, out)
    return out


def sources_files(names: list[str] | None) -> list[str]:
    """The files of sources.list.d apt reads, in its order (names from the image)."""
    return [f"{LIST_DIR}/{n}" for n in sorted(names or []) if NAME_RE.match(n)]


def _check_uri(uri: str, where: str, out: Sources) -> str | None:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https"):
        from urllib.parse import urlsplit

        try:
            netloc = urlsplit(uri).netloc
        except ValueError:
            netloc = ""
        if not netloc or "@" in netloc or re.search(r"[\s\"'\\<>]", uri) or not uri.isprintable():
            raise SourcesError(f"{where}: unusable URI {uri[:120]!r} (a host, and no credentials or spaces)")
        return uri.rstrip("/")
    out.notes.append(f"{where}: {scheme or 'a'} source {uri[:80]!r} is not fetched over http(s): left out")
    return None


def _add(
    out: Sources,
    where: str,
    uri: str,
    suites: list[str],
    components: list[str],
    options: dict[str, list[str]],
    arch: str,
    inline_key: str = "",
) -> None:
    if "trusted" in options and options["trusted"] and options["trusted"][0].lower() in ("yes", "true"):
        raise SourcesError(
            f"{where}: a source marked trusted=yes skips signature checks; mlenv verifies every index",
            hint="sign the repository and give its keyring with signed-by= in the base image",
        )
    clean = _check_uri(uri, where, out)
    if clean is None:
        return
    archs = tuple(a.replace("$(ARCH)", arch) for a in options.get("arch", []) + options.get("architectures", []))
    signed = tuple(options.get("signed-by", []))
    for suite in suites:
        suite = suite.replace("$(ARCH)", arch)
        if not suite or not re.fullmatch(r"[A-Za-z0-9_.~+/-]+", suite) or ".." in suite.split("/"):
            raise SourcesError(f"{where}: invalid suite {suite[:80]!r}")
        if suite.endswith("/") and components:
            raise SourcesError(f"{where}: a flat repository ({suite}) takes no components")
        if not suite.endswith("/") and not components:
            raise SourcesError(f"{where}: suite {suite} names no component (e.g. main)")
        for comp in components:
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*", comp) or ".." in comp.split("/"):
                raise SourcesError(f"{where}: invalid component {comp[:80]!r}")
        out.sources.append(Source(clean, suite, tuple(components), archs, signed, inline_key, where))


def parse_one_line(text: str, path: str, arch: str, out: Sources) -> None:
    """`deb [ opt=val,val ... ] uri suite [component ...]` per line; `#` starts a comment."""
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        kind = kind.strip()
        if kind == "deb-src":
            continue
        if kind != "deb":
            raise SourcesError(f"{where}: not a sources.list entry: {raw.strip()[:120]!r}")
        rest = rest.strip()
        options: dict[str, list[str]] = {}
        if rest.startswith("["):
            body, sep, rest = rest[1:].partition("]")
            if not sep:
                raise SourcesError(f"{where}: an option group `[` is not closed")
            for opt in body.split():
                key, eq, value = opt.partition("=")
                key = key.strip().lower()
                if not eq or not key:
                    raise SourcesError(f"{where}: option {opt[:60]!r} is not key=value")
                for suffix in ("+", "-"):  # arch+=, arch-=: add or remove; treated as setting
                    key = key.rstrip(suffix)
                options.setdefault(key, []).extend(v for v in value.split(",") if v)
        words = rest.split()
        if len(words) < 2:
            raise SourcesError(f"{where}: an entry needs a URI and a suite: {raw.strip()[:120]!r}")
        _add(out, where, words[0], [words[1]], words[2:], options, arch)


def parse_deb822(text: str, path: str, arch: str, out: Sources) -> None:
    """deb822 stanzas: Types, URIs, Suites, Components, Architectures, Signed-By, Enabled, Trusted."""
    from debian.deb822 import Deb822

    try:
        stanzas = list(Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False))
    except Exception as exc:  # python-debian raises several types on malformed input
        raise SourcesError(f"{path}: not a deb822 sources file ({type(exc).__name__}: {str(exc)[:120]})") from None
    for n, stanza in enumerate(stanzas, 1):
        where = f"{path} (stanza {n})"
        fields = {str(k).lower(): str(v) for k, v in stanza.items()}
        if fields.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        types = fields.get("types", "").split()
        if not types:
            raise SourcesError(f"{where}: no Types field")
        if "deb" not in types:
            continue
        uris = fields.get("uris", "").split()
        suites = fields.get("suites", "").split()
        if not uris or not suites:
            raise SourcesError(f"{where}: a stanza needs URIs and Suites")
        options: dict[str, list[str]] = {}
        if "architectures" in fields:
            options["arch"] = fields["architectures"].split()
        if "trusted" in fields:
            options["trusted"] = [fields["trusted"].strip()]
        signed = fields.get("signed-by", "").strip()
        inline = ""
        if ARMOR_BEGIN in signed:
            inline = "\n".join("" if ln.strip() == "." else ln.strip() for ln in signed.splitlines())
        elif signed:
            options["signed-by"] = signed.replace(",", " ").split()
        for uri in uris:
            _add(out, where, uri, suites, fields.get("components", "").split(), options, arch, inline)
