"""mlenv's public API, one module per area; the CLI (mlenv.cli) and notebooks call
these functions, and `import mlenv` exports the names users need (mlenv/__init__.py).

- environment.py  `Environment`: one environment (mlenv.toml + mlenv.lock), its life cycle
- spec.py         init / add / remove on mlenv.toml, formatting kept
- lock.py         lock, check, hash
- install.py      install into a prefix, verify a prefix or an image
- image.py        build (or reuse) an image, list images, gc
- registry.py     register, list, versions, show, diff, label, archive, restore
- export.py       export a lock to another tool's format
- options.py      where settings come from: argument, then environment variable, then config.toml
- results.py      what the functions return (JSON for the CLI, HTML for Jupyter; in a kernel a bare
                  mlenv.Lock is drawn with the same table, registered with IPython on import)
- lockresults.py  what lock and check return, and the lock table (apart: the no-op lock imports it)
- progress.py     progress reporting (a progress display in Jupyter)

Modules here import the lower layers lazily where those are heavy, so that the CLI's
fast paths (`--help`, a no-op lock) stay fast.
"""

import sys as _sys

# Only a Jupyter kernel has ipykernel loaded: the CLI does not import mlenv.api.progress here.
if "ipykernel" in _sys.modules:
    from .progress import in_notebook as _in_notebook

    if _in_notebook():  # a kernel imported mlenv: a bare Lock gets the same HTML table as the results
        from .results import register_notebook_formatters

        register_notebook_formatters()
