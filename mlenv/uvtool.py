"""Where the uv binary is, and the environment it runs with: the one home of both
(solving, wheel building, installs, image tool layers and the cache all run uv). The
`uv` wheel is a dependency of mlenv and carries the binary; a uv on PATH is the fallback."""

from __future__ import annotations

import os

from .errors import SolveError


def uv_binary() -> str:
    """The path of the uv executable; SolveError when there is none."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:  # the uv wheel is a dependency; fall back to PATH
        import shutil

        found = shutil.which("uv")
        if not found:
            raise SolveError("uv not found", hint="pip install uv (it is a dependency of mlenv)") from None
        return found


def uv_env(cache_dir: str | None) -> dict[str, str]:
    """The environment mlenv runs uv with: no user uv.toml, mlenv's CA bundle, its cache."""
    env = dict(os.environ)
    env.setdefault("UV_NO_CONFIG", "1")  # a user's uv.toml must not change what mlenv locks
    # Corporate proxies: uv reads SSL_CERT_FILE; mlenv's CA bundle (variable, else setting) feeds it.
    from .settings import ca_bundle

    ca = ca_bundle()
    if ca:
        env["SSL_CERT_FILE"] = ca
    if cache_dir:
        env["UV_CACHE_DIR"] = cache_dir
    return env
