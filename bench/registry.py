"""Registry benchmark: register and restore latency on both backends (CLI wall
time, interpreter start included, and the in-process API), `mlenv versions
NAME` on a local registry holding 10,000 versions (target: under 200 ms), and
package search over 1,000 versions in a local and in an OCI registry (mlenv.ui: the
derived index's cold build and a warm search; target: under 300 ms).

    . .venv/bin/activate && source .ci/_work/services.env; python bench/registry.py

The OCI rows need the local registry (MLENV_TEST_REGISTRY, from .ci/services.sh);
without it they are left out. Writes the "registry" section of docs/benchmarks.md.

    python bench/registry.py --versions-only   # only the 10,000-version listing; prints, writes nothing

BENCH_BASELINE=DIR (with BENCH_BASELINE_NAME=TEXT) also runs the 10,000-version commands with
the mlenv package in DIR first on the path (e.g. `git archive REV mlenv | tar -x -C DIR`),
interleaved with this tree's runs, so a before/after shares the machine's load.

BENCH_REPEAT (default 10) sets the runs per row; the machine is shared, so every CLI row
also gives the child's CPU time (user + sys), which other load disturbs less than wall time.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median, run, table, timed, write_section

# Byte-compiled, as an installed mlenv is: PYTHONDONTWRITEBYTECODE would time the compiler in every CLI run
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

REPEAT = int(os.environ.get("BENCH_REPEAT", "10"))
SEED_VERSIONS = 10_000
SEARCH_VERSIONS = 1_000
SEARCH_NAMES = 50
SEARCH_QUERY = "pkg7>=1.500,<1.900"
BASELINE = os.environ.get("BENCH_BASELINE", "")
BASELINE_NAME = os.environ.get("BENCH_BASELINE_NAME", "baseline")


def make_env(directory: Path, name: str, seed: int) -> None:
    """mlenv.toml + a current mlenv.lock (no solve) whose content differs by seed."""
    from mlenv.lockfile import Lock, Package
    from mlenv.locking import inputs_of
    from mlenv.spec import load_spec

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mlenv.toml").write_text(
        f'[environment]\nname = "{name}"\npython = "3.11"\nplatforms = ["linux-64"]\n\n'
        f'[variables]\nSEED = "{seed}"\n\n[image]\nbase = "python:3.11-slim-bookworm"\n'
    )
    spec = load_spec(directory / "mlenv.toml")
    pkgs = [
        Package(
            "pypi",
            "linux-64",
            f"pkg{i}",
            f"1.{seed}.{i}",
            f"https://files.pythonhosted.org/packages/pkg{i}-1.{seed}.{i}-py3-none-any.whl",  # the default index's file host
            hashlib.sha256(f"{seed}-{i}".encode()).hexdigest(),
            {"size": 1},
        )
        for i in range(40)
    ]
    Lock(
        spec_hash=spec.spec_hash(),
        python="3.11",
        platforms={"linux-64": {"python": "3.11"}},
        packages=pkgs,
        variables={"SEED": str(seed)},
        image={"base": spec.base_image, "apt-packages": [], "steps": []},
        inputs=inputs_of(spec),
    ).seal().write(directory / "mlenv.lock")


def cli(*args, cwd, env):
    return run([sys.executable, "-m", "mlenv.cli", *args], cwd=cwd, env=env)


def timed_cpu(fn, repeat: int) -> tuple[list[float], list[float]]:
    """(wall seconds, child CPU seconds: user + sys) of `repeat` runs of fn, which runs one child."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def versions_phases(root: Path, name: str) -> list[tuple[str, float]]:
    """Where `mlenv versions NAME [--json]` spends its time after start-up, in-process (median
    ms of REPEAT runs): the local backend's steps, then what the CLI does with the Versions."""
    from mlenv.api.results import VersionList
    from mlenv.cli.jsontext import dumps
    from mlenv.cli.render import short_digest, table, when
    from mlenv.registry.local import LocalRegistry
    from mlenv.registry.records import make_versions, rows_pass
    from mlenv.runtime.secrets import scrub

    steps: dict[str, list[float]] = {}

    def step(label: str, fn):
        t0 = time.perf_counter()
        out = fn()
        steps.setdefault(label, []).append(time.perf_counter() - t0)
        return out

    for _ in range(REPEAT):
        reg = LocalRegistry(root)
        labels = step("open the index, read the environment and its labels",
                      lambda reg=reg: (reg._env(name), reg._labels_of(name))[1])  # fmt: skip
        rows = step(
            f"read {SEED_VERSIONS:,} rows (sqlite3, 10 columns)",
            lambda reg=reg: reg.db.execute(
                f"SELECT {reg._COLS} FROM versions WHERE name = ? ORDER BY version", (name,)
            ).fetchall(),
        )
        step(
            "check every row (records.rows_pass, a column at a time)",
            lambda rows=rows, labels=labels: rows_pass(rows, labels.values()),
        )
        versions = step(
            f"build {SEED_VERSIONS:,} Versions (records.make_versions, its check included)",
            lambda rows=rows, labels=labels, reg=reg: make_versions(
                rows, reg._version, labels=labels, env_archived=False
            ),
        )
        reg.close()

        def render(versions=versions):
            rows = [[str(v.version), v.short_hash, when(v.created), ",".join(v.labels), v.image or "",
                     short_digest(v.image_digest), "yes" if v.archived else ""] for v in versions]  # fmt: skip
            stdout, sys.stdout = sys.stdout, io.StringIO()
            try:
                table(rows, ["VERSION", "HASH", "CREATED", "LABELS", "IMAGE", "DIGEST", "ARCHIVED"])
            finally:
                sys.stdout = stdout

        step("plain: table rows and aligned text", render)
        data = step(
            "--json: VersionList.to_json", lambda versions=versions: VersionList(name, str(root), versions).to_json()
        )
        text = step("--json: JSON text (cli.jsontext.dumps)", lambda data=data: dumps(data))
        step("--json: scrub (secrets.scrub over the text)", lambda text=text: scrub(text))
    return [(label, median(xs) * 1000) for label, xs in steps.items()]


def bench_backend(url: str, tmp: Path) -> dict:
    from mlenv.registry import open_registry

    env = dict(os.environ, MLENV_REGISTRY=url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    dirs = []
    for i in range(REPEAT * 2):
        d = tmp / f"{name}-{i}"
        make_env(d, name, i)
        dirs.append(d)
    it = iter(dirs[:REPEAT])
    reg_cli = timed(lambda: cli("register", "--no-image", cwd=next(it), env=env), REPEAT)
    idem = timed(lambda: cli("register", "--no-image", cwd=dirs[0], env=env), REPEAT)
    n = iter(range(1, REPEAT + 1))
    out = tmp / f"out-{name}"
    rest_cli = timed(
        lambda: cli("restore", f"{name}@{next(n)}", "--into", str(out), "--force", cwd=tmp, env=env), REPEAT
    )
    # in-process API
    reg = open_registry(url)
    payloads = [((d / "mlenv.toml").read_bytes(), (d / "mlenv.lock").read_bytes()) for d in dirs[REPEAT:]]
    from mlenv.lockfile import loads_lock

    hashes = [loads_lock(lk.decode()).content_hash for _, lk in payloads]
    k = iter(range(REPEAT))

    def api_register():
        i = next(k)
        reg.register(name, payloads[i][0], payloads[i][1], hashes[i])

    reg_api = timed(api_register, REPEAT)
    m = iter(range(REPEAT + 1, 2 * REPEAT + 1))
    rest_api = timed(lambda: reg.read(reg.resolve(name, str(next(m)))), REPEAT)
    versions_cli = timed(lambda: cli("versions", name, cwd=tmp, env=env), REPEAT)
    reg.close()
    return {
        "register (CLI)": reg_cli,
        "register again, idempotent (CLI)": idem,
        "restore (CLI)": rest_cli,
        "register (API)": reg_api,
        "resolve + read (API)": rest_api,
        f"versions, {2 * REPEAT} versions (CLI)": versions_cli,
    }


def seed_10k(tmp: Path) -> tuple[Path, float]:
    from mlenv.registry.local import LocalRegistry

    root = tmp / "big"
    reg = LocalRegistry(root)
    t0 = time.perf_counter()
    items = []
    for i in range(SEED_VERSIONS):
        lock = f'# lock {i}\ncontent-hash = "{i}"\n'.encode()
        items.append(
            (
                "big-env",
                b'[environment]\nname = "big-env"\n',
                lock,
                "sha256:" + hashlib.sha256(lock).hexdigest(),
                f"version {i}",
            )
        )
    reg.register_many(items)
    seed = time.perf_counter() - t0
    reg.set_label("big-env", SEED_VERSIONS, "prod")
    reg.close()
    return root, seed


def bench_10k(tmp: Path) -> tuple[float, list[tuple[str, list[float], list[float]]], list[tuple[str, float]], str]:
    """Seed time, (command, wall times, CPU times) per CLI row, the in-process phases, and the
    load average (1 / 5 / 15 min) at the start and at the end."""
    root, seed = seed_10k(tmp)
    env = dict(os.environ, MLENV_REGISTRY=str(root))
    rows = []
    start = load()
    commands = (
        ("mlenv versions big-env (10,000 rows)", ["versions", "big-env"]),
        ("mlenv versions big-env --json", ["versions", "big-env", "--json"]),
        ("mlenv list", ["list"]),
        ("mlenv --help (reference)", ["--help"]),
    )
    trees = {"": env}
    if BASELINE:  # the same commands with an older mlenv first on the path
        trees["baseline"] = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [BASELINE, env.get("PYTHONPATH")])))
    for tree_env in trees.values():
        for _label, args in commands:
            cli(*args, cwd=tmp, env=tree_env)  # warm the page cache, write the .pyc
    times: dict[tuple[str, str], tuple[list[float], list[float]]] = {
        (tree, label): ([], []) for tree in trees for label, _ in commands
    }
    for _ in range(REPEAT):  # interleaved: a burst of load from others touches every row alike
        for tree, tree_env in trees.items():
            for label, args in commands:
                wall, cpu = timed_cpu(lambda args=args, tree_env=tree_env: cli(*args, cwd=tmp, env=tree_env), 1)
                times[tree, label][0].extend(wall)
                times[tree, label][1].extend(cpu)
    rows = [(f"{label} [{BASELINE_NAME}]" if tree else label, *times[tree, label]) for tree in trees
            for label, _ in commands if not (tree and "--help" in label)]  # fmt: skip
    phases = versions_phases(root, "big-env")
    return seed, rows, phases, f"{start} at the start, {load()} at the end"


def bench_search(tmp: Path) -> tuple[str, float]:
    """Package search over SEARCH_VERSIONS versions (SEARCH_NAMES names, 40 PyPI packages per
    lock, every lock different) in a local registry: the derived index built cold (every
    lock read, verified and indexed), then warm searches, in-process and through the CLI."""
    from mlenv.lockfile import loads_lock
    from mlenv.registry.local import LocalRegistry
    from mlenv.ui.catalog import Catalog
    from mlenv.ui.pages import Site

    root = tmp / "search-registry"
    items = []
    for i in range(SEARCH_VERSIONS):
        name = f"env-{i % SEARCH_NAMES:02d}"
        d = tmp / "search-envs" / str(i)
        make_env(d, name, i)
        spec, lock = (d / "mlenv.toml").read_bytes(), (d / "mlenv.lock").read_bytes()
        items.append((name, spec, lock, loads_lock(lock.decode()).content_hash, f"version {i}"))
    reg = LocalRegistry(root)
    reg.register_many(items)
    reg.close()

    cold = []
    for r in range(3):
        with Catalog.open(str(root), index_path=tmp / f"search-index-cold-{r}.sqlite3") as c:
            t0 = time.perf_counter()
            result = c.search(SEARCH_QUERY)
            cold.append(time.perf_counter() - t0)
            assert result.indexed == SEARCH_VERSIONS and not result.problems
    index = tmp / "search-index.sqlite3"
    with Catalog.open(str(root), index_path=index) as c:
        hits = len(c.search(SEARCH_QUERY).hits)
        reused = timed(lambda: c.search(SEARCH_QUERY), REPEAT * 3)
        site = Site(c)
        home = timed(site.home, REPEAT)
        page = timed(lambda: site.version("env-07", 10), REPEAT)

    def fresh():
        with Catalog.open(str(root), index_path=index) as c:
            c.search(SEARCH_QUERY)

    fresh_t = timed(fresh, REPEAT * 3)
    cache = tmp / "search-cache"
    env = dict(os.environ, MLENV_REGISTRY=str(root), XDG_CACHE_HOME=str(cache))
    subprocess_ok = [sys.executable, "-m", "mlenv.cli", "search", SEARCH_QUERY]
    run(subprocess_ok, cwd=tmp, env=env)  # builds this cache's index
    cli_t = timed(lambda: run(subprocess_ok, cwd=tmp, env=env), REPEAT)
    size = (next((cache / "mlenv" / "search").glob("*.sqlite3"))).stat().st_size

    def ms(xs: list[float]) -> str:
        return f"{median(xs) * 1000:.0f} ms"

    rows = [
        ["cold: build the index (read + verify + index every lock), then search", ms(cold), len(cold)],
        ["warm: one search, catalog reused (the server)", ms(reused), len(reused)],
        ["warm: one search with a fresh catalog (open registry, list versions, open index)", ms(fresh_t), len(fresh_t)],
        [f"warm: `mlenv search '{SEARCH_QUERY}'` wall time, interpreter start included", ms(cli_t), len(cli_t)],
        ["page: environments (50 names, from the registry index, no lock read)", ms(home), len(home)],
        ["page: one version (its spec and lock read and verified)", ms(page), len(page)],
    ]
    body = "\n".join(
        [
            (
                f"Package search over {SEARCH_VERSIONS:,} versions ({SEARCH_NAMES} names, 40 PyPI packages per lock, every "
                f"lock different), local registry; query `{SEARCH_QUERY}` ({hits} hits). Index file: {size / 1e6:.1f} MB."
            ),
            "",
            table([[a, b, str(c)] for a, b, c in rows], ["operation", "median", "runs"]),
        ]
    )
    return body, median(fresh_t) * 1000


def seed_oci(url: str, tmp: Path) -> float:
    """SEARCH_VERSIONS versions in an OCI registry, SEARCH_NAMES names registered side by side
    (one writer per name: distribution allocates numbers optimistically). Returns seconds."""
    from concurrent.futures import ThreadPoolExecutor

    from mlenv.lockfile import loads_lock
    from mlenv.registry import open_registry

    def one_name(k: int) -> None:
        with open_registry(url) as reg:
            for i in range(k, SEARCH_VERSIONS, SEARCH_NAMES):
                d = tmp / "search-oci-envs" / str(i)
                make_env(d, f"env-{k:02d}", i)
                spec, lock = (d / "mlenv.toml").read_bytes(), (d / "mlenv.lock").read_bytes()
                reg.register(
                    f"env-{k:02d}", spec, lock, loads_lock(lock.decode()).content_hash, description=f"version {i}"
                )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one_name, range(SEARCH_NAMES)))
    return time.perf_counter() - t0


def bench_search_oci(addr: str, tmp: Path) -> tuple[str, float]:
    """The same search over SEARCH_VERSIONS versions in an OCI registry (a unique namespace of
    the test registry): the index built cold, then warm searches with a reused and a fresh
    catalog (the fresh one is what `mlenv search` does: list the registry, open the index)."""
    from mlenv.ui.catalog import Catalog

    # BENCH_OCI_SEARCH_URL: measure a namespace an earlier run seeded (seeding takes minutes)
    url = os.environ.get("BENCH_OCI_SEARCH_URL") or f"oci://{addr}/mlenv-bench-search-{uuid.uuid4().hex[:8]}"
    seeded = 0.0 if os.environ.get("BENCH_OCI_SEARCH_URL") else seed_oci(url, tmp)
    index = tmp / "search-oci-index.sqlite3"
    with Catalog.open(url, index_path=index) as c:
        t0 = time.perf_counter()
        result = c.search(SEARCH_QUERY)
        cold = [time.perf_counter() - t0]
        assert result.indexed == SEARCH_VERSIONS and not result.problems, (result.indexed, result.problems[:3])
        hits = len(result.hits)
        reused = timed(lambda: c.search(SEARCH_QUERY), REPEAT * 3)

    def fresh():
        with Catalog.open(url, index_path=index) as c:
            assert len(c.search(SEARCH_QUERY).hits) == hits

    fresh_t = timed(fresh, REPEAT)
    cache = tmp / "search-oci-cache"
    env = dict(os.environ, MLENV_REGISTRY=url, XDG_CACHE_HOME=str(cache))
    cmd = [sys.executable, "-m", "mlenv.cli", "search", SEARCH_QUERY]
    run(cmd, cwd=tmp, env=env)  # builds this cache's index
    cli_t = timed(lambda: run(cmd, cwd=tmp, env=env), REPEAT)

    def ms(xs: list[float]) -> str:
        return f"{median(xs) * 1000:.0f} ms"

    rows = [
        ["cold: build the index (list the registry, read + verify + index every lock), then search", ms(cold), "1"],
        ["warm: one search, catalog reused (the server)", ms(reused), str(len(reused))],
        ["warm: one search with a fresh catalog (list the registry, open the index)", ms(fresh_t), str(len(fresh_t))],
        [f"warm: `mlenv search '{SEARCH_QUERY}'` wall time, interpreter start included", ms(cli_t), str(len(cli_t))],
    ]
    body = "\n".join(
        [
            (
                f"The same {SEARCH_VERSIONS:,} versions in an OCI registry (CNCF distribution on {addr}, plain http on "
                f"loopback; seeded with `register`, {SEARCH_NAMES} names side by side, in {seeded:.0f} s); "
                f"query `{SEARCH_QUERY}` ({hits} hits)."
            ),
            "",
            table(rows, ["operation", "median", "runs"]),
        ]
    )
    return body, median(fresh_t) * 1000


def versions_section(tmp: Path) -> str:
    """The markdown of the 10,000-version listing: its CLI rows, where the time goes, the result."""
    seed, big, phases, loads = bench_10k(tmp)
    big_rows = [
        [
            label,
            f"{median(w) * 1000:.0f} ms",
            f"{min(w) * 1000:.0f} ms",
            f"{max(w) * 1000:.0f} ms",
            f"{median(c) * 1000:.0f} ms",
        ]
        for label, w, c in big
    ]
    versions_ms = median(big[0][1]) * 1000
    json_ms = median(big[1][1]) * 1000
    compared = ""
    if BASELINE:
        before = {label: median(w) * 1000 for label, w, _ in big}
        plain, as_json = (before[f"{big[i][0]} [{BASELINE_NAME}]"] for i in (0, 1))
        compared = (
            f" Under the same load, {BASELINE_NAME}: {plain:.0f} ms and `--json` {as_json:.0f} ms "
            f"({versions_ms / plain:.2f}x and {json_ms / as_json:.2f}x of that). The spread (min to max) is wide: "
            "on this shared machine the median moves by tens of ms from one run of the script to the next."
        )
    baseline = (
        f" Rows marked [{BASELINE_NAME}] ran the mlenv package of an older tree ({BASELINE_NAME}) on the same "
        "registry, interleaved with the others."
        if BASELINE
        else ""
    )
    text = "\n".join(
        [
            f"`mlenv versions` on a local registry holding {SEED_VERSIONS:,} versions of one name "
            f"(seeded in-process with `LocalRegistry.register_many` in {seed:.1f} s); output piped, "
            f"so plain aligned text (rich only on a terminal). Target: under 200 ms. {REPEAT} runs of each "
            f"command, interleaved; CPU is the child's user + sys time. Load average (1 / 5 / 15 min): {loads}."
            + baseline,
            "",
            table(big_rows, ["command", "median", "min", "max", "CPU (median)"]),
            "",
            f"Result: `mlenv versions` on 10,000 versions: {versions_ms:.0f} ms "
            f"({'meets' if versions_ms < 200 else 'MISSES'} the 200 ms target); `--json` {json_ms:.0f} ms." + compared,
            "",
            f"Where the time goes after start-up (in-process, median of {REPEAT}; start-up and imports are "
            "about the `--help` row):",
            "",
            table([[label, f"{ms:.1f} ms"] for label, ms in phases], ["step", "median"]),
            "",
            VERSIONS_NOTE,
        ]
    )
    return text


VERSIONS_NOTE = (
    "Every row read is still checked as untrusted input, every field of every row, by make_version's "
    "own rules (mlenv.registry.records.rows_pass), but a column at a time, in C-level loops: the hashes "
    "by one length set, one prefix pass and one `bytes.translate` that must delete every character of "
    "the joined digits, the texts joined and searched once for a control character, the numbers by "
    "one type set and min/max, the few distinct names, images and digests one by one. Only when every "
    "row passes are the Versions built without further checks (`map(Version, ...)`, with the cyclic "
    "collector paused: they hold no cycles); a damaged row sends the listing through the per-row path, "
    "which refuses the first damaged row in one line naming the row and the field, as before "
    "(tests/registry/test_records.py compares the bulk check with the per-row one on generated rows "
    "and on every edge value of every column). The rows are read with sqlite3's own strict UTF-8 "
    "decoding (no Python call per value); a value that is not UTF-8 makes the listing read them again "
    "with replacement characters, as before, for the same checks to judge. `--json` also lost its "
    "other costs: `dataclasses.asdict`'s deep copy in Version.to_json, the json module's pure-Python "
    "encoder (which `indent` forces; mlenv.cli.jsontext encodes a list of same-keyed objects a key at "
    "a time, byte-identical to json.dumps), and the scrubber's URL scan over text with no `://` in it. "
    "Before this (one Python call per row and field, make_version), the previous run of this script "
    "measured 280 ms and `--json` 801 ms (113 ms before any row was checked), at another time and "
    "load: the rows marked as an older tree, when present, are the before/after under the same load."
)


def main() -> None:
    if "--versions-only" in sys.argv[1:]:
        tmp = Path(tempfile.mkdtemp(prefix="mlenv-bench-registry-"))
        try:
            print(versions_section(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp = Path(tempfile.mkdtemp(prefix="mlenv-bench-registry-"))
    try:
        backends = {"local (SQLite)": str(tmp / "local-registry")}
        addr = os.environ.get("MLENV_TEST_REGISTRY")
        if addr:
            backends[f"OCI (distribution 2.8 on {addr})"] = f"oci://{addr}/mlenv-bench-{uuid.uuid4().hex[:8]}"
        results = {b: bench_backend(url, tmp) for b, url in backends.items()}
        ops = list(next(iter(results.values())))
        names = list(results)
        rows = []
        for op in ops:
            row = [op] + [f"{median(results[b][op]) * 1000:.0f} ms" for b in names]
            if len(names) == 2:
                row.append(f"{median(results[names[1]][op]) / median(results[names[0]][op]):.1f}x")
            rows.append(row)
        header = [f"operation (median of {REPEAT})"] + names + (["OCI / local"] if len(names) == 2 else [])
        big_text = versions_section(tmp)
        search_body, search_ms = bench_search(tmp)
        if addr:
            oci_body, oci_ms = bench_search_oci(addr, tmp)
            search_body += (
                "\n\n"
                + oci_body
                + "\n\n"
                + (
                    f"Result on OCI: a warm search with a fresh catalog answers in {oci_ms:.0f} ms "
                    f"({'meets' if oci_ms < 300 else 'MISSES'} the 300 ms target)."
                )
            )
        body = "\n".join(
            [
                "## Registry (`bench/registry.py`)",
                "",
                "Register and restore, CLI wall time (interpreter start included) and in-process API.",
                "Each registered lock has 40 packages.",
                "",
                table(rows, header),
                "",
                big_text,
                "",
                "### Package search (`mlenv search`, the web catalog)",
                "",
                search_body,
                "",
                (
                    f"Result: a warm search over {SEARCH_VERSIONS:,} versions answers in {search_ms:.0f} ms in-process with "
                    f"a fresh catalog ({'meets' if search_ms < 300 else 'MISSES'} the 300 ms target)."
                ),
            ]
        )
        write_section("registry", body)
        print(body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
