"""Fuzzing at scale: every parser of untrusted input, 10,000 generated cases each.

The targets and input strategies are tests/fuzz_targets.py (tests/test_fuzz.py runs
them bounded in CI). A case *fails* when the target raises anything but an MlenvError.
Prints a table (parser, cases, failures, seconds) and writes it into the "fuzz" section
of docs/security.md.

    .venv/bin/python bench/fuzz.py              # 10,000 cases per parser
    FUZZ_CASES=500 .venv/bin/python bench/fuzz.py --no-write

The CLI target runs `mlenv.cli.main` in-process (a lock solves with uv or rattler), so
it runs a tenth as many cases.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_targets as ft  # noqa: E402
from _report import table, write_section  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CASES = int(os.environ.get("FUZZ_CASES", "10000"))


def targets() -> list[tuple[str, st.SearchStrategy, object, int]]:
    both = st.tuples
    return [
        ("spec (mlenv.toml)", ft.SPEC_TEXT, ft.check_spec, CASES),
        ("lock (mlenv.lock)", ft.LOCK_TEXT, ft.check_lock, CASES),
        ("settings (config.toml)", ft.SETTINGS_TEXT, ft.check_settings, CASES),
        ("importers (environment.yml, Azure ML YAML, requirements.txt, pyproject.toml, pylock.toml)",
         both(ft.IMPORT_CASE, ft.SIDE_FILES), lambda x: ft.check_import(*x), CASES),
        ("local registry rows (index.sqlite3)", st.lists(ft.ROW_EDIT, min_size=1, max_size=3), ft.check_registry_rows,
         CASES),
        ("OCI registry documents (state, manifests, tag lists)", both(ft.OCI_STATE, ft.OCI_MANIFEST),
         lambda x: ft.check_oci_documents(*x), CASES),
        ("Azure ML documents (properties, tags, stored chunks)", ft.AZURE_ENV, ft.check_azure_documents, CASES),
        ("CLI in-process (lock, lock --check, hash, export, verify)",
         both(ft.CLI_SPEC, st.one_of(st.none(), ft.LOCK_TEXT), ft.CLI_ARGS),
         lambda x: ft.check_cli(*x), max(1, CASES // 10)),
    ]  # fmt: skip


def run(name: str, strategy, target, cases: int) -> tuple[int, int, float, list[str]]:
    from mlenv.errors import MlenvError

    seen, failures, examples = [0], [0], []

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def case(value):
        seen[0] += 1
        try:
            target(value)
        except MlenvError:
            pass
        except Exception as exc:  # the defect being counted
            failures[0] += 1
            if len(examples) < 3:
                examples.append(f"{type(exc).__name__}: {str(exc)[:200]} <- {repr(value)[:300]}")

    start = time.perf_counter()
    case()
    return seen[0], failures[0], time.perf_counter() - start, examples


def main() -> None:
    rows, report = [], []
    for name, strategy, target, cases in targets():
        n, failed, secs, examples = run(name, strategy, target, cases)
        rows.append([name, f"{n:,}", str(failed), f"{secs:.0f}"])
        print(f"{name}: {n} cases, {failed} failures, {secs:.1f} s", flush=True)
        report += [f"  {name}: {e}" for e in examples]
    body = table(rows, ["parser", "cases", "failures", "seconds"])
    print("\n" + body)
    if report:
        print("\nfailures (first three per parser):\n" + "\n".join(report))
    if "--no-write" not in sys.argv:
        write_section("fuzz", body, ROOT / "docs" / "security.md")
    sys.exit(1 if report else 0)


if __name__ == "__main__":
    main()
