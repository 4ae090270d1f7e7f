"""The deterministic layer writer: entries in, a gzip layer blob + diff_id out.

Generic (knows nothing of mlenv): a layer is a list of Entry (archive path,
kind, exec bit, where the bytes come from). The same entries give the same
bytes on every machine, day, umask, TZ, hash seed and worker count, because
every byte of the tar is decided here, not by the host or by the Python version:

- order: entries sorted by path components (a directory before its contents,
  a directory's contents together); every parent directory is added;
- headers: POSIX ustar written by this module (not tarfile, whose output may change
  between CPython versions); a PAX extended header ('x') only when a field does not
  fit ustar (a path or link name over 100 bytes or not ASCII, a size >= 8 GiB), with
  the fixed name `././@PaxHeader`; no other PAX record (no atime/ctime, no
  sub-second mtime), no xattrs, no device numbers (written as 0), no user names;
- metadata: mtime = one constant for every entry (FIXED_MTIME, 2023-11-14T22:13:20Z,
  the same constant as every other mlenv builder), uid = gid = 0, uname = gname = "";
  modes normalised: directories 0755, files 0755 if any exec bit is set else 0644,
  symlinks 0777 (link targets kept verbatim); setuid/setgid/sticky dropped;
- hardlinks are written as plain files (a layer never depends on inode sharing
  in a cache, and a link cannot span layers);
- the archive ends with two zero blocks, unpadded (as Go's archive/tar).
  SOURCE_DATE_EPOCH is deliberately NOT honoured: an image is a function of the
  lock, and a variable set on one CI machine must not change the digest;
  callers that want another constant pass `mtime=` explicitly.

Compression: gzip by libdeflate (the `deflate` wheel, pinned in pyproject.toml)
at level GZIP_LEVEL, in fixed BLOCK_SIZE blocks of the tar, each compressed
independently as one gzip member and the members concatenated (RFC 1952 allows
multi-member files; apko does the same). libdeflate's gzip header is fixed (mtime 0,
no name, OS byte 255); its output depends only on its version and level, not on
CPU features (SIMD is used for checksums and table initialisation only). Blocks
are compressed in a thread pool (libdeflate releases the GIL), and since the
block boundaries do not depend on the pool, neither do the bytes. Measurements and
the residual risk are in docs/build.md ("Daemonless builder: determinism").
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .store import OCI_LAYER, OCI_LAYER_GZIP, BlobStore, Descriptor

FIXED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z: every entry of every layer mlenv writes
GZIP_LEVEL = 1  # libdeflate's fastest: 2.3x less CPU than level 6 for 10 % more bytes (measured, docs)
BLOCK_SIZE = 4 << 20  # uncompressed bytes per gzip member
DIR_MODE, FILE_MODE, EXEC_MODE, LINK_MODE = 0o755, 0o644, 0o755, 0o777
PAX_NAME = b"././@PaxHeader"
_MAX_OCTAL_SIZE = 0o77777777777  # 11 octal digits: 8 GiB - 1


class LayerError(Exception):
    """An entry cannot go into a layer (bad path, unsupported file type)."""


@dataclass(frozen=True)
class Entry:
    """One member of a layer. path: relative POSIX archive path (no leading '/',
    no '.', '..' or empty components). kind: 'dir' | 'file' | 'symlink'.
    A file's bytes come from `source` (a host file) or `data`."""

    path: str
    kind: str
    executable: bool = False
    size: int = 0
    source: str | None = None
    data: bytes | None = None
    target: str = ""  # symlink target, verbatim

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


@dataclass(frozen=True)
class Layer:
    """A written layer: the compressed blob (in the store) and its uncompressed identity."""

    descriptor: Descriptor
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # uncompressed bytes
    entries: int


def check_path(path: str) -> str:
    """An archive path this writer accepts (it becomes a path in every container)."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        raise LayerError(f"invalid layer path {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise LayerError(f"invalid layer path {path!r} (empty, '.' or '..' component)")
    return path


def file_entry(path: str, source: str | os.PathLike[str], *, executable: bool | None = None) -> Entry:
    st = os.stat(source)
    exe = bool(st.st_mode & 0o111) if executable is None else executable
    return Entry(check_path(path), "file", exe, st.st_size, source=os.fspath(source))


def bytes_entry(path: str, data: bytes, *, executable: bool = False) -> Entry:
    return Entry(check_path(path), "file", executable, len(data), data=bytes(data))


def dir_entry(path: str) -> Entry:
    return Entry(check_path(path), "dir")


def symlink_entry(path: str, target: str) -> Entry:
    if not target or "\0" in target:
        raise LayerError(f"invalid symlink target {target!r} for {path}")
    return Entry(check_path(path), "symlink", target=target)


def entries_from_dir(root: str | os.PathLike[str], under: str = "") -> list[Entry]:
    """Every entry below root (not root itself), archive paths relative to root,
    prefixed by `under` if given. Symlinks are kept as links (never followed),
    hardlinks become plain files; sockets, FIFOs and devices are refused."""
    root = os.fspath(root)
    out: list[Entry] = []
    prefix = under.strip("/")
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in list(dirnames) + filenames:
            full = os.path.join(dirpath, name)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = f"{prefix}/{rel}" if prefix else rel
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out.append(symlink_entry(path, os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                out.append(dir_entry(path))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(check_path(path), "file", bool(st.st_mode & 0o111), st.st_size, source=full))
            else:
                raise LayerError(f"{full}: not a regular file, directory or symlink (cannot go into a layer)")
        # symlinks to directories are listed in dirnames but os.walk does not descend into them
    return out


def normalize(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted by path components, parents added, duplicates refused (the same
    path twice is a caller bug, not something to resolve silently)."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        check_path(e.path)
        if e.path in by_path:
            if by_path[e.path].kind == "dir" and e.kind == "dir":
                continue
            raise LayerError(f"{e.path} is in the layer twice")
        by_path[e.path] = e
    for path in list(by_path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            have = by_path.get(parent)
            if have is None:
                by_path[parent] = Entry(parent, "dir")
            elif have.kind != "dir":
                raise LayerError(f"{parent} is a {have.kind} but {path} is below it")
    return sorted(by_path.values(), key=lambda e: e.key)


# --- tar encoding ---------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    """ustar numeric field: zero-padded octal digits, NUL-terminated."""
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def _header(name: bytes, mode: int, size: int, typeflag: bytes, linkname: bytes, mtime: int) -> bytes:
    fields = [
        name.ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(0, 8),  # uid
        _octal(0, 8),  # gid
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder
        typeflag,
        linkname.ljust(100, b"\0"),
        b"ustar\0",
        b"00",
        b"\0" * 32,  # uname
        b"\0" * 32,  # gname
        _octal(0, 8),  # devmajor
        _octal(0, 8),  # devminor
        b"\0" * 155,  # prefix (unused: long paths go to PAX)
        b"\0" * 12,
    ]
    block = b"".join(fields)
    assert len(block) == 512
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


def _fits(value: bytes) -> bool:
    return len(value) <= 100 and value.isascii()


def encode_header(entry: Entry, mtime: int = FIXED_MTIME) -> bytes:
    """The header block(s) of one entry: a PAX 'x' header first when needed."""
    name = entry.path.encode("utf-8") + (b"/" if entry.kind == "dir" else b"")
    link = entry.target.encode("utf-8") if entry.kind == "symlink" else b""
    size = entry.size if entry.kind == "file" else 0
    pax = b""
    if not _fits(name):
        pax += _pax_record("path", name)
        name = name[:100].decode("ascii", "replace").encode("ascii", "replace")[:100]
    if not _fits(link):
        pax += _pax_record("linkpath", link)
        link = link[:100].decode("ascii", "replace").encode("ascii", "replace")[:100]
    if size > _MAX_OCTAL_SIZE:
        pax += _pax_record("size", str(size).encode())
    if entry.kind == "dir":
        mode, flag = DIR_MODE, b"5"
    elif entry.kind == "symlink":
        mode, flag = LINK_MODE, b"2"
    elif entry.kind == "file":
        mode, flag = (EXEC_MODE if entry.executable else FILE_MODE), b"0"
    else:
        raise LayerError(f"{entry.path}: unknown entry kind {entry.kind!r}")
    out = b""
    if pax:
        out += _header(PAX_NAME, 0o644, len(pax), b"x", b"", mtime) + pax + _pad(len(pax))
    return out + _header(name, mode, size if size <= _MAX_OCTAL_SIZE else 0, flag, link, mtime)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 512)


def tar_stream(entries: Iterable[Entry], *, mtime: int = FIXED_MTIME, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The tar of (normalized) entries as byte chunks. A file whose size changed
    since its Entry was made is an error (the layer would not match its listing)."""
    for e in normalize(entries):
        yield encode_header(e, mtime)
        if e.kind != "file":
            continue
        if e.data is not None:
            yield e.data
            yield _pad(len(e.data))
            continue
        assert e.source is not None
        left = e.size
        with open(e.source, "rb") as fh:
            while left:
                buf = fh.read(min(chunk, left))
                if not buf:
                    raise LayerError(f"{e.source} shrank while it was written into a layer")
                left -= len(buf)
                yield buf
            if fh.read(1):
                raise LayerError(f"{e.source} grew while it was written into a layer")
        yield _pad(e.size)
    yield b"\0" * 1024


# --- compression and the blob ---------------------------------------------------------


def gzip_block(data: bytes | bytearray | memoryview, level: int = GZIP_LEVEL) -> bytes:
    """One gzip member of data (libdeflate; fixed header: mtime 0, OS 255)."""
    import deflate

    return bytes(deflate.gzip_compress(data, level))


def compressor_version() -> str:
    """What decides the compressed bytes: part of every cache key over layer blobs."""
    import deflate

    return f"libdeflate-py {deflate.__version__} level {GZIP_LEVEL} block {BLOCK_SIZE}"


def _blocks(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buf = bytearray()
    for c in chunks:
        buf += c
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def write_layer(
    entries: Iterable[Entry],
    store: BlobStore,
    *,
    compress: bool = True,
    workers: int = 1,
    pool: ThreadPoolExecutor | None = None,
    mtime: int = FIXED_MTIME,
    annotations: dict[str, str] | None = None,
) -> Layer:
    """Write the layer of entries into store: returns its descriptor (gzip, or the
    plain tar with compress=False, whose digest is then the diff_id), diff_id and
    uncompressed size. `workers`/`pool`: threads compressing blocks; the bytes do not
    depend on them."""
    listed = normalize(entries)
    raw_hash = hashlib.sha256()
    raw_size = 0
    own_pool = None
    if compress and pool is None and workers > 1:
        own_pool = pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlenv-gzip")
    try:
        with store.writer() as out:
            if not compress:
                for c in tar_stream(listed, mtime=mtime):
                    raw_hash.update(c)
                    raw_size += len(c)
                    out.write(c)
            else:
                pending: list[Future[bytes]] = []
                limit = max(2, 2 * (workers if own_pool else getattr(pool, "_max_workers", 1)))
                for block in _blocks(tar_stream(listed, mtime=mtime), BLOCK_SIZE):
                    raw_hash.update(block)
                    raw_size += len(block)
                    if pool is None:
                        out.write(gzip_block(block))
                        continue
                    pending.append(pool.submit(gzip_block, block))
                    while len(pending) >= limit:
                        out.write(pending.pop(0).result())
                for fut in pending:
                    out.write(fut.result())
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=True, cancel_futures=True)
    media = OCI_LAYER_GZIP if compress else OCI_LAYER
    desc = Descriptor(media, out.digest, out.size, annotations=dict(annotations or {}))
    return Layer(desc, "sha256:" + raw_hash.hexdigest(), raw_size, len(listed))


def diff_id_of(entries: Iterable[Entry], *, mtime: int = FIXED_MTIME) -> tuple[str, int]:
    """(diff_id, size) of the entries' tar without writing it anywhere."""
    h = hashlib.sha256()
    n = 0
    for c in tar_stream(entries, mtime=mtime):
        h.update(c)
        n += len(c)
    return "sha256:" + h.hexdigest(), n


def read_tar_members(fileobj, *, gzip: bool) -> Iterator:
    """tarfile members of a (possibly multi-member gzip) layer stream, in order.
    tarfile's own 'r|gz' reads only the first gzip member: wrap with gzip.GzipFile."""
    import gzip as _gzip
    import tarfile

    src = _gzip.GzipFile(fileobj=fileobj, mode="rb") if gzip else fileobj
    with tarfile.open(fileobj=src, mode="r|") as tar:
        for member in tar:
            yield member, tar


__all__ = [
    "BLOCK_SIZE", "FIXED_MTIME", "GZIP_LEVEL", "Entry", "Layer", "LayerError", "bytes_entry", "check_path",
    "compressor_version", "diff_id_of", "dir_entry", "entries_from_dir", "file_entry", "gzip_block", "normalize",
    "read_tar_members", "symlink_entry", "tar_stream", "write_layer",
]  # fmt: skip
