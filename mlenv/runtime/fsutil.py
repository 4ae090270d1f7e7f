"""Atomic file writes: every file mlenv writes goes through here, so a failed
or interrupted command leaves the previous file byte-for-byte intact.

A write goes to a temporary file beside the target (`.NAME.XXXXXXXX.tmp`), is
fsynced and renamed over the target. While it exists, its writer holds an flock on
it; a temporary file nobody holds a lock on was left by a process that died
(SIGKILL, power loss) and `sweep_temp_files` removes it: the next mlenv command that
touches the directory does (mlenv.runtime.journal.recover). SIGINT and SIGTERM (which
the CLI turns into an exception) remove it at once. A failed write names the file
it was writing (WriteError), also when the disk is full.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import WriteError

try:  # POSIX; elsewhere temporary files are not locked, and only a dead writer's are swept anyway
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TEMP_SUFFIXES = (".tmp", ".new", ".part")
_RANDOM = r"[a-z0-9_]{8}"  # tempfile.mkstemp's random part


def lock_fd(fd: int, *, blocking: bool = True) -> bool:
    """flock(fd, LOCK_EX): True when held (always True where flock does not exist)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, then deliver each that came, in order.

    Python runs a signal's handler between two bytecodes, so Ctrl-C (KeyboardInterrupt) or
    the CLI's SIGTERM exception can land after a temporary file was created and before
    its creator recorded the name for its cleanup: nobody would remove the file until a
    later sweep. Creating a file and recording its name inside one held block closes
    that gap; the block must sit inside the try whose handler removes the file.

    While held, a signal only gets noted, and the wakeup fd (asyncio's
    add_signal_handler) is set aside, so a loop hears of the signal once, when it is
    delivered. signal.signal() runs a signal already pending before it swaps handlers,
    and that handler may raise: every handler swapped is put back whatever happens, and
    the first exception is raised once all are. Outside the main thread nothing is held:
    handlers run only in the main thread."""
    import signal  # lazily: its enums cost a millisecond, and only writers need this

    caught: list[int] = []

    def note(signum: int, _frame: object) -> None:
        caught.append(signum)

    saved: dict[int, Any] = {}  # signal number -> the handler it had
    wakeup = -1
    error: BaseException | None = None
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is None or handler == signal.SIG_IGN:  # None: a handler not set from Python
                continue
            saved[signum] = handler  # before the swap: a pending signal's handler may raise in it
            try:
                signal.signal(signum, note)
            except ValueError:  # not the main thread: only it may set handlers, and only it runs them
                del saved[signum]
                break
        if saved:
            wakeup = signal.set_wakeup_fd(-1)
        yield
    finally:
        if wakeup != -1:
            signal.set_wakeup_fd(wakeup)
        for held, original in saved.items():
            try:
                signal.signal(held, original)
            except BaseException as exc:  # a signal pending since the block ran a handler already put back
                error = error or exc
        for came in dict.fromkeys(caught):  # each distinct signal, in the order it came
            try:
                signal.raise_signal(came)  # its own handler runs now
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


def make_temp(directory: Path, name: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, locked temporary file `.NAME.XXXXXXXX<suffix>` in directory: (fd, path).
    The lock is taken, then the name checked to still be ours (a sweeper may have
    removed the file in between; then another is made). Call it in interrupts_held(),
    with whatever records the name for the caller's cleanup."""
    import tempfile  # lazily: tempfile pulls in shutil and random, which a no-op lock never needs

    for _ in range(100):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
        lock_fd(fd)
        try:
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, Path(tmp)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise WriteError(directory / name, OSError(0, "could not create a temporary file"))


def write_fd(fd: int, payload: bytes, *, sync: bool = True) -> None:
    view = memoryview(payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    if sync:
        os.fsync(fd)


def atomic_write(
    path: str | os.PathLike[str], data: str | bytes, *, mode: int | None = None, sync: bool = True
) -> None:
    """Write path atomically (a temporary file beside it, renamed over it). sync=False
    skips the fsync: for cache entries that check themselves on read (a torn one after
    a power loss is a miss), where an fsync would also flush every file written before it."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(path.parent, exc) from None
    tmp: Path | None = None
    fd = -1
    try:
        with interrupts_held():  # the file exists only once `tmp` names it, for the finally below
            fd, tmp = make_temp(path.parent, path.name)
        write_fd(fd, payload, sync=sync)
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(path, exc) from None
    finally:  # also on KeyboardInterrupt and the CLI's SIGTERM exception
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if fd >= 0:
            os.close(fd)


def temp_pattern(names: Iterable[str] | None = None) -> re.Pattern[str]:
    """The temporary files of targets `names` (any name when None)."""
    target = "(?:" + "|".join(re.escape(n) for n in names) + ")" if names is not None else ".+"
    suffixes = "|".join(re.escape(s) for s in TEMP_SUFFIXES)
    return re.compile(rf"\.{target}\.{_RANDOM}(?:{suffixes})\Z")


def sweep_temp_files(directory: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[str]:
    """Remove the temporary files that dead writers left in directory (of the targets
    `names`, or of any target): those nobody holds a lock on. Returns their names."""
    pattern = temp_pattern(names)
    try:
        entries = [e for e in os.listdir(directory) if e.startswith(".") and pattern.match(e)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        path = os.path.join(directory, entry)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if lock_fd(fd, blocking=False) and fcntl is not None:
                os.unlink(path)
                removed.append(entry)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


SCRATCH = "mlenv-scratch-"


def make_scratch(kind: str) -> tuple[Path, int]:
    """A new scratch directory <tmp>/mlenv-scratch-KIND-XXXXXXXX and an fd holding an flock
    on it while in use (drop_scratch removes it). Scratch directories of dead processes
    (SIGKILL) are removed first: nobody holds their lock."""
    import tempfile

    sweep_scratch()
    for _ in range(100):
        path = tempfile.mkdtemp(prefix=f"{SCRATCH}{kind}-")
        fd = os.open(path, os.O_RDONLY)
        lock_fd(fd)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not swept between mkdtemp and the lock
                return Path(path), fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise WriteError(Path(tempfile.gettempdir()) / f"{SCRATCH}{kind}-*", OSError(0, "could not create a directory"))


def drop_scratch(path: str | os.PathLike[str], fd: int) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    if fd >= 0:
        os.close(fd)


def sweep_scratch() -> list[str]:
    """Remove the scratch directories no live process holds; returns their names."""
    import shutil
    import tempfile

    base = tempfile.gettempdir()
    try:
        entries = [e for e in os.listdir(base) if e.startswith(SCRATCH)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        path = os.path.join(base, entry)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:  # another user's, or gone
            continue
        try:
            if fcntl is not None and lock_fd(fd, blocking=False):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(entry)
        finally:
            os.close(fd)
    return removed


def link_or_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """dest becomes src's content: a hard link when on one filesystem, else a copy."""
    import shutil

    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    except OSError as exc:
        raise WriteError(dest, exc) from None


def fix_mtimes(roots, epoch: int) -> None:
    """Every entry under each root (symlinks themselves, not their targets), the roots
    and all their parent directories get mtime = epoch: an image layer written by an
    install then has the same bytes on every run (a layer tar records mtimes)."""
    ns = (epoch * 1_000_000_000, epoch * 1_000_000_000)
    parents: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not os.path.lexists(root):
            continue
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    os.utime(os.path.join(dirpath, name), ns=ns, follow_symlinks=False)
        os.utime(root, ns=ns, follow_symlinks=False)
        parents.update(p for p in root.parents if p != Path(root.anchor))
    for p in sorted(parents):
        os.utime(p, ns=ns)
