"""mlenv's build-time artifact server: the inputs of a build's install steps, served
on 127.0.0.1 for the duration of one `mlenv build` (a thread in the mlenv process).

What it serves is a fixed table, path -> file or bytes, made by
mlenv.image.context.served_files: /tools/<sha256> (the installer + uv tar, the
py-rattler tar), /lock/<sha256> (sub-locks), /a/<sha256> (artifacts, straight from
the host's content-addressed cache) and /net.pem (the CA bundle, only when a step
reaches the network). GET (and HEAD) of exactly those paths; anything else is a
404: no directory listing, nothing outside the table. Every byte is named by its
sha256 in the RUN text or the sub-lock and checked in the step, so a process that
squats the port could make a build fail but not change what it installs. The
server itself fetches nothing and holds no credentials (the artifacts were
downloaded on the host before).

Builds use host networking, so a RUN step reaches 127.0.0.1. The port is part of
every install step's RUN text (the layer cache key), so it is fixed: 47291, or
MLENV_ARTIFACT_PORT. When it is taken (another `mlenv build` running), a free port
is used: the build is correct, it only misses the layer cache of its install steps.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

DEFAULT_PORT = 47291


def default_port() -> int:
    return int(os.environ.get("MLENV_ARTIFACT_PORT") or DEFAULT_PORT)


def url_for(port: int) -> str:
    return f"http://127.0.0.1:{port}"


class ArtifactServer:
    """`with ArtifactServer(files) as srv:` serves files at srv.url until the block ends."""

    def __init__(self, files: dict[str, bytes | Path], port: int | None = None):
        self.files = dict(files)
        self.requests: list[str] = []
        self._httpd = self._bind(default_port() if port is None else port)
        self.port = self._httpd.server_address[1]
        self.url = url_for(self.port)
        self._thread: threading.Thread | None = None

    def _bind(self, port: int):
        from http.server import ThreadingHTTPServer

        handler = _handler(self)
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:  # taken (a concurrent mlenv build): any free port
            return ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self):
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mlenv-artifacts", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
        return False

    def close(self):
        self.__exit__()


def _handler(server: ArtifactServer):
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"
        server_version = "mlenv-artifacts"
        sys_version = ""

        def log_message(self, format, *args):  # no stderr noise
            pass

        def _send(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            server.requests.append(path)
            src = server.files.get(path)
            if src is None:
                self.send_error(404)
                return
            size = src.stat().st_size if isinstance(src, Path) else len(src)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if not body:
                return
            if isinstance(src, Path):
                self.wfile.flush()
                with open(src, "rb") as fh:
                    self.connection.sendfile(fh)
            else:
                self.wfile.write(src)

        def do_GET(self):
            self._send(True)

        def do_HEAD(self):
            self._send(False)

    return Handler
