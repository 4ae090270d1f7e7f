"""The `mlenv` command group. Commands live in mlenv/cli/commands/<area>.py and are
imported only when invoked, so `mlenv --help` and a no-op `mlenv lock` start fast.

COMMANDS also records the API function each command calls (its one call into
mlenv.api, mlenv.curated or mlenv.cache): tests/api/test_api.py checks
every entry by intercepting that call.
"""

from __future__ import annotations

# The C module beneath `signal`: that one builds its enums at import (~0.8 ms of every
# command); the SIGTERM handler needs only the numbers. Loaded at interpreter start.
import _signal  # type: ignore[import-not-found]  # typeshed has no stub for it
import importlib
import sys

import click

from .. import __version__

# command -> (module under mlenv.cli.commands, attribute, one-line help, the API function it calls)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "init": ("spec", "init", "Write a starter mlenv.toml (or import one with --from).", "mlenv.api.spec:init"),
    "add": ("spec", "add", "Add packages to mlenv.toml, keeping its formatting.", "mlenv.api.spec:add"),
    "remove": ("spec", "remove", "Remove packages from mlenv.toml, keeping its formatting.", "mlenv.api.spec:remove"),
    "lock": ("lock", "lock", "Solve mlenv.toml into mlenv.lock.", "mlenv.api.lock:lock"),
    "hash": ("lock", "hash_", "Print the content hash of mlenv.lock.", "mlenv.api.lock:content_hash"),
    "install": ("install", "install", "Materialize mlenv.lock into a prefix.", "mlenv.api.install:install"),
    "verify": ("install", "verify", "Compare a prefix or an image with mlenv.lock.", "mlenv.api.install:verify"),
    "build": ("build", "build", "Build (or reuse) the Docker image of mlenv.lock.", "mlenv.api.image:build"),
    "rebase": ("build", "rebase", "Put an older image's environment on the lock's new base.", "mlenv.api.image:rebase"),
    "images": ("build", "images", "List the local images mlenv built.", "mlenv.api.image:images"),
    "register": ("registry", "register", "Record the current spec and lock as a version.",
                 "mlenv.api.registry:register"),
    "list": ("registry", "list_", "List registered environments.", "mlenv.api.registry:environments"),
    "versions": ("registry", "versions", "List the versions of an environment.", "mlenv.api.registry:versions"),
    "show": ("registry", "show", "Show one registered version.", "mlenv.api.registry:show"),
    "diff": ("registry", "diff", "Compare two registered versions.", "mlenv.api.registry:diff"),
    "label": ("registry", "label", "Point a label at a version.", "mlenv.api.registry:label"),
    "archive": ("registry", "archive", "Hide an environment or version from list and latest.",
                "mlenv.api.registry:archive"),
    "unarchive": ("registry", "unarchive", "Undo archive.", "mlenv.api.registry:unarchive"),
    "restore": ("registry", "restore", "Bring back the spec and lock of a registered version.",
                "mlenv.api.registry:restore"),
    "gc": ("build", "gc", "Remove local mlenv images nothing references.", "mlenv.api.image:gc"),
    "search": ("search", "search", "Find every registered version that holds a package.", "mlenv.api.registry:search"),
    "ui": ("ui", "ui", "Serve (or export) a read-only web catalog of a registry.", "mlenv.api.ui:ui"),
    "export": ("formats", "export", "Export mlenv.lock to another format.", "mlenv.api.export:export"),
    "curated": ("curated", "curated", "The curated environment catalog.", "mlenv.curated:list"),
    "cache": ("cache", "cache", "Show, prune or clean mlenv's host caches.", "mlenv.cache:scan"),
}  # fmt: skip


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attr, _, _ = entry
        mod = importlib.import_module(f"mlenv.cli.commands.{module}")
        return getattr(mod, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table above so --help imports no command module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlenv")
@click.option("-C", "directory", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="Run as if mlenv was started in DIR (like git -C).")  # fmt: skip
def cli(directory: str | None) -> None:
    """Reproducible machine-learning environments: declare in mlenv.toml, lock,
    build a content-addressed image, register versions, restore them."""
    if directory:
        import os

        os.chdir(directory)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so every cleanup runs (temporary
    files are removed, a committed restore is completed) before mlenv exits with 143."""


def _on_sigterm(signum, frame) -> None:
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


def _say_error(text: str) -> None:
    """Every error line passes the one scrubber (mlenv.runtime.secrets)."""
    from ..runtime.secrets import scrub

    click.echo(f"error: {scrub(text)}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every MlenvError becomes one `error:` line (and its hint) and its exit code."""
    from ..errors import MlenvError

    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="mlenv", standalone_mode=False)
    except MlenvError as exc:
        _say_error(str(exc))
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, Terminated):
            click.echo("terminated", err=True)
            sys.exit(143)
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Terminated:
        click.echo("terminated", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        # Disk full, permission denied, ...: say which file, not a traceback.
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _say_error(f"{where}{exc.strerror or exc}")
        sys.exit(2)
