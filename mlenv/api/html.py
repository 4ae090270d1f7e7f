"""Small HTML pieces for Jupyter reprs. Every value is escaped: names, descriptions
and labels can come from other people's registry entries."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

STYLE = "font-family:system-ui,sans-serif;font-size:90%;line-height:1.4"
TABLE = "border-collapse:collapse;margin:4px 0"
CELL = "padding:2px 10px;border-bottom:1px solid rgba(127,127,127,.3);text-align:left"


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def table(header: list[str], rows: Iterable[Iterable[object]], limit: int = 200) -> str:
    rows = list(rows)
    out = [f'<table style="{TABLE}"><thead><tr>']
    out += [f'<th style="{CELL}">{esc(h)}</th>' for h in header]
    out.append("</tr></thead><tbody>")
    for row in rows[:limit]:
        out.append("<tr>" + "".join(f'<td style="{CELL}">{esc(c)}</td>' for c in row) + "</tr>")
    out.append("</tbody></table>")
    if len(rows) > limit:
        out.append(f"<div>… {len(rows) - limit} more</div>")
    return "".join(out)


def block(title: str, facts: Sequence[tuple[str, object]], body: str = "") -> str:
    items = "".join(f"<tr><td style=\"{CELL}\"><b>{esc(k)}</b></td><td style=\"{CELL}\">{esc(v)}</td></tr>"
                    for k, v in facts if v not in (None, "", []))  # fmt: skip
    return (f'<div style="{STYLE}"><div><b>{esc(title)}</b></div>'
            f'<table style="{TABLE}">{items}</table>{body}</div>')  # fmt: skip


def details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"
