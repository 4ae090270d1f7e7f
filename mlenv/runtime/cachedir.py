"""Where mlenv's user cache lives, in its own module so that the paths that only need
the directory (the no-op `mlenv lock`: cached source-tree and git-ref records) do not
import the downloader."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_root() -> Path:
    """platformdirs.user_cache_dir("mlenv") where platformdirs is installed (the
    host), else $XDG_CACHE_HOME/mlenv or ~/.cache/mlenv (inside a build step)."""
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("mlenv"))
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "mlenv"


def artifact_cache_dir() -> Path:
    return default_cache_root() / "artifacts" / "sha256"
