"""A Debian archive's signed indexes: InRelease verified with gpgv against the base
image's keyring, Release read from the verified text, Packages fetched by the
sha256 the Release gives and parsed with python-debian.

Why gpgv: it is the verifier apt itself runs on Debian 12 and Ubuntu (apt's gpgv
method), so a keyring the base's apt trusts is trusted the same way here: same
key formats, same expiry and revocation rules, no OpenPGP code of mlenv's own.
The Python verifiers were weighed: PGPy is unmaintained since 2022 and lacks
newer key types; pysequoia is maintained but young (0.1.x) and would be a
compiled dependency for a check apt's own tool already does. gpgv is the
Debian package `gpgv` (on macOS: GnuPG from Homebrew).

The verdict is apt's: at least one good signature (VALIDSIG) by a key of the
keyring, none bad (BADSIG, or a good one by an expired/revoked key does not
count), no MD5/SHA-1 signature digest; signatures by keys that are not in the
keyring are ignored (archives are signed by several keys). The Release text
mlenv parses is the one gpgv writes out as verified (--output), never the
InRelease bytes themselves, so nothing outside the signature can be read.

Release checks: Suite or Codename equals the source's suite (a signed Release of
another suite is refused), Valid-Until not passed, Date present. Packages index:
`<component>/binary-<arch>/Packages.xz` (else .gz, else plain) as listed in the
Release's SHA256 field, fetched from by-hash/SHA256/<hex> when the Release says
Acquire-By-Hash (no race with a mirror update), checked for size and sha256.

Host caches (<user cache>/mlenv/apt/): `indexes/<sha256>` the fetched compressed
indexes, content-addressed (written atomically, checked again on read);
`parsed/<sha256>.json` the fields of each package the resolver needs (parsing a
50 MB Packages file with python-debian takes ~5 s; reading this ~0.3 s).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlenvError
from .sources import Source

# the fields of a Packages stanza the resolver and the lock use
FIELDS = ("Package", "Version", "Architecture", "Multi-Arch", "Depends", "Pre-Depends", "Provides", "Conflicts",
          "Breaks", "Filename", "Size", "SHA256", "Priority", "Essential")  # fmt: skip
PARSED_FORMAT = "mlenv-apt-packages-v1"
WEAK_DIGESTS = {"1", "2"}  # OpenPGP hash algorithm ids: MD5, SHA-1 (apt refuses them too)
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._~%:-]*(/[A-Za-z0-9+._~%:-]+)*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ArchiveError(MlenvError):
    """An archive index could not be fetched, verified or read."""


def cache_dir() -> Path:
    from ..runtime.fetch import default_cache_root

    return default_cache_root() / "apt"


def fetch(url: str, *, timeout: float = 60.0) -> bytes:
    """GET url (http/https; the CA bundle of mlenv's downloads)."""
    import urllib.error
    import urllib.request

    from ..runtime.fetch import ssl_context as _ssl_context
    from ..runtime.secrets import scrub as _strip
    from ..settings import ca_bundle

    if not url.startswith(("http://", "https://")):
        raise ArchiveError(f"refusing to fetch {url[:120]!r}: only http(s) archives are read")
    req = urllib.request.Request(url, headers={"User-Agent": "mlenv"})
    try:
        with urllib.request.urlopen(
            req, timeout=timeout, context=_ssl_context(ca_bundle()) if url.startswith("https") else None
        ) as r:
            return r.read()
    except urllib.error.HTTPError as exc:
        raise ArchiveError(f"could not fetch {_strip(url)}: HTTP {exc.code}", hint=_hint(str(exc))) from None
    except Exception as exc:  # URLError, timeouts, TLS
        raise ArchiveError(f"could not fetch {_strip(url)}: {_strip(str(exc))[:200]}", hint=_hint(str(exc))) from None


def _hint(text: str) -> str | None:
    if "CERTIFICATE" in text.upper():
        return "a TLS-intercepting proxy? set MLENV_CA_BUNDLE (or SSL_CERT_FILE) to its CA bundle"
    return None


# --- OpenPGP: keyrings and gpgv -------------------------------------------------------


def dearmor(text: str) -> bytes:
    """The binary packets of every ASCII-armored block in text (RFC 4880 section 6):
    armor headers skipped, base64 body decoded, the CRC-24 checked when present."""
    out = b""
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    found = False
    while i < len(lines):
        if not (lines[i].startswith("-----BEGIN PGP ") and lines[i].rstrip().endswith("-----")):
            i += 1
            continue
        found = True
        i += 1
        while i < len(lines) and lines[i].strip() and ":" in lines[i]:  # armor headers
            i += 1
        body: list[str] = []
        crc = None
        while i < len(lines) and not lines[i].startswith("-----END PGP "):
            line = lines[i].strip()
            if line.startswith("=") and len(line) == 5:
                crc = line[1:]
            elif line:
                body.append(line)
            i += 1
        if i >= len(lines):
            raise ArchiveError("an armored OpenPGP block has no END line")
        try:
            data = base64.b64decode("".join(body), validate=True)
        except ValueError:
            raise ArchiveError("an armored OpenPGP block is not valid base64") from None
        if crc is not None:
            try:
                want = int.from_bytes(base64.b64decode(crc, validate=True), "big")
            except ValueError:
                raise ArchiveError("an armored OpenPGP block has a malformed checksum line") from None
            if crc24(data) != want:
                raise ArchiveError("an armored OpenPGP block fails its CRC-24 checksum")
        out += data
        i += 1
    if not found:
        raise ArchiveError("no armored OpenPGP block found")
    return out


def crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def keyring_bytes(data: bytes) -> bytes:
    """A keyring file as gpgv reads it: binary as is, armored (.asc) dearmored."""
    head = data.lstrip()[:64]
    if head.startswith(b"-----BEGIN PGP"):
        return dearmor(data.decode("ascii", errors="replace"))
    return data


def gpgv_binary() -> str:
    import shutil

    exe = os.environ.get("MLENV_GPGV") or shutil.which("gpgv")
    if not exe:
        raise ArchiveError(
            "gpgv is not installed: mlenv verifies apt indexes with it",
            hint="install it: `apt-get install gpgv` (Debian/Ubuntu), `brew install gnupg` (macOS)",
        )
    return exe


@dataclass
class Verdict:
    ok: bool
    reason: str
    signers: list[str]


def verify_clearsigned(data: bytes, keyrings: list[bytes], *, fingerprints: tuple[str, ...] = ()) -> bytes:
    """The signed text of a clearsigned document, verified by gpgv against keyrings
    (binary keyring bytes). fingerprints: only signatures by these keys count (apt's
    Signed-By fingerprint form). Raises ArchiveError with gpgv's reason otherwise."""
    if not keyrings:
        raise ArchiveError("no keyring to verify with")
    with tempfile.TemporaryDirectory(prefix="mlenv-gpgv-") as tmp:
        rings = []
        for n, ring in enumerate(keyrings):
            path = os.path.join(tmp, f"keyring-{n}.gpg")
            with open(path, "wb") as fh:
                fh.write(ring)
            rings += ["--keyring", path]
        doc = os.path.join(tmp, "InRelease")
        out = os.path.join(tmp, "Release")
        with open(doc, "wb") as fh:
            fh.write(data)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "GNUPGHOME": tmp}
        try:
            proc = subprocess.run(
                [gpgv_binary(), "--status-fd", "1", *rings, "--output", out, doc],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ArchiveError(f"gpgv could not run: {exc}") from None
        verdict = judge(proc.stdout, fingerprints)
        if not verdict.ok:
            raise ArchiveError(verdict.reason)
        try:
            with open(out, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise ArchiveError("gpgv verified no signed text") from None


def judge(status: str, fingerprints: tuple[str, ...] = ()) -> Verdict:
    """apt's verdict over gpgv's --status-fd lines (see the module docstring)."""
    good: list[str] = []
    bad: list[str] = []
    weak: list[str] = []
    missing: list[str] = []
    other: list[str] = []
    wanted = {f.upper().rstrip("!") for f in fingerprints}
    for line in status.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        word, *args = line[len("[GNUPG:] ") :].split()
        if word == "VALIDSIG" and len(args) >= 9:
            fpr, primary = args[0].upper(), (args[9].upper() if len(args) > 9 else args[0].upper())
            if args[7] in WEAK_DIGESTS:
                weak.append(fpr)
            elif not wanted or fpr in wanted or primary in wanted:
                good.append(primary)
        elif word == "BADSIG":
            bad.append(args[0] if args else "?")
        elif word in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            other.append(f"{word.lower()} {args[0] if args else '?'}")
        elif word in ("NO_PUBKEY", "ERRSIG"):
            missing.append(args[0] if args else "?")
    if bad:
        return Verdict(False, f"BAD signature by key {bad[0]}: the file was altered", [])
    if good:
        return Verdict(True, "", sorted(set(good)))
    if weak:
        return Verdict(False, f"signed only with a weak digest (MD5/SHA-1) by {weak[0]}", [])
    if other:
        return Verdict(False, f"no valid signature ({', '.join(other)})", [])
    if missing:
        return Verdict(
            False,
            f"no signature by a key of the base image's keyring (signed by {', '.join(sorted(set(missing)))})",
            [],
        )
    return Verdict(False, "no OpenPGP signature found", [])


# --- Release and Packages -------------------------------------------------------------


@dataclass
class Release:
    source: Source
    date: str  # the Date field as written
    timestamp: int  # Date as seconds since the epoch
    by_hash: bool
    files: dict[str, tuple[str, int]]  # path -> (sha256, size)
    architectures: tuple[str, ...]


def parse_release(text: str, source: Source, *, now: float | None = None) -> Release:
    """Release fields from the verified text (python-debian)."""
    import time
    from email.utils import parsedate_to_datetime

    from debian.deb822 import Release as DebRelease

    where = f"Release of {source.dist_url}"
    try:
        rel = DebRelease(text)
        fields = {str(k).lower(): v for k, v in rel.items()}
        entries = rel.get("SHA256") or []
    except Exception as exc:
        raise ArchiveError(f"{where}: malformed ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not source.flat:
        names = {str(fields.get("suite", "")).strip(), str(fields.get("codename", "")).strip()}
        if source.suite not in names:
            raise ArchiveError(
                f"{where}: signed for suite {sorted(n for n in names if n)} but the base asks for "
                f"{source.suite!r}: refusing a Release of another suite"
            )
    date = str(fields.get("date", "")).strip()
    try:
        stamp = int(parsedate_to_datetime(date).timestamp())
    except (TypeError, ValueError, IndexError):
        raise ArchiveError(f"{where}: no valid Date field") from None
    until = str(fields.get("valid-until", "")).strip()
    if until:
        try:
            expires = parsedate_to_datetime(until).timestamp()
        except (TypeError, ValueError, IndexError):
            raise ArchiveError(f"{where}: malformed Valid-Until") from None
        if expires < (time.time() if now is None else now):
            raise ArchiveError(
                f"{where}: expired (Valid-Until {until}): a stale or replayed index",
                hint="try again later, or check the mirror",
            )
    files: dict[str, tuple[str, int]] = {}
    for e in entries if isinstance(entries, list) else []:
        try:
            sha, size, name = str(e["sha256"]).lower(), int(e["size"]), str(e["name"])
        except (KeyError, TypeError, ValueError):
            continue
        if SHA256_RE.match(sha) and size >= 0 and FILENAME_RE.match(name) and ".." not in name.split("/"):
            files[name] = (sha, size)
    return Release(
        source,
        date,
        stamp,
        str(fields.get("acquire-by-hash", "")).strip().lower() == "yes",
        files,
        tuple(str(fields.get("architectures", "")).split()),
    )


def packages_entry(release: Release, component: str, arch: str) -> tuple[str, str, int] | None:
    """(path, sha256, size) of the best Packages index for component/arch, None if absent."""
    base = "" if release.source.flat else f"{component}/binary-{arch}/"
    for suffix in (".xz", ".gz", ""):
        path = f"{base}Packages{suffix}"
        if path in release.files:
            sha, size = release.files[path]
            return path, sha, size
    return None


def fetch_index(release: Release, path: str, sha: str, size: int) -> bytes:
    """The decompressed index, from the cache or the mirror (size and sha256 checked)."""
    cached = cache_dir() / "indexes" / sha
    data = None
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            cached.unlink(missing_ok=True)
            data = None
        else:
            os.utime(cached)
    if data is None:
        directory = posix_dir(path)
        url = release.source.dist_url + (f"{directory}by-hash/SHA256/{sha}" if release.by_hash else path)
        data = fetch(url, timeout=300)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            raise ArchiveError(f"{url}: size/sha256 do not match the signed Release (a mirror mid-update? try again)")
        from ..runtime.fsutil import atomic_write

        atomic_write(cached, data)
    return decompress(data, path)


def posix_dir(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/" if "/" in path else ""


def decompress(data: bytes, path: str) -> bytes:
    import gzip
    import lzma

    try:
        if path.endswith(".xz"):
            return lzma.decompress(data)
        if path.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path}: cannot decompress ({exc})") from None
    return data


def parse_packages(data: bytes, where: str) -> list[dict[str, str]]:
    """Every stanza of a Packages index, only FIELDS, values as strings (python-debian)."""
    from debian.deb822 import Packages

    logging.getLogger("debian.deb822").setLevel(logging.ERROR)  # lenient parse; mlenv validates what it uses
    out = []
    try:
        for stanza in Packages.iter_paragraphs(data.splitlines(keepends=True), use_apt_pkg=False, fields=list(FIELDS)):
            rec = {k: str(v).strip() for k, v in stanza.items() if k in FIELDS}
            if rec.get("Package") and rec.get("Version"):
                out.append(rec)
    except Exception as exc:
        raise ArchiveError(f"{where}: malformed Packages index ({type(exc).__name__}: {str(exc)[:120]})") from None
    return out


def packages_records(release: Release, component: str, arch: str) -> list[dict[str, str]]:
    """The records of one Packages index, through the parsed cache."""
    entry = packages_entry(release, component, arch)
    if entry is None:
        what = f"{component}/binary-{arch}" if not release.source.flat else "Packages"
        raise ArchiveError(
            f"{release.source.dist_url}: the signed Release lists no {what} index"
            + (f" (architectures: {' '.join(release.architectures)})" if release.architectures else ""),
            hint=f"the base's source {release.source.origin} has no packages for {arch}",
        )
    path, sha, size = entry
    parsed = cache_dir() / "parsed" / f"{sha}.json"
    if parsed.is_file():
        try:
            blob = json.loads(parsed.read_text(encoding="utf-8"))
            if (
                blob.get("format") == PARSED_FORMAT
                and blob.get("sha256") == sha
                and isinstance(blob.get("records"), list)
            ):
                os.utime(parsed)
                return [r for r in blob["records"] if isinstance(r, dict)]
        except (OSError, ValueError):
            pass
    records = parse_packages(fetch_index(release, path, sha, size), f"{release.source.dist_url}{path}")
    from ..runtime.fsutil import atomic_write

    atomic_write(
        parsed,
        json.dumps({"format": PARSED_FORMAT, "sha256": sha, "records": records}, separators=(",", ":"), sort_keys=True),
    )
    return records


def read_release(source: Source, keyrings: list[bytes], fingerprints: tuple[str, ...] = ()) -> Release:
    """Fetch InRelease, verify it, parse it."""
    url = source.dist_url + "InRelease"
    data = fetch(url)
    try:
        text = verify_clearsigned(data, keyrings, fingerprints=fingerprints)
    except ArchiveError as exc:
        raise ArchiveError(
            f"{url}: signature check failed: {exc.message}",
            hint=exc.hint or f"the keyring of the base image's source ({source.origin}) does not vouch for this index",
        ) from None
    return parse_release(text.decode("utf-8", errors="replace"), source)
