"""In-process helpers for the image and apt tests (issue 10): they lock, build and verify
through `import mlenv` where the CLI is not the subject. Process-global state goes through
pytest's MonkeyPatch, so nothing leaks into the next test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import mlenv
from mlenv.api.results import Verified


@contextmanager
def env_vars(**values: str | None) -> Iterator[pytest.MonkeyPatch]:
    """Environment variables set (None: removed) for the block, with MLENV_CA_BUNDLE removed
    (each test names its CA bundle itself): for module-scoped fixtures, which cannot take the
    function-scoped `monkeypatch`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLENV_CA_BUNDLE", raising=False)
        for name, value in values.items():
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        yield mp


def verified(image: str, d: Path) -> Verified:
    """`mlenv verify --image IMAGE` against d/mlenv.lock: asserts it matches (the CLI's exit 0)."""
    result = mlenv.verify(image=image, spec=d)
    assert result.ok, [str(x) for x in result.differences]
    return result
