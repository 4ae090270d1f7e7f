"""How commands show things: JSON, warnings, progress on stderr (a rich spinner on a
terminal, plain lines otherwise), tables, times and digests. (The options commands
share are declared in mlenv.cli.options.)"""

from __future__ import annotations

import sys
from itertools import starmap
from typing import TYPE_CHECKING, Literal

import click

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from rich.status import Status


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
    sys.stdout.write("\n".join(out + aligned([header, *rows])) + "\n")


def aligned(rows: Sequence[Sequence[str]], *, free_last: bool = False) -> list[str]:
    """Rows (the header first) as lines of left-aligned columns, two spaces apart, each as
    wide as its widest cell; trailing blanks are cut. With `free_last` the last column is
    written as it is: it does not widen the others' alignment and nothing is cut."""
    padded = [row[:-1] for row in rows] if free_last else rows
    widths = [max(map(len, column)) for column in zip(*padded, strict=False)]
    if not free_last and all(len(row) == len(widths) for row in rows):
        # one format per line, C-level passes (`mlenv versions` on 10,000 rows); `:<w` pads as ljust(w)
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        return list(map(str.rstrip, starmap(line.format, rows)))
    lines = []
    for row, cells in zip(rows, padded, strict=True):
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        lines.append((line + "  " + row[-1]) if free_last else line.rstrip())
    return lines


def when(text: str) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS`."""
    return text[:19].replace("T", " ") if text else ""


def short_digest(d: str | None) -> str:
    return d.split(":", 1)[-1][:12] if d else ""
