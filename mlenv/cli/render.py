"""How commands show things: options shared by commands, JSON, warnings, progress on
stderr (a rich spinner on a terminal, plain lines otherwise), tables, sizes."""

from __future__ import annotations

import sys
from itertools import starmap
from typing import TYPE_CHECKING, Literal

import click

if TYPE_CHECKING:
    from types import TracebackType

    from rich.status import Status

spec_option = click.option(
    "--file", "-f", "spec_file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
    help="The spec file (default: ./mlenv.toml).",
)  # fmt: skip
registry_option = click.option(
    "--registry", "registry_url", metavar="URL", default=None,
    help="Registry: a directory (embedded, the default is the user data dir), oci://host[:port]/namespace "
         "or azureml://... (default: $MLENV_REGISTRY, else `registry` in the user settings).",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


def emit_json(data: object) -> None:
    """JSON on stdout, through the one scrubber (a ${VAR} userinfo stays: it is no secret)."""
    from ..runtime.secrets import scrub
    from .jsontext import dumps  # json.dumps(data, indent=2, sort_keys=True), faster on long listings

    click.echo(scrub(dumps(data)))


def warn(message: str) -> None:
    from ..runtime.secrets import scrub

    click.echo(f"warning: {scrub(message)}", err=True)


def note(message: str) -> None:
    from ..runtime.secrets import scrub

    click.echo(f"note: {scrub(message)}", err=True)


class ProgressLine:
    """A rich spinner on a terminal, plain lines on stderr otherwise; `step` and `line`
    show a build's steps and the latest log line."""

    def __init__(self, quiet: bool = False, title: str = "working…"):
        self.quiet = quiet
        self.title = title
        self.status: Status | None = None

    def __enter__(self) -> ProgressLine:
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(self.title)
            self.status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        from ..runtime.secrets import scrub

        message = scrub(message)
        if self.status is not None:
            self.status.update(message)
        else:
            click.echo(f"  {message}", err=True)

    def step(self, text: str) -> None:
        if self.quiet:
            return
        from ..image.dockerfile import describe

        text = describe(text)
        if self.status is not None:
            self.status.update(f"step {text[:110]}")
        else:
            click.echo(f"  step {text[:160]}", err=True)

    def line(self, text: str) -> None:
        if self.status is not None:
            self.status.update(str(self.status.status).split("\n")[0] + "\n  " + text[:110])

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if self.status is not None:
            self.status.__exit__(exc_type, exc, tb)
        return False


def table(rows: list[list[str]], header: list[str], title: str | None = None) -> None:
    """A rich table on a terminal (small outputs); aligned plain text otherwise (fast, pipe-friendly)."""
    if sys.stdout.isatty() and len(rows) <= 2000:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, title_justify="left", header_style="bold")
        for h in header:
            t.add_column(h, overflow="fold")
        for r in rows:
            t.add_row(*r)
        Console().print(t)
        return
    out = [title] if title else []
    if all(len(r) == len(header) for r in rows):  # one C-level pass per column and per row (10,000 `versions`)
        columns = list(zip(*rows, strict=True)) or [()] * len(header)
        widths = [max(len(h), max(map(len, c), default=0)) for h, c in zip(header, columns, strict=True)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)  # `:<w` pads a str as ljust(w) does
        out.append(line.format(*header).rstrip())
        out.extend(map(str.rstrip, starmap(line.format, rows)))
    else:
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip())
        for r in rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
    sys.stdout.write("\n".join(out) + "\n")


def when(text: str) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS`."""
    return text[:19].replace("T", " ") if text else ""


def short_digest(d: str | None) -> str:
    return d.split(":", 1)[-1][:12] if d else ""
