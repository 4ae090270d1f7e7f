"""Several files of one directory replaced together: all of them or none, also when
the process is killed (a spec and its lock, written by `restore` and
`Environment.save`).

POSIX renames one directory entry at a time, so "all or none" needs a journal:

1. every new file is written, fsynced and locked as `.NAME.XXXXXXXX.new` beside its target;
2. the journal `.mlenv.journal` is written atomically: from here on the change is
   committed. It lists, per file, the target name, its temporary name, the sha256 the
   target had before (null: absent) and the sha256 of the new content;
3. each temporary file is renamed over its target, in order; the directory is fsynced;
4. the journal is removed.

A process killed before step 2 leaves only temporary files: the old state stands and
the next sweep removes them. Killed after step 2, the next mlenv command touching the
directory (`recover`, called where commands find their spec or lock) completes the
renames. A target that holds neither its old nor its new content by then was changed
by someone else since: it is kept, and reported. Writers and recoverers of one
directory serialize on an flock of the directory itself, so no extra lock file is
left in a user's project.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .digest import sha256
from .errors import MlenvError
from .fsutil import atomic_write, interrupts_held, lock_fd, make_temp, sweep_temp_files, write_fd

JOURNAL = ".mlenv.journal"
FORMAT = "mlenv-journal-v1"
# The names mlenv writes in a project directory: the sweep touches nothing else.
PROJECT_FILES = ("mlenv.toml", "mlenv.lock", JOURNAL)
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def _sha256_of(path: Path) -> str | None:
    h = sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return h.hexdigest()


class _DirLock:
    """flock of a directory (serializes writers and recoverers of its files)."""

    def __init__(self, directory: Path):
        try:
            self.fd = os.open(directory, os.O_RDONLY)
        except PermissionError:  # Windows cannot open a directory: no lock there
            self.fd = -1

    def __enter__(self) -> _DirLock:
        if self.fd >= 0:
            lock_fd(self.fd)
        return self

    def sync(self) -> None:
        try:
            if self.fd >= 0:
                os.fsync(self.fd)
        except OSError:  # some filesystems cannot fsync a directory
            pass

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def write_files(directory: str | os.PathLike[str], files: dict[str, bytes], old: dict[str, str | None]) -> None:
    """Replace directory/NAME with files[NAME] for every name, all or none. `old`: the
    sha256 each target must still have (None: must not exist); a target changed since is
    an MlenvError and nothing is written. Files are replaced in the dict's order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    recover(directory)
    temps: list[tuple[int, Path]] = []
    committed = False
    with _DirLock(directory) as dlock:
        try:
            entries: list[dict] = []
            for name, data in files.items():
                with interrupts_held():  # the file exists only once `temps` holds it, for the finally below
                    fd, tmp = make_temp(directory, name, ".new")
                    temps.append((fd, tmp))
                write_fd(fd, data)
                os.chmod(tmp, 0o644)
                entries.append({"name": name, "tmp": tmp.name, "old": old.get(name),
                                "new": sha256(data).hexdigest()})  # fmt: skip
            for e in entries:
                if _sha256_of(directory / e["name"]) != e["old"]:
                    raise MlenvError(f"{directory / e['name']} changed while mlenv was writing it; nothing was written",
                                     hint="retry")  # fmt: skip
            journal = json.dumps({"format": FORMAT, "files": entries}, sort_keys=True)
            atomic_write(directory / JOURNAL, journal + "\n")
            committed = True
            _apply(directory, entries, dlock)
        except BaseException:
            # The journal's rename is the commit point. A signal (KeyboardInterrupt, the CLI's SIGTERM
            # exception) can land after that rename and before `committed = True`: a journal here is
            # ours (recover() ran under this lock), so the change is committed all the same.
            if committed or (directory / JOURNAL).exists():
                committed = True  # the finally keeps the temporary files the journal names
                # finish it (two renames), then report the interruption
                try:
                    _recover_locked(directory, dlock)
                except Exception:  # the next command completes it
                    pass
            raise
        finally:
            for fd, tmp in temps:
                if not committed:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
                os.close(fd)


def _apply(directory: Path, entries: list[dict], dlock: _DirLock) -> list[str]:
    """Rename the journal's temporary files over their targets; remove the journal."""
    notes = []
    applied = False
    for i, e in enumerate(entries):
        target, tmp = directory / e["name"], directory / e["tmp"]
        if not tmp.exists():
            applied = True  # renamed before the process died
            continue
        if _sha256_of(tmp) != e["new"]:  # cannot happen after a commit; a damaged or forged journal
            notes.append(f"{tmp}: does not hold what {JOURNAL} says; discarded")
            tmp.unlink(missing_ok=True)
            continue
        current = _sha256_of(target)
        if current == e["new"]:
            tmp.unlink()
            applied = True
        elif current == e["old"]:
            os.replace(tmp, target)
            applied = True
        elif not applied:  # changed by someone else before anything was replaced: roll back
            for rest in entries[i:]:
                (directory / rest["tmp"]).unlink(missing_ok=True)
            notes.append(f"{target} was changed after an interrupted mlenv write; the interrupted write was dropped")
            break
        else:
            tmp.unlink()
            notes.append(f"{target} was changed after an interrupted mlenv write; kept as it is")
    dlock.sync()
    (directory / JOURNAL).unlink(missing_ok=True)
    dlock.sync()
    return notes


def _read_journal(directory: Path) -> list[dict] | None:
    try:
        data = json.loads((directory / JOURNAL).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return []
    entries = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(entries, list):
        return []
    good = []
    for e in entries:  # the journal is input too: plain names only, in this directory
        if not isinstance(e, dict):
            return []
        name, tmp, old, new = e.get("name"), e.get("tmp"), e.get("old"), e.get("new")
        if not (isinstance(name, str) and _PLAIN.match(name) and isinstance(tmp, str)
                and tmp.startswith(f".{name}.") and tmp.endswith(".new") and "/" not in tmp and "\\" not in tmp
                and isinstance(new, str) and _SHA256.match(new)
                and (old is None or (isinstance(old, str) and _SHA256.match(old)))):  # fmt: skip
            return []
        good.append(e)
    return good


def _recover_locked(directory: Path, dlock: _DirLock) -> list[str]:
    entries = _read_journal(directory)
    notes: list[str] = []
    if entries is not None:
        notes = _apply(directory, entries, dlock)
    sweep_temp_files(directory, PROJECT_FILES)
    return notes


def recover(directory: str | os.PathLike[str]) -> list[str]:
    """Complete an interrupted `write_files` in directory and remove the temporary files
    of dead writers. Cheap when there is nothing to do (one listdir). Returns notes about
    targets someone else changed meanwhile."""
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    if not any(n.startswith(".mlenv.") for n in names):
        return []
    try:
        with _DirLock(directory) as dlock:
            return _recover_locked(directory, dlock)
    except OSError:  # a read-only or vanished directory: nothing to complete here
        return []
