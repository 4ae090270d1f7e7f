"""The web catalog of a registry (`mlenv ui`) and package search (`mlenv search`).

catalog.py is the only module that reads a registry (and the curated catalog); the
others are pure: search.py (query language), index.py (the derived search index),
views.py / chart.py (what a page shows), render.py (Jinja2 templates), server.py
(Starlette app), export.py (static site). docs/ui.md describes the whole.
"""
