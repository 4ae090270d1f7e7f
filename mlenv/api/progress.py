"""Progress for long operations: a callback `progress(message)`.

The CLI passes its own (a spinner on a terminal, lines on stderr otherwise). From
Python, `progress=None` means: a live progress line under the cell in Jupyter
(an updated HTML display), nothing elsewhere; pass `print` for plain lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]


def in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        return shell.get_ipython() is not None
    except Exception:
        return False


class NotebookProgress:
    """A progress bar under the running cell with the step count and the latest message,
    replaced by each message (an IPython display handle); a full bar and ✔ when done.
    The bar is indeterminate: mlenv's steps (solve, fetch, build) have no known total."""

    def __init__(self, title: str):
        from IPython.display import HTML, display

        self.title = title
        self.count = 0
        self._html = HTML
        self._handle = display(HTML(self._render("starting…")), display_id=True)

    def _render(self, message: str) -> str:
        return (f'<div style="font-family:monospace;font-size:90%"><progress style="width:8em"></progress> '
                f"<b>{_escape(self.title)}</b> [{self.count}] {_escape(message)}</div>")  # fmt: skip

    def _render_done(self, message: str) -> str:
        return (f'<div style="font-family:monospace;font-size:90%"><progress style="width:8em" value="1" max="1">'
                f"</progress> ✔ <b>{_escape(self.title)}</b> {_escape(message)}</div>")  # fmt: skip

    def __call__(self, message: str) -> None:
        self.count += 1
        if self._handle is not None:
            self._handle.update(self._html(self._render(message)))

    def done(self, message: str = "done") -> None:
        if self._handle is not None:
            self._handle.update(self._html(self._render_done(message)))


def default(progress: Progress | None, title: str) -> Progress | None:
    """The caller's callback, else a notebook progress line in Jupyter, else None."""
    if progress is not None:
        return progress
    if in_notebook():
        try:
            return NotebookProgress(title)
        except Exception:  # IPython without display support: no progress
            return None
    return None


def finish(progress: Progress | None, message: str = "done") -> None:
    if isinstance(progress, NotebookProgress):
        progress.done(message)


def _escape(text: str) -> str:
    import html  # lazily: html.entities is a large table, and only notebooks draw HTML

    return html.escape(text)
