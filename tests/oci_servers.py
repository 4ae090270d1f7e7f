"""Real servers for the OCI distribution tests: a private CNCF distribution registry
(Debian's `docker-registry`) with no auth, htpasswd basic auth or token auth; a
token service that signs JWTs with a test key (distribution's `auth: token`); a
TCP relay that cuts connections after N bytes. All bind to 127.0.0.1."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    addr: str
    data: Path
    proc: subprocess.Popen
    log: Path
    extra: list = field(default_factory=list)  # servers to stop with it

    def blob_files(self) -> set[str]:
        """Digests of the blobs in the registry's storage (one `data` file each)."""
        root = self.data / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return {"sha256:" + p.parent.name for p in root.glob("*/*/data")} if root.is_dir() else set()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for server in self.extra:
            server.shutdown()
            server.server_close()


def start_registry(tmp: Path, *, htpasswd: dict[str, str] | None = None, token: TokenServer | None = None) -> Registry:
    if shutil.which("docker-registry") is None:
        import pytest

        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data = tmp / "data"
    auth = ""
    if htpasswd is not None:
        import bcrypt

        lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in htpasswd.items()]
        (tmp / "htpasswd").write_text("\n".join(lines) + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: mlenv-test\n    path: {tmp / 'htpasswd'}\n"
    elif token is not None:
        auth = (
            f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
            f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert_path}\n"
        )
    config = tmp / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
{auth}health:
  storagedriver:
    enabled: false
"""
    )
    log = tmp / "registry.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    addr = f"127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.05)
    return Registry(addr, data, proc, log, [token.server] if token else [])


# --- a token service for distribution's `auth: token` ---------------------------------------------


class TokenServer:
    """GET /token?service=...&scope=...: a JWT (RS256, certificate in the x5c header) granting
    the requested actions to `users` (basic auth), and only `pull` to anonymous callers."""

    def __init__(self, tmp: Path, users: dict[str, str]):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users
        self.service = "mlenv-test-registry"
        self.issuer = "mlenv-test-issuer"
        self.requests: list[tuple[str | None, list[str]]] = []  # (user, scopes) per token request
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlenv-test-token")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256())
        )  # fmt: skip
        tmp.mkdir(parents=True, exist_ok=True)
        self.cert_path = tmp / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                user = outer._user(self.headers.get("Authorization"))
                if user is False:
                    self.send_response(401)
                    self.end_headers()
                    return
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                outer.requests.append((user, scopes))
                body = json.dumps({"token": outer._token(user, scopes), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _user(self, header: str | None):
        """None for anonymous, the user name, or False for wrong credentials."""
        if not header:
            return None
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else False

    def _token(self, user: str | None, scopes: list[str]) -> str:
        import jwt

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}  # fmt: skip
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"x5c": self._x5c})


# --- a relay that cuts connections ----------------------------------------------------------------


class CuttingRelay:
    """127.0.0.1:<port> -> target; once `limit` bytes went client->server (over all
    connections), every connection is reset and new ones are refused."""

    def __init__(self, target: str, limit: int):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.limit = limit
        self.sent = 0
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                _reset(client)
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if counted:
                    with self._lock:
                        self.sent += len(data)
                        over = self.sent > self.limit
                    if over:
                        self.cut.set()
                        self._cut_all()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _cut_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            _reset(s)

    def close(self) -> None:
        self.listener.close()
        self._cut_all()


def _reset(s: socket.socket) -> None:
    import struct

    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass
