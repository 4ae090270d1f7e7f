"""The cache hit of `mlenv build`, answered before click or any mlenv model is imported.

A hit is the common case of `mlenv build` (CI runs it on every push) and the
one a Go CLI answers in ~55 ms (a fully cached `docker build`). The full path
spends most of its time importing click, tomllib and the spec and lock models
to establish two facts: this mlenv.lock is current for this mlenv.toml (and
verifies), and it names content hash H. Both depend only on the bytes of the
two files, so once the full path has established them it records them under
the sha256 of those bytes (<user cache>/mlenv/hits/<key>, written atomically,
see remember()). Here, the same bytes mean the same answer: the image tag is
asked of the Engine (one inspect on DOCKER_HOST's unix socket) and the hit is
reported exactly as the full path reports it. Anything else (another option,
no record, no image under that tag, a tcp:// DOCKER_HOST) returns None and the
full path runs, with every check and message it has.

Standard library only, and little of it: json, os, sys, time, the C modules _socket and
_sha256 (mlenv.runtime.digest: not hashlib, which loads OpenSSL); the Engine is asked
through mlenv.dockerd's unix_http, which imports nothing more.
"""

from __future__ import annotations

import os
import sys
import time

KEY_VERSION = b"mlenv-build-hit-v1"
DEFAULT_PLATFORM = "linux-64"


def _cache_dir() -> str | None:
    if not sys.platform.startswith("linux"):
        return None  # elsewhere platformdirs decides; the full path handles it
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlenv", "hits")


def _key(spec: bytes, lock: bytes, platform: str) -> str:
    from .. import __version__
    from ..runtime.digest import sha256

    h = sha256()
    h.update(KEY_VERSION)
    for part in (__version__.encode(), platform.encode(), spec, lock):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def remember(spec, lock, platform: str) -> None:
    """Called by the full path once it has parsed, checked and verified `spec` and
    `lock` (mlenv.spec.Spec, mlenv.lockfile.Lock): record the facts the fast path
    may then trust for the same bytes. The files are read again, so the record is
    written only if they still hold exactly what was checked (the spec's text, the
    lock's canonical form)."""
    import json

    from ..runtime.fsutil import atomic_write

    directory = _cache_dir()
    if directory is None:
        return
    try:
        with open(spec.path, "rb") as fh:
            spec_raw = fh.read()
        with open(spec.lock_path, "rb") as fh:
            lock_raw = fh.read()
        if spec_raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n") != spec.text:
            return
        if lock_raw.decode("utf-8") != lock.dumps():
            return
        path = os.path.join(directory, _key(spec_raw, lock_raw, platform))
        if not os.path.exists(path):
            record = {"name": spec.name, "content_hash": lock.content_hash, "short_hash": lock.short_hash}
            atomic_write(path, json.dumps(record, sort_keys=True) + "\n")
    except (OSError, UnicodeDecodeError):
        pass  # a cache: the full path works without it


def _parse(argv: list[str]) -> dict | None:
    """Only `[-C DIR] build` with -q/--quiet, --json, --repository REPO, --platform P,
    --builder B, --ca-bundle FILE (options that do not change a hit's answer); else None."""
    opts = {
        "dir": ".",
        "quiet": False,
        "json": False,
        "repository": "mlenv",
        "platform": DEFAULT_PLATFORM,
        "builder": os.environ.get("MLENV_BUILDER") or "auto",
        "ca-bundle": None,
    }
    args = list(argv)
    if args[:1] == ["-C"] and len(args) > 1:
        opts["dir"] = args[1]
        args = args[2:]
    if args[:1] != ["build"]:
        return None
    args = args[1:]
    while args:
        a = args.pop(0)
        if a in ("-q", "--quiet"):
            opts["quiet"] = True
        elif a == "--json":
            opts["json"] = True
        elif a.startswith("--") and a[2:].split("=", 1)[0] in ("repository", "platform", "builder", "ca-bundle"):
            name, eq, value = a[2:].partition("=")
            if not eq:
                if not args:
                    return None
                value = args.pop(0)
            opts[name] = value
        else:
            return None
    if not opts["repository"] or opts["builder"] not in ("auto", "daemonless", "buildkit", "classic"):
        return None
    return opts  # --ca-bundle: a hit downloads nothing, and neither path reads it then


def _inspect(socket_path: str, ref: str) -> dict | None:
    import json

    from ..dockerd import unix_http

    try:
        status, _, body = unix_http(socket_path, "GET", f"/images/{ref}/json", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    try:
        info = json.loads(body)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def try_hit(argv: list[str]) -> int | None:
    """0 after reporting a hit; None: not answered here, run the full path."""
    t0 = time.perf_counter()
    opts = _parse(argv)
    if opts is None:
        return None
    from ..dockerd import socket_path

    sock = socket_path()
    directory = _cache_dir()
    if sock is None or directory is None:
        return None
    if os.path.lexists(os.path.join(opts["dir"], ".mlenv.journal")):
        return None  # an interrupted restore: the full path completes it first (mlenv.runtime.journal)
    try:
        with open(os.path.join(opts["dir"], "mlenv.toml"), "rb") as fh:
            spec = fh.read()
        with open(os.path.join(opts["dir"], "mlenv.lock"), "rb") as fh:
            lock = fh.read()
        record_path = os.path.join(directory, _key(spec, lock, opts["platform"]))
        with open(record_path, "rb") as fh:
            record = fh.read()
        os.utime(record_path)  # last use, for `mlenv cache prune`
    except OSError:
        return None
    import json

    try:
        record = json.loads(record)
        name, content_hash, short = record["name"], record["content_hash"], record["short_hash"]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, str) and v for v in (name, content_hash, short)):
        return None  # a damaged record: a null content hash would match an image without the label
    ref = f"{opts['repository']}/{name}:{short}"
    info = _inspect(sock, ref)
    if info is None or not isinstance(info.get("Id"), str):
        return None
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get("org.mlenv.content-hash") != content_hash:
        return None
    if opts["json"]:
        result = {
            "image": ref,
            "name": name,
            "content_hash": content_hash,
            "short_hash": short,
            "action": "reused",
            "where": "local",
            "id": info["Id"],
            "retagged": False,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    elif not opts["quiet"]:
        sys.stdout.write(f"reused {ref} (local image {info['Id'][7:19]})\n")
    return 0
