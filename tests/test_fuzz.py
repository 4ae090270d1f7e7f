"""Property-based fuzzing of every parser of untrusted input (issue 9, "Must show").

Each target (tests/fuzz_targets.py) must return or raise an MlenvError, never
another exception, on generated near-valid documents and on mutated real files.
Bounded for CI (the module runs in well under a minute); bench/fuzz.py runs the same
targets 10,000 times each and its table is in docs/security.md.
"""

from __future__ import annotations

import fuzz_targets as ft
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlenv.errors import MlenvError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def holds(target, *args) -> None:
    try:
        target(*args)
    except MlenvError as exc:
        assert str(exc).strip(), "an MlenvError must say something"
        assert "Traceback" not in str(exc)


@FUZZ
@given(ft.SPEC_TEXT)
def test_fuzz_spec(data):
    holds(ft.check_spec, data)


@FUZZ
@given(ft.LOCK_TEXT)
def test_fuzz_lock(data):
    holds(ft.check_lock, data)


@FUZZ
@given(ft.SETTINGS_TEXT)
def test_fuzz_settings(data):
    holds(ft.check_settings, data)


@FUZZ
@given(ft.IMPORT_CASE, ft.SIDE_FILES)
def test_fuzz_importers(case, side):
    holds(ft.check_import, case, side)


@SLOW
@given(st.lists(ft.ROW_EDIT, min_size=1, max_size=3))
def test_fuzz_local_registry_rows(edits):
    holds(ft.check_registry_rows, edits)


@FUZZ
@given(ft.OCI_STATE, ft.OCI_MANIFEST)
def test_fuzz_oci_documents(state, manifest):
    holds(ft.check_oci_documents, state, manifest)


@FUZZ
@given(ft.AZURE_ENV)
def test_fuzz_azureml_documents(env):
    pytest.importorskip("azure.ai.ml")
    holds(ft.check_azure_documents, env)


@SLOW
@given(ft.CLI_SPEC, st.one_of(st.none(), ft.LOCK_TEXT), ft.CLI_ARGS)
def test_fuzz_cli_never_prints_a_traceback(spec, lock, args):
    ft.check_cli(spec, lock, args)
