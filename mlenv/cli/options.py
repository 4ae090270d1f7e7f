"""The options several commands share, declared once: name, type, metavar, default and
help. Each function returns a click decorator; a command passes what is its own
(a help text, a default) as arguments.

Where an option also has an environment variable and a setting (--registry,
--ca-bundle; --builder, mlenv build's own), the command passes what was given (None
when nothing was) and the layer below applies the one precedence, the same for CLI
and API: the argument, else the environment variable, else the user settings file
(mlenv.api.options.resolve; the registry: mlenv.registry.open_registry). So no option
here has a click envvar.

Imported by every command module, never by `mlenv --help` (mlenv.cli.main): click only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.decorators import FC


def spec_option() -> Callable[[FC], FC]:
    """`--file/-f PATH` (spec_file): the spec to read; None means ./mlenv.toml (after
    `mlenv -C DIR`, DIR's). `mlenv init` has its own --file: the file it writes."""
    return click.option(
        "--file", "-f", "spec_file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
        help="The spec file (default: ./mlenv.toml).",
    )  # fmt: skip


def lock_option(default_note: str = "") -> Callable[[FC], FC]:
    """`--lock PATH` (lock_file): the lock to read; None means the lock next to the spec.
    `default_note` adds to the help's default clause what the command falls back to besides."""
    return click.option(
        "--lock", "lock_file", type=click.Path(dir_okay=False), metavar="PATH",
        help=f"The lock file (default: next to the spec, or ./mlenv.lock{default_note}).",
    )  # fmt: skip


def registry_option() -> Callable[[FC], FC]:
    """`--registry URL` (registry_url): the registry a command reads or writes. None is
    resolved by mlenv.registry.open_registry: $MLENV_REGISTRY, else `registry` in the user
    settings, else the embedded registry in the user data directory."""
    return click.option(
        "--registry", "registry_url", metavar="URL", default=None,
        help="Registry: a directory (embedded, the default is the user data dir), oci://host[:port]/namespace "
             "or azureml://... (default: $MLENV_REGISTRY, else `registry` in the user settings).",
    )  # fmt: skip


def ca_bundle_option(downloads: str, note: str = "") -> Callable[[FC], FC]:
    """`--ca-bundle FILE` (ca_bundle): the CA bundle for `downloads` (what the command
    fetches). None is resolved by the API (mlenv.api.options.ca_bundle): MLENV_CA_BUNDLE,
    else the ca-bundle setting. `note` ends the help, after the precedence."""
    return click.option(
        "--ca-bundle", type=click.Path(dir_okay=False), metavar="FILE",
        help=f"CA bundle for {downloads} (else MLENV_CA_BUNDLE, else the ca-bundle setting){note}.",
    )  # fmt: skip


def platform_option(help: str, *decls: str, **kwargs: Any) -> Callable[[FC], FC]:
    """`--platform PLATFORM` (platform): one platform of the lock (a conda subdir name such
    as linux-64). `decls` adds short names (-p); `kwargs` the default, where it has one.
    (`mlenv lock --platform` is a repeatable filter of its own.)"""
    return click.option("--platform", *decls, "platform", metavar="PLATFORM", help=help, **kwargs)


def dir_option(*decls: str, help: str, exists: bool = False, **kwargs: Any) -> Callable[[FC], FC]:
    """An option naming a directory (metavar DIR; a file there is refused). With `exists`
    the directory must exist already; `kwargs` go to click.option (default, required ...)."""
    return click.option(*decls, type=click.Path(exists=exists, file_okay=False), metavar="DIR", help=help, **kwargs)


def repository_option() -> Callable[[FC], FC]:
    """`--repository REPO`: where an image is named, REPO/NAME:SHORT_HASH (default mlenv, local)."""
    return click.option(
        "--repository", default="mlenv", show_default=True, metavar="REPO",
        help="Image repository: the image is REPO/NAME:SHORT_HASH; `host:port/ns` names a registry.",
    )  # fmt: skip


def push_option() -> Callable[[FC], FC]:
    """`--push`: also push the image to the registry that --repository names."""
    return click.option("--push", is_flag=True, help="Push the image to the registry named by --repository.")


def layout_option(verb: str = "Write", note: str = "") -> Callable[[FC], FC]:
    """`--layout DIR|FILE.tar`: write the image as an OCI image layout (a directory, or one
    tar file when the path ends in .tar). `verb` and `note` fit the help to the command."""
    return click.option(
        "--layout", type=click.Path(), metavar="DIR|FILE.tar",
        help=f"{verb} the image as an OCI image layout into DIR, or as one tar file when the path ends in .tar{note}.",
    )  # fmt: skip


def archived_option(things: str) -> Callable[[FC], FC]:
    """`--all` (show_all): list archived `things` too (they are hidden by default)."""
    return click.option("--all", "show_all", is_flag=True, help=f"Include archived {things}.")


def yes_option() -> Callable[[FC], FC]:
    """`--yes`: really delete; without it a deleting command is a dry run that says what would go."""
    return click.option("--yes", is_flag=True, help="Delete (default: dry run, say what would go).")


def json_option(help: str = "Machine-readable output on stdout.") -> Callable[[FC], FC]:
    """`--json` (as_json): the result as JSON on stdout (mlenv.cli.render.emit_json) instead
    of text; progress is then not shown. `help` names what the JSON holds, where that helps."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def quiet_option() -> Callable[[FC], FC]:
    """`--quiet/-q`: no progress lines and no summary on success (errors still print)."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress output.")
