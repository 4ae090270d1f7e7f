"""`mlenv ui --export DIR`: the catalog as a static site of plain files.

The same pages as the server (mlenv.ui.pages, static_site=True), at the same relative
paths, so the directory works from file:// and from any static host. What needs a server
is done differently: the compare form goes to the exported diff pages (every pair of a
name's versions while it has at most 12, else each against the previous and the newest),
and the package search runs in the browser (static/search.js over search-data.js, written
here from the search index).

The site is written into a new directory next to DIR and renamed into place, so DIR
always holds a complete export; a DIR that exists, is not empty and is not an earlier
export is refused. The output is a function of the registry's content (sorted, no
timestamps, no host paths): exporting twice gives identical bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MlenvError
from . import paths
from .pages import STATIC, Site, diff_pairs

if TYPE_CHECKING:
    from .catalog import Catalog

MARKER = ".mlenv-ui-export"
DATA = "search-data.js"
DATA_FORMAT = 1


@dataclass
class ExportReport:
    directory: Path
    files: int = 0
    problems: list[str] = field(default_factory=list)


def site_files(catalog: Catalog) -> tuple[dict[str, bytes], list[str]]:
    """path -> bytes of every file of the static site, and the pages that could not be
    made (their place holds an error page)."""
    site = Site(catalog, static_site=True)
    files: dict[str, str | bytes] = {}
    problems: list[str] = []

    def page(path: str, make) -> None:
        try:
            files[path] = make()
        except MlenvError as exc:
            problems.append(f"{path}: {str(exc).splitlines()[0]}")
            files[path] = site.error("Cannot show this page", str(exc), path)

    page(paths.HOME, site.home)
    page(paths.CURATED, site.curated_index)
    for entry in catalog.curated():
        page(paths.curated(entry.name), lambda name=entry.name: site.curated_entry(name))
    for name, versions in sorted(catalog.listing().items()):
        page(paths.environment(name), lambda name=name: site.environment(name))
        for v in versions:
            page(paths.version(name, v.version), lambda name=name, n=v.version: site.version(name, n))
        for a, b in diff_pairs([v.version for v in versions]):
            page(paths.diff(name, a, b), lambda name=name, a=a, b=b: site.diff(name, a, b))
    page(paths.PACKAGES, site.packages_index)
    for key, _ in catalog.package_names():
        page(paths.package(key), lambda key=key: site.package(key))
    page(paths.SEARCH, site.search)
    files[DATA] = search_data(catalog)
    for asset in sorted(STATIC.iterdir()):
        if asset.is_file() and not asset.name.startswith("."):
            files[paths.static(asset.name)] = asset.read_bytes()
    files[".nojekyll"] = b""  # GitHub Pages: serve the _h... paths as they are
    out = {path: data.encode("utf-8") if isinstance(data, str) else data for path, data in files.items()}
    return out, problems


def search_data(catalog: Catalog) -> str:
    """The static search's data: every version whose lock is indexed, and each lock's
    packages, as `window.MLENV_SEARCH = {...};` (a script, so file:// pages can load it)."""
    versions, rows, _ = catalog.corpus(include_archived=True)
    versions = sorted(versions, key=lambda v: (v.name, v.version))
    by_lock: dict[str, list[list]] = {}
    for r in sorted(rows, key=lambda r: (r.lock_sha256, r.platform, r.manager, r.key, r.version, r.name)):
        by_lock.setdefault(r.lock_sha256, []).append([r.platform, r.manager, r.name, r.key, r.alias or "", r.version])
    shas = sorted(by_lock)
    index = {sha: i for i, sha in enumerate(shas)}
    data = {
        "format": DATA_FORMAT,
        "locks": [by_lock[sha] for sha in shas],
        "packages": {r.key: paths.package(r.key) for r in rows},
        "versions": [
            {
                "name": v.name,
                "version": v.version,
                "archived": v.archived,
                "labels": sorted(v.labels),
                "created": v.created,
                "lock": index[v.lock_sha256],
                "page": paths.version(v.name, v.version),
            }
            for v in versions
            if v.lock_sha256 in index
        ],
    }
    return "window.MLENV_SEARCH = " + json.dumps(data, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + ";\n"


def export(catalog: Catalog, directory: Path) -> ExportReport:
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise MlenvError(f"{directory}: exists and is not a directory", hint="choose another --export DIR")
        if any(directory.iterdir()) and not (directory / MARKER).exists():
            raise MlenvError(
                f"{directory}: not empty and not an earlier mlenv export; not touched",
                hint="export into a new or empty directory",
            )
    files, problems = site_files(catalog)
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{directory.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        for rel, data in sorted(files.items()):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / MARKER).write_text("written by `mlenv ui --export`; the next export replaces this directory\n")
        if directory.exists():
            old = parent / f".{directory.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportReport(directory, len(files), problems)
