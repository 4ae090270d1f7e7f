""".pyc files for the daemonless builder: compiled reproducibly by a CPython of the
target's X.Y, in a few long-lived worker processes, and remembered by content.

Bytes: checked-hash pycs (flags 3: the source's hash, no mtime), `co_filename` = the
in-image path, marshal format 2. Format 4 (the default) writes back-references for
objects whose reference count is above one, and reference counts depend on what the
compiling process did before (measured: one pandas test file compiles to other bytes
after `import pandas` than in a fresh process); format 2 has no references, so a
file's pyc is a function of (its source bytes, its in-image path, the compiling
CPython's version) alone, whatever process, order or batch compiled it.

`CompilePool(compiler, workers)`: `workers` processes of `python -I -S` (no site, no
user paths, no PYTHON* variables), each reading batches of (key, source, in-image
path) from its stdin and answering (key, pyc or None) on its stdout (a source that
does not compile gets no pyc, as compileall); batches are queued first in, first out,
so the package installed first finishes first and its layer can be written while the
others still compile. A process start costs ~20 ms of CPU: they are started once.

`PycCache(root, compiler)`: a pyc is a function of (source bytes, in-image path,
compiler version), so it is remembered under that key: after a package's files are
compiled, one *pack* per wheel is written to
`<cache>/pyc/<compiler key>/<package name>/<wheel sha256>.pack`, and a later build of
another version of the same package reuses the pyc of every file whose bytes and path
did not change (scikit-learn 1.5.1 -> 1.5.2: 491 of 566 .py files). Pack format:
`mlenv-pyc-pack-v1\\n`, an 8-byte big-endian length, that many bytes of JSON (a sorted
list of [in-image path, source sha256, pyc length, pyc sha256]), then the pycs in that
order. A pack whose JSON or any pyc's sha256 does not check out is ignored (the files
are compiled again). At most PACKS_PER_NAME packs of a name are read (the most
recently used).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlenvError

PACK_MAGIC = b"mlenv-pyc-pack-v1\n"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,199}")  # a normalized distribution name: one path component
_SHA_RE = re.compile(r"[0-9a-f]{64}")
PACKS_PER_NAME = 4
CHUNK = 200  # .py files per batch sent to a worker


def _worker_source() -> str:
    """The worker's text (mlenv/runtime/pycworker.py), run with `-c` by the compiling
    CPython, which may be another Python than mlenv's and has nothing of mlenv."""
    from pathlib import Path

    from ..runtime import pycworker

    return Path(pycworker.__file__).read_text(encoding="utf-8")


class PycError(MlenvError):
    """The .pyc compiler failed."""


@dataclass
class PycCompiler:
    executable: str
    version: str  # X.Y.Z of the compiling CPython: part of the layer cache key and a label

    @property
    def xy(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def tag(self) -> str:
        return "cpython-" + self.xy.replace(".", "")


def find_compiler(xy: str) -> PycCompiler | None:
    """A CPython of X.Y on this host: this interpreter, else pythonX.Y on PATH."""
    major, minor, micro = sys.version_info[:3]
    if f"{major}.{minor}" == xy and sys.implementation.name == "cpython":
        return PycCompiler(sys.executable, f"{major}.{minor}.{micro}")
    exe = shutil.which(f"python{xy}")
    if not exe:
        return None
    try:
        probe = "import platform,sys;print(sys.implementation.name,platform.python_version())"
        out = subprocess.run([exe, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or parts[0] != "cpython" or not parts[1].startswith(xy + "."):
        return None
    return PycCompiler(exe, parts[1])


def pyc_path(rel: str, tag: str) -> str:
    """Where the pyc of the .py at rel goes: its directory's __pycache__/<stem>.<tag>.pyc."""
    head, _, tail = rel.rpartition("/")
    return f"{head}/__pycache__/{tail[:-3]}.{tag}.pyc" if head else f"__pycache__/{tail[:-3]}.{tag}.pyc"


Job = tuple[str, bytes, str]  # (key, source bytes, in-image path)


class CompilePool:
    """Long-lived compile processes; submit() a batch, get a Future of {key: pyc}."""

    def __init__(self, compiler: PycCompiler, workers: int = 1) -> None:
        self.compiler = compiler
        self.queue: queue.Queue[tuple[list[Job], Future[dict[str, bytes]]] | None] = queue.Queue()
        self.workers = max(1, workers)
        self.threads: list[threading.Thread] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.error: PycError | None = None

    def _start(self) -> None:
        # started on first use: a build whose every layer is cached starts no process
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        for i in range(self.workers):
            try:
                proc = subprocess.Popen([self.compiler.executable, "-I", "-S", "-c", _worker_source()], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
            except OSError as exc:
                raise PycError(f"cannot start the .pyc compiler {self.compiler.executable}: {exc}") from None
            self.procs.append(proc)
            t = threading.Thread(target=self._serve, args=(proc,), name=f"mlenv-pyc-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def submit(self, jobs: list[Job]) -> Future[dict[str, bytes]]:
        fut: Future[dict[str, bytes]] = Future()
        if not jobs:
            fut.set_result({})
            return fut
        with self.lock:
            if self.closed:
                raise RuntimeError("CompilePool is closed")
            if self.error is not None:
                raise self.error
            if not self.procs:
                self._start()
            self.queue.put((jobs, fut))
        return fut

    def _serve(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        while True:
            item = self.queue.get()
            if item is None:
                break
            jobs, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                payload = pickle.dumps(jobs, protocol=4)
                proc.stdin.write(struct.pack(">Q", len(payload)) + payload)
                proc.stdin.flush()
                head = proc.stdout.read(8)
                if len(head) < 8:
                    raise EOFError
                got = pickle.loads(proc.stdout.read(struct.unpack(">Q", head)[0]))
                fut.set_result({key: pyc for key, pyc in got if pyc is not None})
            except (OSError, EOFError, ValueError, pickle.UnpicklingError):
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                last = (err.strip().splitlines() or ["the process ended"])[-1]
                error = PycError(f"compiling .pyc files with {self.compiler.executable} failed: {last[:200]}")
                fut.set_exception(error)
                self._fail(error)
                break

    def _fail(self, error: PycError) -> None:
        """A worker died: the build fails, so every queued batch fails now (nobody waits forever)."""
        with self.lock:
            self.error = error
            sentinels = 0
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    sentinels += 1
                elif item[1].set_running_or_notify_cancel():
                    item[1].set_exception(error)
            for _ in range(sentinels):
                self.queue.put(None)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for _ in self.threads:
                self.queue.put(None)
        for t in self.threads:
            t.join()
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:  # a worker that died leaves a broken pipe behind
                    pass
            proc.wait()

    def __enter__(self) -> CompilePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compile_sources(jobs: list[Job], compiler: PycCompiler | None, workers: int = 1) -> dict[str, bytes]:
    """key -> pyc bytes for (key, source, in-image path) jobs; the bytes do not depend
    on the number of workers or the split."""
    if not jobs or compiler is None:
        return {}
    jobs = sorted(jobs, key=lambda j: j[0])
    out: dict[str, bytes] = {}
    with CompilePool(compiler, min(workers, len(jobs) // 50 + 1)) as pool:
        futures = [pool.submit(jobs[i : i + CHUNK]) for i in range(0, len(jobs), CHUNK)]
        for fut in futures:
            out.update(fut.result())
    return out


# --- the cache -----------------------------------------------------------------------------


class PycCache:
    """Packs of pycs by (in-image path, source sha256), per compiler; see the module docstring."""

    def __init__(self, root: Path, compiler: PycCompiler) -> None:
        key = hashlib.sha256(f"mlenv-pyc-v1\0{compiler.version}".encode()).hexdigest()[:16]
        self.dir = root / "pyc" / key

    def lookup(self, name: str) -> dict[tuple[str, str], bytes]:
        """(in-image path, source sha256) -> pyc, from the packs of earlier versions of name."""
        if not _NAME_RE.fullmatch(name):
            return {}
        d = self.dir / name
        try:
            packs = sorted(d.glob("*.pack"), key=lambda p: p.stat().st_mtime, reverse=True)[:PACKS_PER_NAME]
        except OSError:
            return {}
        out: dict[tuple[str, str], bytes] = {}
        for pack in packs:
            got = read_pack(pack)
            if got:
                out.update(got)
                try:
                    os.utime(pack)  # used: its mtime is its last use (`mlenv cache prune`)
                except OSError:
                    pass
        return out

    def remember(self, name: str, wheel_sha256: str, items: list[tuple[str, str, bytes]]) -> None:
        """Remember (in-image path, source sha256, pyc) items of one wheel (its pack is
        written once, then only marked as used). Best effort: a full or read-only cache
        costs a compile next time, nothing else."""
        from ..runtime.fsutil import atomic_write

        if not items or not _NAME_RE.fullmatch(name) or not _SHA_RE.fullmatch(wheel_sha256):
            return
        pack = self.dir / name / f"{wheel_sha256}.pack"
        try:
            if pack.is_file():
                os.utime(pack)
            else:
                pack.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(pack, write_pack(items), sync=False)  # a torn pack fails its check: a miss
        except OSError:
            pass


def write_pack(items: list[tuple[str, str, bytes]]) -> bytes:
    items = sorted(items)
    index = [[path, src, len(pyc), hashlib.sha256(pyc).hexdigest()] for path, src, pyc in items]
    head = json.dumps(index, separators=(",", ":")).encode()
    return PACK_MAGIC + struct.pack(">Q", len(head)) + head + b"".join(pyc for _, _, pyc in items)


def read_pack(path: Path) -> dict[tuple[str, str], bytes]:
    """The pycs of a pack; {} for anything that does not check out."""
    try:
        data = path.read_bytes()
        if not data.startswith(PACK_MAGIC):
            return {}
        at = len(PACK_MAGIC)
        (n,) = struct.unpack(">Q", data[at : at + 8])
        index = json.loads(data[at + 8 : at + 8 + n])
        at += 8 + n
        out: dict[tuple[str, str], bytes] = {}
        for dfile, src, size, digest in index:
            pyc = data[at : at + size]
            at += size
            if len(pyc) != size or hashlib.sha256(pyc).hexdigest() != digest:
                return {}
            out[(str(dfile), str(src))] = pyc
        return out if at == len(data) else {}
    except (OSError, ValueError, TypeError, struct.error):
        return {}
