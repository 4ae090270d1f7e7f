"""Entry point. Commands live in mlenv/commands/<area>.py and are imported only
when invoked, so `mlenv --help` and a no-op `mlenv lock` start fast."""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__

# command name -> (module under mlenv.commands, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("spec", "init", "Write a starter mlenv.toml (or import one with --from)."),
    "add": ("spec", "add", "Add packages to mlenv.toml, keeping its formatting."),
    "remove": ("spec", "remove", "Remove packages from mlenv.toml, keeping its formatting."),
    "lock": ("lock", "lock", "Solve mlenv.toml into mlenv.lock."),
    "hash": ("lock", "hash_", "Print the content hash of mlenv.lock."),
    "install": ("install", "install", "Materialize mlenv.lock into a prefix."),
    "verify": ("install", "verify", "Compare a prefix or an image with mlenv.lock."),
    "build": ("build", "build", "Build (or reuse) the Docker image of mlenv.lock."),
    "images": ("build", "images", "List the local images mlenv built."),
    "register": ("registry", "register", "Record the current spec and lock as a version."),
    "list": ("registry", "list_", "List registered environments."),
    "versions": ("registry", "versions", "List the versions of an environment."),
    "show": ("registry", "show", "Show one registered version."),
    "diff": ("registry", "diff", "Compare two registered versions."),
    "label": ("registry", "label", "Point a label at a version."),
    "archive": ("registry", "archive", "Hide an environment or version from list and latest."),
    "unarchive": ("registry", "unarchive", "Undo archive."),
    "restore": ("registry", "restore", "Bring back the spec and lock of a registered version."),
    "gc": ("registry", "gc", "Remove local mlenv images nothing references."),
    "search": ("search", "search", "Find every registered version that holds a package."),
    "ui": ("ui", "ui", "Serve (or export) a read-only web catalog of a registry."),
    "export": ("formats", "export", "Export mlenv.lock to another format."),
    "curated": ("curated", "curated", "The curated environment catalog."),
    "cache": ("cache", "cache", "Show, prune or clean mlenv's host caches."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attr, _ = entry
        try:
            mod = importlib.import_module(f"mlenv.commands.{module}")
        except ModuleNotFoundError as exc:  # a command whose module is not there yet
            if exc.name == f"mlenv.commands.{module}":
                return None
            raise
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table above so --help imports no command module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlenv")
@click.option("-C", "directory", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Run as if mlenv was started in DIR (like git -C).")
def cli(directory: str | None) -> None:
    """Reproducible machine-learning environments: declare in mlenv.toml, lock,
    build a content-addressed image, register versions, restore them."""
    if directory:
        import os

        os.chdir(directory)


def main(argv: list[str] | None = None) -> None:
    from .errors import MlenvError

    try:
        cli.main(args=argv, prog_name="mlenv", standalone_mode=False)
    except MlenvError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        # Disk full, permission denied, ...: say which file, not a traceback.
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        click.echo(f"error:{name}: {exc.strerror or exc}", err=True)
        sys.exit(2)


def entry() -> None:
    """The `mlenv` console script and `python -m mlenv.cli`: main(), then exit.

    py-rattler 0.28 crashes (SIGSEGV/SIGABRT) in about 1 of 30 interpreter
    exits after a failed solve, while its runtime is torn down; reproduced
    with rattler alone. Once rattler is loaded, mlenv has written and closed
    everything it writes, so it flushes its output and leaves without
    interpreter finalization, and the exit code is the one mlenv chose."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    if "rattler" in sys.modules:
        import os

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
