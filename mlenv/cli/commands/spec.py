"""`mlenv init`, `mlenv add`, `mlenv remove` (mlenv.api.spec)."""

from __future__ import annotations

import click

from ...api import spec as api
from ..options import spec_option
from ..render import note


@click.command()
@click.option(
    "--name", default=None, help="Environment name (default: the imported file's own name, else the directory name)."
)
@click.option("--python", "python", default="3.11", show_default=True, help="Python version.")
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Import environment.yml, requirements.txt, pyproject.toml or an Azure ML environment YAML.",
)
@click.option(
    "--curated", default=None, metavar="NAME", help="Start from a curated environment (see `mlenv curated list`)."
)
@click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME",
    help="With --from pyproject.toml: include these optional dependencies (repeatable).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME",
    help="With --from pyproject.toml: include these dependency groups (repeatable).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing mlenv.toml.")
@click.option("--file", "-f", "spec_file", type=click.Path(dir_okay=False), default="mlenv.toml", show_default=True)
def init(name, python, from_file, curated, extras, groups, force, spec_file):  # fmt: skip
    """Write a starter mlenv.toml (commented), or import one."""
    result = api.init(spec_file, name=name, python=python, from_file=from_file, curated=curated, force=force,
                      extras=extras, groups=groups)  # fmt: skip
    for n in result.notes:
        note(n)
    click.echo(result.message())


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--conda", is_flag=True, help="Add to [conda] dependencies instead of [pypi].")
@spec_option()
def add(packages, conda, spec_file):
    """Add packages (PEP 508 strings, or MatchSpecs with --conda).

    A package already listed is replaced, in place."""
    for change in api.add(packages, conda=conda, spec=spec_file).changes:
        click.echo(change)


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--conda", is_flag=True, help="Remove only from [conda] dependencies.")
@click.option("--pypi", is_flag=True, help="Remove only from [pypi] dependencies.")
@spec_option()
def remove(packages, conda, pypi, spec_file):
    """Remove packages by name from [pypi] and/or [conda] dependencies."""
    for change in api.remove(packages, conda=conda, pypi=pypi, spec=spec_file).changes:
        click.echo(change)
