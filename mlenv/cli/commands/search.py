"""`mlenv search SPEC`: every registered version whose lock holds a matching package."""

from __future__ import annotations

import sys

import click

from ...api import registry as api
from ..options import archived_option, json_option, platform_option, registry_option
from ..render import aligned, emit_json, warn, when


@click.command()
@click.argument("query", metavar="SPEC")
@registry_option()
@platform_option("Only this platform (e.g. linux-64).", default=None)
@archived_option("versions")
@click.option("--reindex", is_flag=True, help="Rebuild the derived search index from the (verified) locks first.")
@json_option()
def search(query, registry_url, platform, show_all, reindex, as_json):
    """Find every environment version whose lock holds a package: `numpy`,
    `numpy==1.26.4`, `urllib3<2.2.2`, `conda:openssl>=3`, `pypi:torch~=2.5`.

    PEP 440 specifiers; names compared normalized; a conda package is also found
    under the PyPI name it provides. Exit status 0 when something matched, 1 when
    nothing did (like grep). The derived index lives in the user cache (docs/ui.md).
    """
    found = api.search(query, registry=registry_url, platform=platform, include_archived=show_all,
                       reindex=reindex)  # fmt: skip
    result, registry = found.result, found.registry
    if as_json:
        emit_json(found.to_json())
    else:
        for _ref, problem in result.problems:
            warn(problem)
        if result.hits:
            rows = [
                [
                    h.version.ref,
                    h.row.platform,
                    h.row.name,
                    h.row.version,
                    h.row.manager,
                    ",".join(h.version.labels),
                    when(h.version.created),
                    "yes" if h.version.archived else "",
                ]
                for h in result.hits
            ]
            header = ["VERSION", "PLATFORM", "PACKAGE", "PKG VERSION", "MANAGER", "LABELS", "CREATED", "ARCHIVED"]
            if not show_all:
                rows, header = [r[:-1] for r in rows], header[:-1]
            click.echo("\n".join(aligned([header, *rows])))
        envs = len({h.version.ref for h in result.hits})
        click.echo(
            f"{envs} version(s) of {len({h.version.name for h in result.hits})} environment(s) match "
            f"{result.query} among {result.searched} version(s) in {registry}",
            err=True,
        )
    if not result.hits:
        sys.exit(1)
