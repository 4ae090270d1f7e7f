"""`mlenv verify --image`: the image's dpkg versions against the lock's apt packages.

The image's /var/lib/dpkg/status is read out of a created (never started)
container and parsed with python-debian; every locked apt package must be
installed at exactly its locked version. Packages of the base that the lock does
not name are the base's business and are not reported."""

from __future__ import annotations


def dpkg_inventory(status_text: str) -> dict[str, dict]:
    """name -> {"version": ...} of the installed packages of a dpkg status file."""
    from .resolve import installed_from_status

    return {
        p.name: {"version": p.version, "missing_files": []}
        for p in installed_from_status(status_text, "the image's dpkg status")
    }
