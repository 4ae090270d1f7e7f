"""The catalog as a Starlette app, served by uvicorn: GET and HEAD only.

Every response carries a Content-Security-Policy that allows nothing but this server's
own style sheet and scripts (no inline script, no other origin, no framing), and the
Host header must name the address the server was bound to (a DNS-rebinding page on
another site cannot read the catalog through the user's browser).
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from ..errors import MlenvError
from ..registry.base import NotFound
from . import paths
from .pages import STATIC, Site

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from .catalog import Catalog

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                names = {h[0].lower() for h in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def allowed_hosts(host: str) -> list[str]:
    if host in WILDCARD_HOSTS:
        return ["*"]
    out = {"127.0.0.1", "localhost", "[::1]", "::1", host}
    return sorted(out)


def create_app(catalog: Catalog, *, host: str = "127.0.0.1") -> Starlette:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import HTMLResponse, RedirectResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    site = Site(catalog)
    get = ["GET", "HEAD"]

    def html(body: str, status: int = 200) -> Response:
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    def guarded(page: str, fn):
        """A page handler that turns mlenv errors into an error page (one line, escaped)."""

        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except NotFound as exc:
                return html(site.error("Not found", str(exc), page), 404)
            except MlenvError as exc:
                return html(site.error("Cannot show this page", str(exc), page), 502)

        return endpoint

    def name_of(slug: str) -> str:
        for name in catalog.listing():
            if paths.slug(name) == slug:
                return name
        raise NotFound(f"no environment at {slug!r}")

    def curated_name(slug: str) -> str:
        for e in catalog.curated():
            if paths.slug(e.name) == slug:
                return e.name
        raise NotFound(f"no curated environment at {slug!r}")

    def package_key(slug: str) -> str:
        if paths.slug(slug) == slug:
            return slug  # a plain name is its own slug; an unknown one is a page with no hits
        for key, _ in catalog.package_names():
            if paths.slug(key) == slug:
                return key
        raise NotFound(f"no package at {slug!r} in this registry")

    def home(request: Request) -> Response:
        return html(site.home())

    def root(request: Request) -> Response:
        return RedirectResponse("index.html", status_code=307)

    def curated_index(request: Request) -> Response:
        return html(site.curated_index())

    def curated_entry(request: Request) -> Response:
        return html(site.curated_entry(curated_name(request.path_params["slug"])))

    def environment(request: Request) -> Response:
        return html(site.environment(name_of(request.path_params["slug"])))

    def environment_dir(request: Request) -> Response:
        return RedirectResponse("index.html", status_code=307)

    def version(request: Request) -> Response:
        return html(site.version(name_of(request.path_params["slug"]), int(request.path_params["n"])))

    def diff(request: Request) -> Response:
        p = request.path_params
        return html(site.diff(name_of(p["slug"]), int(p["a"]), int(p["b"])))

    def compare(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a or not b:
            return html(site.error("Compare", "give two versions: compare.html?a=NAME@N&b=NAME@M", paths.COMPARE), 400)
        target, body = site.compare(a, b)
        if target:
            return RedirectResponse(paths.rel(target, paths.COMPARE), status_code=303)
        return html(body)

    def search(request: Request) -> Response:
        q = request.query_params
        return html(site.search(q.get("q", ""), q.get("platform", ""), q.get("archived", "") == "1"))

    def packages_index(request: Request) -> Response:
        return html(site.packages_index())

    def package(request: Request) -> Response:
        return html(site.package(package_key(request.path_params["slug"])))

    slug = r"{slug:str}"
    routes = [
        Route("/", root, methods=get),
        Route("/" + paths.HOME, guarded(paths.HOME, home), methods=get),
        Route("/" + paths.CURATED, guarded(paths.CURATED, curated_index), methods=get),
        Route("/curated/" + slug + ".html", guarded("curated/x.html", curated_entry), methods=get),
        Route("/env/" + slug + "/", environment_dir, methods=get),
        Route("/env/" + slug + "/index.html", guarded("env/x/index.html", environment), methods=get),
        Route("/env/" + slug + "/v{n:int}.html", guarded("env/x/v.html", version), methods=get),
        Route("/env/" + slug + "/diff-{a:int}-{b:int}.html", guarded("env/x/diff.html", diff), methods=get),
        Route("/" + paths.COMPARE, guarded(paths.COMPARE, compare), methods=get),
        Route("/" + paths.SEARCH, guarded(paths.SEARCH, search), methods=get),
        Route("/" + paths.PACKAGES, guarded(paths.PACKAGES, packages_index), methods=get),
        Route("/packages/" + slug + ".html", guarded("packages/x.html", package), methods=get),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        title = "Not found" if status == 404 else "Not allowed" if status == 405 else "Error"
        message = {404: "no such page", 405: "this catalog is read-only: GET and HEAD only"}.get(status, "error")
        page = request.url.path.lstrip("/") or paths.HOME
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", page) or ".." in page:
            page = paths.HOME
        body = site.error(title, message, page)
        headers = {"Allow": "GET, HEAD"} if status == 405 else None
        return HTMLResponse(body, status_code=status, headers=headers)

    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))],
        exception_handlers={404: not_found, 405: not_found},
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MlenvError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})", hint="choose another --port (0 picks a free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(catalog: Catalog, sock: socket.socket, *, host: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        create_app(catalog, host=host), log_level="warning", access_log=False, lifespan="off", server_header=False
    )
    uvicorn.Server(config).run(sockets=[sock])
