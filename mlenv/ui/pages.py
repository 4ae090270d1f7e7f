"""Every page of the catalog, rendered from a Catalog with Jinja2: one function per
page, shared by the server (mlenv.ui.server) and the static export (mlenv.ui.export).

Autoescaping is on for every template and no template marks registry data safe:
names, descriptions, labels, spec text and package names come from other people.
Text that may hold a URL also passes through views.scrub (credentials out).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..registry.base import NotFound
from . import paths
from .catalog import SearchResult
from .chart import Chart, bar_chart
from .search import Query, QueryError, version_order
from .views import platforms, scrub, size_groups

if TYPE_CHECKING:
    import jinja2

    from ..registry.base import Version
    from .catalog import Catalog

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
ALL_PAIRS_UP_TO = 12
# The exported site has no server to send headers: its pages carry the policy themselves
# (frame-ancestors has no effect in a <meta>, so it is left out).
STATIC_CSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'"  # versions of one name: up to this many, the export renders every pair's diff


def _size(n: float | None) -> str:
    from ..runtime.text import human_size

    return "?" if n is None else human_size(n)


def _created(text: object) -> str:
    s = str(text or "")
    return s[:16].replace("T", " ") if s else ""


def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(size=_size, created=_created, scrub=scrub)
    return env


def shell(*words: str) -> str:
    """A command to copy into a POSIX shell: every word quoted where it needs it, so a
    name from the registry (`x; rm -rf ~`) stays one argument."""
    import shlex

    return shlex.join(words)


def diff_pairs(numbers: list[int]) -> list[tuple[int, int]]:
    """The diffs the export renders for one name: every pair while there are few versions,
    else each version against the previous one and against the newest."""
    numbers = sorted(numbers)
    if len(numbers) <= ALL_PAIRS_UP_TO:
        return [(a, b) for i, a in enumerate(numbers) for b in numbers[i + 1 :]]
    pairs = set(itertools.pairwise(numbers))
    pairs |= {(a, numbers[-1]) for a in numbers[:-1]}
    return sorted(pairs)


class Site:
    """The pages of one catalog. static_site: rendering for the export (no server behind
    the forms: the compare form and the search run in the browser)."""

    def __init__(self, catalog: Catalog, *, static_site: bool = False):
        self.catalog = catalog
        self.static_site = static_site
        self.env = environment()
        self.env.filters["public"] = catalog.public

    def render(self, template: str, page: str, **context) -> str:
        return self.env.get_template(template).render(
            page=page,
            rel=lambda target: paths.rel(target, page),
            paths=paths,
            registry=self.catalog.label,
            static_site=self.static_site,
            mlenv_version=__version__,
            csp=STATIC_CSP,
            **context,
        )

    # --- pages ----------------------------------------------------------------------
    def home(self) -> str:
        return self.render("index.html", paths.HOME, section="envs", envs=self.catalog.environments())

    def curated_index(self) -> str:
        return self.render("curated.html", paths.CURATED, section="curated", entries=self.catalog.curated())

    def curated_entry(self, name: str) -> str:
        c = self.catalog.curated_entry(name)
        lock = c.lock
        return self.render(
            "curated_entry.html",
            paths.curated(name),
            section="curated",
            e=c.entry,
            lock=lock,
            spec_text=c.spec_text,
            init_cmd=shell("mlenv", "init", "--curated", c.entry.name, "--name", "my-env"),
            views=platforms(lock) if lock else [],
            size_charts=self._size_charts(lock) if lock else [],
            # a package page exists only for packages some registered version holds
            linked={key for key, _ in self.catalog.package_names()},
        )

    def environment(self, name: str) -> str:
        versions = self.catalog.versions(name)
        live = [v for v in versions if not v.archived]
        return self.render(
            "environment.html",
            paths.environment(name),
            section="envs",
            name=name,
            versions=versions,
            latest=live[-1] if live else None,
            pairs=diff_pairs([v.version for v in versions]),
        )

    def version(self, name: str, number: int) -> str:
        d = self.catalog.version(name, number)
        v, lock = d.version, d.lock
        base = lock.image.get("reference") or lock.image.get("base") or ""
        layers_chart, layers_note = self._layers(v, lock)
        pairs = diff_pairs([x.version for x in d.siblings])
        links = [(f"{a} → {b}", paths.diff(name, a, b)) for a, b in pairs if number in (a, b)]
        return self.render(
            "version.html",
            paths.version(name, number),
            section="envs",
            v=v,
            lock=lock,
            spec_text=d.spec_text,
            views=platforms(lock),
            size_charts=self._size_charts(lock),
            base=base,
            base_digest=lock.image.get("digest"),
            restore_cmd=shell("mlenv", "restore", f"{v.name}@{v.version}", *self.catalog.registry_args),
            pull_cmd=self._pull_cmd(v),
            others=[x for x in d.siblings if x.version != number],
            pairs=pairs,
            diff_links=links,
            layers_chart=layers_chart,
            layers_note=layers_note,
        )

    def diff(self, name: str, a: int, b: int) -> str:
        va, vb = self.catalog.get(name, a), self.catalog.get(name, b)
        return self._diff(va, vb, paths.diff(name, a, b))

    def compare(self, a_text: str, b_text: str) -> tuple[str | None, str]:
        """(redirect target, "") for two versions of one name (their diff page, older first,
        as the export has them), else (None, html of the diff at compare.html)."""
        va, vb = self.catalog.resolve(a_text), self.catalog.resolve(b_text)
        if va.name == vb.name and va.version != vb.version:
            lo, hi = sorted((va.version, vb.version))
            return paths.diff(va.name, lo, hi), ""
        return None, self._diff(va, vb, paths.COMPARE)

    def _diff(self, va: Version, vb: Version, page: str) -> str:
        d = self.catalog.diff(va, vb)
        env_changes = bool(
            d["python"]
            or d["base_image"]
            or d["apt_packages"]["added"]
            or d["apt_packages"]["removed"]
            or any(d["variables"].values())
            or d["platforms_added"]
            or d["platforms_removed"]
        )
        return self.render("diff.html", page, section="envs", a=va, b=vb, d=d, env_changes=env_changes)

    def search(self, query_text: str = "", platform: str = "", include_archived: bool = False) -> str:
        result: SearchResult | None = None
        error = ""
        if query_text.strip() and not self.static_site:
            try:
                result = self.catalog.search(query_text, platform=platform or None, include_archived=include_archived)
            except QueryError as exc:
                error = str(exc)
        return self.render(
            "search.html",
            paths.SEARCH,
            section="search",
            query_text=query_text,
            platform=platform,
            include_archived=include_archived,
            platforms=self.platforms(),
            result=result,
            error=error,
        )

    def platforms(self) -> list[str]:
        return self.catalog.platforms()

    def packages_index(self) -> str:
        return self.render("packages.html", paths.PACKAGES, section="packages", names=self.catalog.package_names())

    def package(self, key: str) -> str:
        result = self.catalog.search(Query(key), include_archived=True)
        if not result.hits:
            raise NotFound(f"no version of any environment holds a package named {key!r}")
        counts = Counter(h.row.version for h in result.hits)
        ordered = sorted(counts.items(), key=lambda kv: version_order(kv[0]))
        return self.render(
            "package.html", paths.package(key), section="packages", key=key, result=result, versions=ordered
        )

    def error(self, title: str, message: str, page: str = "error.html") -> str:
        return self.render("error.html", page, section="", title=title, message=message)

    # --- parts ----------------------------------------------------------------------
    def _size_charts(self, lock) -> list[tuple[str, Chart]]:
        out = []
        for plat in sorted(lock.platforms):
            groups = size_groups(lock, plat)
            if not groups:
                continue
            unknown = sum(g.unknown for g in groups)
            caption = (
                f"{plat}: download size of the locked packages, {_size(sum(g.size for g in groups))} in "
                f"{len(groups)} build step(s), grouped as mlenv build installs them (one image layer each)"
                + (f"; {unknown} package(s) without a recorded size" if unknown else "")
            )
            items = [(g.label, g.size, ", ".join(g.packages)) for g in groups]
            out.append((plat, bar_chart(items, caption, fmt=_size)))
        return out

    def _layers(self, v: Version, lock) -> tuple[Chart | None, str]:
        plat = next((p for p in sorted(lock.platforms) if p.startswith("linux")), None)
        if not (v.image and v.image_digest):
            return None, ""
        if plat is None or not self.catalog.fetches_layers(v):
            return None, (
                "Layer sizes of the pushed image are read only from the registry being browsed "
                "(mlenv ui --image-layers always reads them from any registry)."
            )
        got = self.catalog.image_layers(v, plat)
        if got is None or isinstance(got, str):
            return None, f"Layer sizes of the pushed image are not available: {got or 'not read'}"
        items = [
            (
                scrub(layer.created_by)[:80] or layer.digest[7:19],
                layer.size,
                f"{layer.digest[:19]}… {scrub(layer.created_by)}",
            )
            for layer in got.layers
        ]
        caption = (
            f"the pushed image ({scrub(got.reference)}): {_size(got.total)} compressed in "
            f"{len(got.layers)} layer(s), as the registry stores them"
        )
        return bar_chart(items, caption, fmt=_size), ""

    def _pull_cmd(self, v: Version) -> str | None:
        from ..image_ref import parse
        from .layers import DIGEST_RE

        if not (v.image and v.image_digest and DIGEST_RE.match(v.image_digest)):
            return None
        try:
            ref = parse(v.image)
        except ValueError:
            return None
        return shell("docker", "pull", f"{scrub(ref.name)}@{v.image_digest}")
