"""The connection to a Docker Engine (the daemon at DOCKER_HOST): the one place that
resolves the host, creates the docker SDK client, speaks the Engine API on a unix
socket with the standard library, and words the error when no daemon answers.

Every caller of the Engine goes through here: mlenv.image.docker (DockerEngine:
find by label, tag, build, push, pull, load, containers), mlenv.oci.engine (the
`docker save` / `docker load` tars), mlenv.apt.base (a base image's dpkg database),
mlenv.image.hit (the cache hit). It sits below all of them, imports nothing from
mlenv at module top, and only `os` from the standard library, because the cache hit
of `mlenv build` imports it before anything else: the docker SDK (requests, urllib3,
~100 ms) is imported inside `connect`, when a caller needs more than an inspect.

Two transports, one API:
- a `unix://` DOCKER_HOST (the default, /var/run/docker.sock): `request` sends one
  HTTP/1.0 request per call with `_socket` (the image inspects and label listings of
  the reuse check; no SDK import);
- anything else (`tcp://`, `ssh://`, TLS settings): the SDK client of `connect`,
  made by `docker.from_env`, so DOCKER_TLS_VERIFY and DOCKER_CERT_PATH apply too.
"""

from __future__ import annotations

import os

# not `from typing import ...`: typing costs ~5 ms of the cache hit, which imports this module
# first; type checkers treat a TYPE_CHECKING name as true all the same (annotations are strings)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .errors import MlenvError

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = 3600  # seconds an SDK call may wait for the next bytes (a quiet build step, a slow push)


def docker_host() -> str:
    """DOCKER_HOST, or the Engine's default unix socket when it is unset or empty."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def socket_path(host: str | None = None) -> str | None:
    """The unix socket path of host (default: docker_host()); None for tcp:// or ssh://."""
    host = host or docker_host()
    return host[len("unix://") :] if host.startswith("unix://") else None


def unreachable(reason: str) -> MlenvError:
    """The one error for a daemon that does not answer: one line naming DOCKER_HOST, with a hint."""
    from .errors import MlenvError
    from .runtime.text import clip

    return MlenvError(
        f"cannot reach the Docker daemon at DOCKER_HOST={docker_host()} ({clip(reason)})",
        hint="start Docker, or point DOCKER_HOST at a running daemon",
    )


def refused(what: str, detail: str) -> MlenvError:
    """The error for a daemon that answered but refused a call (an HTTP error status)."""
    from .errors import MlenvError
    from .runtime.text import clip

    return MlenvError(f"the Docker daemon at DOCKER_HOST={docker_host()} refused {what} ({clip(detail)})")


def unix_http(socket_path: str, method: str, url: str, timeout: float = 30) -> tuple[int, bytes, bytes]:
    """One HTTP/1.0 request on a fresh AF_UNIX connection (the Docker Engine answers
    with a plain body and closes): (status, header block, body); OSError when the
    socket does not answer, status 0 when the answer is not HTTP. No http.client
    (~12 ms of imports) and not even `socket`: its C module `_socket` suffices
    (`socket` adds enum, selectors and array, ~3 ms, for nothing used here)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
        sock.sendall(f"{method} {url} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode())
        chunks = []
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if not head.startswith(b"HTTP/") or not status or not status[0].isdigit():
        return 0, head, body
    return int(status[0]), head, body


def api_path(template: str, *names: str) -> str:
    """An Engine API path with untrusted names (image references) quoted into it: a
    space, `?` or `#` in a reference from a lock must not change the request."""
    from urllib.parse import quote

    return template.format(*(quote(n, safe="/:@") for n in names))


def request(
    method: str, path: str, params: dict[str, str] | None = None, *, allow: tuple[int, ...] = (), timeout: float = 30
) -> tuple[int, Any]:
    """One Engine API call on the unix socket of DOCKER_HOST: (status, the decoded JSON
    body or None). Statuses >= 400 other than `allow` and a socket that does not answer
    HTTP raise the unreachable error (MlenvError). Only for a unix:// DOCKER_HOST."""
    import json

    sock = socket_path()
    if sock is None:
        raise ValueError(f"request() needs a unix:// DOCKER_HOST, not {docker_host()}")
    url = path
    if params:
        from urllib.parse import urlencode

        url += "?" + urlencode(params)
    try:
        status, head, body = unix_http(sock, method, url, timeout=timeout)
    except OSError as exc:
        raise unreachable(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    if not status:
        raise unreachable(f"not an HTTP answer from {sock}: {head[:80]!r}")
    if status >= 400 and status not in allow:
        raise refused(f"{method} {path}", f"HTTP {status}: {body[:400].decode(errors='replace').strip()}")
    headers = head.decode("latin-1").lower()
    if body and status < 400 and "content-type: application/json" in headers:
        try:
            return status, json.loads(body)
        except ValueError:
            raise unreachable(f"{method} {path} answered with a body that is not JSON") from None
    return status, None


def connect(timeout: int = CONNECT_TIMEOUT) -> Any:
    """A docker SDK client (docker.DockerClient) whose Engine answered a ping, or the
    unreachable error. The caller closes it."""
    import re

    from .runtime.text import first_line

    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, requests ConnectionError, ...
        raise unreachable(re.sub(r"^Error while fetching server API version: ", "", first_line(exc))) from None
    return client


def answers() -> bool:
    """Whether a daemon answers at DOCKER_HOST (a unix socket: one `GET /_ping`; else an SDK ping)."""
    from .errors import MlenvError

    sock = socket_path()
    if sock is not None:
        if not os.path.exists(sock):
            return False
        try:
            return request("GET", "/_ping", timeout=10)[0] == 200
        except MlenvError:
            return False
    try:
        connect(timeout=30).close()
    except MlenvError:
        return False
    return True


def inspect(reference: str, client: Any = None) -> dict | None:
    """The Engine's inspect record of an image (`GET /images/<reference>/json`), None
    when it has no such image (or the reference is not one it accepts); the unreachable
    error when no daemon answers. `client`: an SDK client to use (else the unix socket,
    or a client of connect() for other hosts)."""
    if not reference or any(seg in ("", ".", "..") for seg in reference.split("/")):
        return None  # no image reference has such a path segment; it could only walk the API's paths
    if client is None and socket_path() is not None:
        status, info = request("GET", api_path("/images/{}/json", reference), allow=(400, 404))
        return info if status == 200 and isinstance(info, dict) else None
    import docker

    own = client is None
    client = client or connect(timeout=30)
    try:
        return client.api.inspect_image(reference)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 400:
            return None
        raise refused(f"an inspect of {reference}", str(exc)) from None
    finally:
        if own:
            client.close()


def has(reference: str) -> bool:
    """Whether the Engine has the image; False when no daemon answers."""
    from .errors import MlenvError

    try:
        return inspect(reference) is not None
    except MlenvError:
        return False
