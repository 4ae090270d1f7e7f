"""Benchmark: `mlenv build` against the hand-written pip Dockerfile a user would write,
side by side in one run, on the same ML lock (scikit-learn + pandas from real PyPI)
and the same base image (the test base image, Debian bookworm).

    bash .ci/services.sh up && source .ci/_work/services.env
    python bench/build.py [--repeat 3]

Measured (medians over --repeat runs):
- cold: `mlenv build --no-cache` with an empty host cache (artifact + uv cache: the
  bench points XDG_CACHE_HOME at its own directory and deletes it) vs
  `docker build --no-cache` of the pip Dockerfile (which always downloads);
- cache hit: `mlenv build` when the image exists (reuse, no build) vs a fully
  cached `docker build` of the pip Dockerfile; plus the bare Python start-up;
- one-package rebuild: `mlenv build` after one PyPI pin changes (scikit-learn),
  with the previous image's layers in the cache, nothing of the new lock cached
  (its images removed, its new artifacts deleted from the artifact cache).
Cleanup touches only images this script created (image ids listed before and
after each build) and the pip image tag; the base image and others' images stay.
Writes the "build" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median, table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CA = os.environ.get("MLENV_BENCH_CA") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
DEPS = ["scikit-learn==1.5.2", "pandas==2.2.3"]
CHANGED = ["scikit-learn==1.5.1", "pandas==2.2.3"]
PIP_TAG = "mlenv-bench/pip-dockerfile:latest"
CACHE_HOME = Path(tempfile.gettempdir()) / "mlenv-bench-build-cache"  # XDG_CACHE_HOME of the mlenv runs

PIP_DOCKERFILE = """\
FROM {base}
# the proxy's CA, so pip can reach PyPI from the build
COPY ca.pem /etc/ssl/certs/proxy-ca.pem
ENV PIP_CERT=/etc/ssl/certs/proxy-ca.pem
RUN python3 -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
ENV PATH=/venv/bin:$PATH
"""


NOTES = """\
{notes}
"""


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


# The interpreter whose mlenv is measured: a regular install (`pip install .`) in a
# fresh venv, what users run; --editable measures this dev venv instead.
PY = sys.executable


def changed_step_ran(log: Path, group: str) -> None:
    """Refuse a rebuild number that the layer cache made meaningless: the changed
    group's install step must have run, not come from some earlier build's cache
    (any build with the same base and artifacts leaves reusable steps behind)."""
    lines = log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Step ") and f'"--pypi-group", "{group}"' in line:
            after = next((ln for ln in lines[i + 1:] if ln.startswith(" ---> ")), "")
            if "Using cache" in after:
                raise SystemExit(f"bench: the {group} step came from the layer cache ({log}); remove the images of "
                                 "earlier builds of this lock (docker image prune) and run again")
            return
    raise SystemExit(f"bench: no install step for group {group} in {log}")


def release_python() -> str:
    import tempfile

    venv = Path(tempfile.mkdtemp(prefix="mlenv-bench-venv-"))
    sh([sys.executable, "-m", "venv", str(venv)])
    sh([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(Path(__file__).resolve().parent.parent)])
    return str(venv / "bin" / "python")


def mlenv(*args, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLENV_CA_BUNDLE"}
    env["XDG_CACHE_HOME"] = str(CACHE_HOME)
    return sh([str(Path(PY).parent / "mlenv"), *args], cwd=cwd, env=env)


def write_spec(d: Path, base: str, deps: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "mlenv.toml").write_text(
        f'[environment]\nname = "bench-ml"\npython = "3.11"\nplatforms = ["linux-64"]\n\n'
        f"[pypi]\ndependencies = {json.dumps(deps)}\n\n"
        f'[image]\nbase = "{base}"\npython = "/usr/bin/python3"\n'
    )


class Images:
    """Images this script created: every id that appears during one of its builds."""

    def __init__(self, client):
        self.client = client
        self.created: set[str] = set()

    def ids(self) -> set[str]:
        return {i["Id"] for i in self.client.api.images(all=True)}

    def track(self, fn):
        before = self.ids()
        try:
            return fn()
        finally:
            self.created |= self.ids() - before

    def clean(self, keep: str) -> None:
        for _ in range(3):  # children first; a parent goes once its children are gone
            live = self.ids() & self.created
            if not live:
                break
            rows = sorted((i for i in self.client.api.images(all=True) if i["Id"] in live), key=lambda i: -i["Created"])
            for img in rows:
                try:
                    self.client.api.remove_image(img["Id"], force=True)
                except Exception:
                    pass
        self.created &= self.ids()
        self.client.api.inspect_image(keep)  # the base image must still be there


def pip_build(ctx: Path, no_cache: bool = False) -> float:
    t0 = time.perf_counter()
    sh(["docker", "build", "--network", "host", "-q", *(["--no-cache"] if no_cache else []), "-t", PIP_TAG, str(ctx)],
       env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return time.perf_counter() - t0


def mlenv_build(d: Path, *args) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = mlenv("build", "--json", "--ca-bundle", CA, *args, cwd=d)
    return time.perf_counter() - t0, json.loads(out.stdout)


def python_startup() -> float:
    t0 = time.perf_counter()
    sh([PY, "-c", "pass"])
    return time.perf_counter() - t0


def cache_hit_imports(d: Path) -> str:
    """Modules of the cache-hit path that must stay out (heavy or SDK)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(CACHE_HOME)}
    proc = subprocess.run([PY, "-X", "importtime", "-m", "mlenv.cli", "build", "-q"], cwd=d,
                          capture_output=True, text=True, env=env)
    mods = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    heavy = sorted(m for m in mods if m.split(".")[0] in ("docker", "requests", "rich", "packaging", "urllib3", "http"))
    return ", ".join(heavy) or "none"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--editable", action="store_true", help="measure this dev venv's mlenv, not a regular install")
    args = parser.parse_args()
    global PY
    if not args.editable:
        PY = release_python()

    import docker

    client = docker.from_env(timeout=3600)
    local_base = os.environ.get("MLENV_TEST_BASE_IMAGE", "mlenv-test/debian-python:bookworm")
    remote_base = os.environ.get("MLENV_TEST_BASE_IMAGE_REMOTE")
    if not remote_base:
        raise SystemExit("source .ci/_work/services.env first (bash .ci/services.sh up)")
    client.api.inspect_image(local_base)

    with tempfile.TemporaryDirectory(prefix="mlenv-bench-build-") as tmp:
        tmp = Path(tmp)
        proj, proj2 = tmp / "mlenv", tmp / "mlenv-changed"
        write_spec(proj, remote_base, DEPS)
        write_spec(proj2, remote_base, CHANGED)
        mlenv("lock", "-q", cwd=proj)
        mlenv("lock", "-q", cwd=proj2)
        from mlenv.lockfile import read_lock

        lock = read_lock(proj / "mlenv.lock")
        pins = sorted(f"{p.name}=={p.version}" for p in lock.for_platform("linux-64", "pypi"))
        ctx = tmp / "pip"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(PIP_DOCKERFILE.format(base=local_base))
        (ctx / "requirements.txt").write_text("\n".join(pins) + "\n")
        (ctx / "ca.pem").write_bytes(Path(CA).read_bytes())

        import shutil

        images = Images(client)
        lock2 = read_lock(proj2 / "mlenv.lock")
        new_artifacts = {p.sha256 for p in lock2.packages} - {p.sha256 for p in lock.packages}
        cold_mlenv, cold_pip, hit_mlenv, hit_pip, rebuild, startup = [], [], [], [], [], []
        groups = None
        for i in range(args.repeat):
            images.clean(local_base)
            shutil.rmtree(CACHE_HOME, ignore_errors=True)  # artifact cache + uv cache: nothing on the host
            t, res = images.track(lambda: mlenv_build(proj, "--no-cache", "--force"))
            assert res["action"] == "built", res
            cold_mlenv.append(t)
            if groups is None:
                groups = Path(res["log"]).read_text().count("installing group") or None
            images.clean(local_base)
            cold_pip.append(images.track(lambda: pip_build(ctx, no_cache=True)))
            print(f"run {i + 1}: cold mlenv {cold_mlenv[-1]:.1f}s, cold pip Dockerfile {cold_pip[-1]:.1f}s", file=sys.stderr)

        # cache hits: the mlenv image exists (reuse), the pip Dockerfile is fully cached
        images.track(lambda: mlenv_build(proj))
        heavy = cache_hit_imports(proj)
        for _ in range(args.repeat):
            t, res = mlenv_build(proj)
            assert res["action"] == "reused", res
            hit_mlenv.append(t)
            hit_pip.append(images.track(lambda: pip_build(ctx)))
            startup.append(python_startup())

        # one PyPI package changes: the previous image (and its build cache) exists, nothing
        # of the changed lock does (its images removed, its new artifacts not downloaded yet)
        for _ in range(args.repeat):
            images.clean(local_base)
            images.track(lambda: mlenv_build(proj, "--force"))
            for sha in new_artifacts:
                (CACHE_HOME / "mlenv" / "artifacts" / "sha256" / sha).unlink(missing_ok=True)
            t, res = images.track(lambda: mlenv_build(proj2, "--force"))
            assert res["action"] == "built", res
            changed_step_ran(Path(res["log"]), "scikit-learn")
            rebuild.append(t)
        images.clean(local_base)
        try:
            client.api.remove_image(PIP_TAG, force=True)
        except Exception:
            pass
        shutil.rmtree(CACHE_HOME, ignore_errors=True)

    cm, cp = median(cold_mlenv), median(cold_pip)
    hm, hp, py = median(hit_mlenv), median(hit_pip), median(startup)
    rb = median(rebuild)
    rows = [
        ["cold build", f"{cm:.2f} s", f"{cp:.2f} s", f"{cm / cp:.2f}x", "<= 0.6x", "yes" if cm / cp <= 0.6 else "no"],
        ["cache hit", f"{hm:.3f} s", f"{hp:.3f} s", f"{hm / hp:.2f}x", "< 0.5 s and < 0.5x",
         "yes" if hm < 0.5 and hm / hp < 0.5 else f"< 0.5 s: {'yes' if hm < 0.5 else 'no'}; < 0.5x: no"],
        ["(floor: `python -c pass`)", f"{py:.3f} s", "", f"{py / hp:.2f}x", "", ""],
        ["one-package rebuild", f"{rb:.2f} s", "", f"{rb / cm:.2f}x of mlenv cold", "< 0.3x cold",
         "yes" if rb / cm < 0.3 else "no"],
    ]  # fmt: skip
    notes = [
        "How mlenv gets there: every artifact is downloaded on the host (concurrently, sha256-checked, into the "
        "content-addressed artifact cache) and served, for the duration of the build, by a GET-only server on "
        "127.0.0.1 in the mlenv process (builds use host networking). One stage: the env and each of the "
        f"{groups or '?'} PyPI groups (each artifact >= 4 MB alone, the small ones together) is one RUN that fetches "
        "the installer + uv into /tmp, installs the group's wheels (sha256-checked) at their final path, stamps them "
        "with a fixed mtime and deletes /tmp's tooling: every installed byte is written once, no builder stage, no "
        "COPY --from, a context of three small files. A one-package change downloads one wheel and re-runs that "
        "group's step and the (smaller) ones after it, which write byte-identical layers.",
        f"- cache hit: the reuse check is one Engine API call on the unix socket with the stdlib (heavy modules "
        f"imported on that path: {heavy}). A fully cached `docker build` of the pip Dockerfile is a Go binary "
        f"({hp * 1000:.0f} ms); `python -c pass` in this venv alone takes {py * 1000:.0f} ms ({py / hp:.2f}x of it), "
        f"so < 0.5x would leave a Python CLI ~{max(0.5 * hp - py, 0) * 1000:.0f} ms for everything else: click "
        "alone imports in ~15 ms, the stdlib modules that reading the spec and verifying the sealed lock need "
        "(tomllib, hashlib, json, dataclasses, pathlib) ~25 ms; the Engine call is ~1 ms (the expected tag is "
        f"inspected directly). mlenv's total is {hm * 1000:.0f} ms ({max(hm - py, 0) * 1000:.0f} ms above the bare "
        "interpreter): under 0.5 s, not under 0.5x.",
    ]
    if cm / cp > 0.6:
        notes.append("- cold build: the downloads are not the cost (80 MB on the host in ~0.3 s, 8 threads). "
                     "What is left is the classic builder's per-step cost (a container start and a layer commit "
                     "per group, ~0.3 s each, one after the other) and uv writing the files once; pip's single RUN "
                     "writes once too, but downloads sequentially and compiles .pyc files.")
    if rb / cm >= 0.3:
        notes.append("- one-package rebuild: after the changed group the classic builder re-runs every later "
                     "group's step (same layer digests, but it has no cache once a parent changed). Groups are "
                     "ordered transitive dependencies first, the spec's own pins last, largest first within each "
                     "(docs/build.md), so changing scikit-learn re-runs its group and pandas'; the rest is the "
                     "wheel download and the metadata steps. BuildKit (parallel, independent stages) or one image "
                     "per group would remove the re-runs; the docker SDK's classic builder has neither.")
    body = (
        "## build: `mlenv build` vs a hand-written pip Dockerfile\n\n"
        f"Lock: {', '.join(DEPS)} ({len(pins)} PyPI packages, real PyPI through the TLS proxy), base "
        f"`{local_base}` (Debian bookworm, Python 3.11). The pip Dockerfile is what a user would write: a venv, "
        "`pip install --no-cache-dir -r requirements.txt` with the same pins, the proxy CA copied in. "
        "Both built by the same Docker Engine with the classic builder and host networking. "
        f"Medians of {args.repeat} runs; cold = `--no-cache` builds, and for mlenv an empty host artifact and uv "
        "cache (the pip Dockerfile always downloads). One-package rebuild: scikit-learn 1.5.2 -> 1.5.1, with the "
        "previous image and its build cache present and nothing of the new lock cached (its new wheel not yet "
        "downloaded).\n\n"
        + table(rows, ["case", "mlenv", "pip Dockerfile", "ratio", "target", "met"])
        + "\n\nAll runs (s): cold mlenv " + ", ".join(f"{x:.1f}" for x in cold_mlenv)
        + "; cold pip " + ", ".join(f"{x:.1f}" for x in cold_pip)
        + "; hit mlenv " + ", ".join(f"{x:.3f}" for x in hit_mlenv)
        + "; hit pip " + ", ".join(f"{x:.3f}" for x in hit_pip)
        + "; rebuild " + ", ".join(f"{x:.1f}" for x in rebuild) + ".\n\n" + NOTES.format(notes="\n".join(notes))
    )
    write_section("build", body)
    print(body)


if __name__ == "__main__":
    main()
