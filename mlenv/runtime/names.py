"""Package name normalization (PEP 503), used by the solver, the installer and
`verify` alike."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """`Scikit_Learn` -> `scikit-learn`."""
    return _SEPARATORS.sub("-", name).lower()
