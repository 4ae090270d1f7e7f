"""Horizontal bar charts as plain SVG geometry (the template draws it; no library, no
script). Colours are CSS classes (c0..c7) so the style sheet picks them for light and
dark mode; nothing here is markup, so every label is escaped by the template."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 720
LABEL_W = 230
VALUE_W = 90
ROW_H = 22
GAP = 6
COLOURS = 8


@dataclass
class Bar:
    y: int
    width: float
    label: str
    value: str
    title: str
    colour: str


@dataclass
class Chart:
    width: int
    height: int
    label_w: int
    bar_x: int
    bars: list[Bar]
    caption: str

    @property
    def text_dy(self) -> int:
        return ROW_H // 2 + 5


def bar_chart(items: list[tuple[str, int, str]], caption: str, *, fmt) -> Chart:
    """items: (label, value, hover title). Bars scale to the largest value."""
    top = max((v for _, v, _ in items), default=0) or 1
    room = WIDTH - LABEL_W - VALUE_W
    bars = []
    for i, (label, value, title) in enumerate(items):
        width = max(1.0, round(room * value / top, 1)) if value else 0.0
        short = label if len(label) <= 32 else label[:31] + "…"
        bars.append(Bar(i * (ROW_H + GAP), width, short, fmt(value), title or label, f"c{i % COLOURS}"))
    height = max(ROW_H, len(items) * (ROW_H + GAP) - GAP)
    return Chart(WIDTH, height, LABEL_W, LABEL_W + 4, bars, caption)
