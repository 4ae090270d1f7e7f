"""Before a solve: does every source the spec declares answer?

uv treats an index that answers a project page with an error (a 403 from a proxy
that blocks the host, a 401, a 5xx) as "not here" and takes the package from the
next index, so an unreachable CPU-only PyTorch index silently gave PyPI's CUDA
build. mlenv checks each declared source first, in parallel with uv's resolution
(so it costs one round trip on the solve path only), and fails the lock naming the
source when it does not answer properly:

- an index (`index-url`, `extra-index-urls`): a HEAD of its root and a GET of the
  project page of up to PROBE_PROJECTS of the spec's direct requirements (PEP 503
  `<index>/<name>/`; the connection is closed after the status line). Healthy when
  some probe answers 2xx/3xx, or when every probe answers 404 (the index works but
  has none of these projects; many indexes 404 their root). Anything else (no
  answer, TLS failure, 401/403/407, 5xx) is an error;
- a find-links page: a GET that must answer 2xx with HTML linking at least one
  distribution file (mlenv.solve.findlinks); a file:// page or directory must exist
  and list one;
- a git repository: `git ls-remote` (mlenv.wheelbuild.git), which also gives the
  commits the refs name now.

Credentials: the expanded `${VAR}` userinfo of the URL (memory only), else
~/.netrc; TLS against the CA bundle setting. Messages carry URLs without
credentials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..errors import SolveError

PROBE_PROJECTS = 3
TIMEOUT = 20
MAX_PAGE = 64 << 20


@dataclass(frozen=True)
class Probe:
    kind: str  # "index" | "find-links"
    url: str  # expanded: may carry credentials (memory only)


@dataclass
class Answer:
    url: str  # without credentials
    status: int | None  # HTTP status, None: no answer
    reason: str = ""
    body: bytes | None = None


def _shown(url: str) -> str:
    from ..runtime.secrets import strip_credentials

    return strip_credentials(url)


def _request(url: str, *, method: str, ca_bundle: str | None, read: bool = False) -> Answer:
    import base64
    import urllib.error
    import urllib.request

    from ..runtime.fetch import netrc_auth, ssl_context

    parts = urlsplit(url)
    auth = None
    plain = url
    if parts.username is not None or "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        auth = unquote(userinfo)
        plain = url.replace(parts.netloc, host, 1)
    auth = auth or netrc_auth(parts.hostname or "")
    req = urllib.request.Request(plain, method=method, headers={"User-Agent": "mlenv", "Accept": "text/html, */*"})
    if auth:
        user, _, password = auth.partition(":")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_unredirected_header("Authorization", f"Basic {token}")
    shown = _shown(url)
    try:
        ctx = ssl_context(ca_bundle) if parts.scheme == "https" else None
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=ctx) as resp:
            body = resp.read(MAX_PAGE + 1) if read else None
            return Answer(shown, resp.status, "", body)
    except urllib.error.HTTPError as exc:
        return Answer(shown, exc.code, f"HTTP {exc.code} {exc.reason}")
    except Exception as exc:  # URLError, TLS, timeouts, connection resets
        from ..runtime.secrets import scrub

        reason = getattr(exc, "reason", exc)
        return Answer(shown, None, scrub(str(reason))[:200] or type(exc).__name__)


def _index(url: str, projects: list[str], ca_bundle: str | None) -> tuple[str | None, bool]:
    """(error or None, all-404) for one index."""
    from concurrent.futures import ThreadPoolExecutor

    root = url.rstrip("/") + "/"
    if urlsplit(url).scheme == "file":
        path = unquote(urlsplit(root).path)
        if not os.path.isdir(path):
            return f"index {_shown(url)} does not exist (no directory {path})", False
        return None, False
    targets = [("HEAD", root)] + [("GET", f"{root}{name}/") for name in projects[:PROBE_PROJECTS]]
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="mlenv-probe") as pool:
        answers = list(pool.map(lambda t: _request(t[1], method=t[0], ca_bundle=ca_bundle), targets))
    if any(a.status is not None and 200 <= a.status < 400 for a in answers):
        return None, False
    if answers and all(a.status in (404, 405) for a in answers[1:]) and answers[0].status in (404, 405, 501):
        return None, True
    bad = next((a for a in answers if a.status is None), None) or next(
        a for a in answers if a.status not in (404, 405, 501)
    )
    what = "does not answer" if bad.status is None else f"answers {bad.reason or bad.status}"
    return f"index {_shown(url)} {what} ({bad.url}: {bad.reason or bad.status})", False


def _find_links(url: str, ca_bundle: str | None) -> str | None:
    from .findlinks import parse_links

    parts = urlsplit(url)
    shown = _shown(url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if os.path.isdir(path):
            from ..reqforms import ARCHIVE_SUFFIXES

            if not any(n.endswith(ARCHIVE_SUFFIXES) for n in os.listdir(path)):
                return f"find-links directory {shown} holds no distribution files"
            return None
        if not os.path.isfile(path):
            return f"find-links page {shown} does not exist"
        with open(path, "rb") as fh:
            body = fh.read(MAX_PAGE + 1)
        answer = Answer(shown, 200, "", body)
    else:
        answer = _request(url, method="GET", ca_bundle=ca_bundle, read=True)
    if answer.status is None:
        return f"find-links page {shown} does not answer ({answer.reason})"
    if not 200 <= answer.status < 300:
        return f"find-links page {shown} answers {answer.reason or answer.status}"
    if answer.body is not None and len(answer.body) > MAX_PAGE:
        return f"find-links page {shown} is larger than {MAX_PAGE >> 20} MB"
    links = parse_links((answer.body or b"").decode("utf-8", "replace"), url)
    if not links:
        return f"find-links page {shown} answers, but links no wheel or source archive (a login or proxy page?)"
    return None


def check(probes: list[Probe], projects: list[str], *, ca_bundle: str | None = None) -> list[str]:
    """Check every declared source in parallel. Raises SolveError naming the sources that
    failed (all of them, one line each); returns the shown URLs of indexes that answered
    404 to every probe (healthy, but holding none of the probed projects)."""
    from concurrent.futures import ThreadPoolExecutor

    if not probes:
        return []

    def one(p: Probe) -> tuple[str | None, bool]:
        if p.kind == "find-links":
            return _find_links(p.url, ca_bundle), False
        return _index(p.url, projects, ca_bundle)

    with ThreadPoolExecutor(max_workers=min(8, len(probes)), thread_name_prefix="mlenv-health") as pool:
        results = list(pool.map(one, probes))
    errors = [e for e, _ in results if e]
    if errors:
        head = errors[0] if len(errors) == 1 else f"{len(errors)} declared sources fail: " + "; ".join(errors)
        raise SolveError(head, hint="a declared source that fails would make uv take packages from another one; "
                                    "fix the URL, the network or the credentials (${VAR} in the URL, ~/.netrc)")  # fmt: skip
    return [_shown(p.url) for p, (_, all404) in zip(probes, results, strict=True) if all404]
