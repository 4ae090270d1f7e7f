"""The `mlenv` command: a thin layer over the public API (mlenv.api). Each command
parses its options, makes one API call and renders the result (mlenv.cli.render).

- entry.py          the console script: the cache hit of `mlenv build` first, then click
- main.py           the command group; commands are imported only when invoked
- commands/<area>   the commands
"""
