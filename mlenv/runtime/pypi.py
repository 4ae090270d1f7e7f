"""PyPI packages: uv installs verified local artifacts, hashes required again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import InstallError
from .fetch import artifact_filename
from .names import normalize
from .plan import Artifact
from .secrets import scrub


def uv_command(uv: str | None = None) -> str:
    """uv: the caller's (the host passes its own uv wheel's binary), else $MLENV_UV
    (an image build step: the tool tar's), else PATH."""
    found = uv or os.environ.get("MLENV_UV") or shutil.which("uv")
    if not found:
        raise InstallError("uv not found", hint="pip install uv, or set MLENV_UV to its path")
    return found


def clean_env() -> dict[str, str]:
    """The environment for child interpreters and uv: no PYTHONPATH (a build step puts
    mlenv itself there), no active venv, no uv configuration files."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(var, None)
    env["UV_NO_CONFIG"] = "1"
    return env


def install(
    artifacts: list[Artifact],
    interp: Path,
    target: Path | None,
    local: Path,
    *,
    uv: str,
    uv_cache: Path | None,
    offline: bool,
    ca_bundle: str | None = None,
    reinstall: list[str] | tuple[str, ...] = (),
) -> None:
    """`uv pip install --require-hashes --no-deps` of local/<filename> into interp's
    environment (or `--prefix target`). Wheels need no index; an sdist may need its
    build backend from PyPI (unless offline). uv_cache None: no cache."""
    lines = [
        f"{a.name} @ {(local / artifact_filename(a)).absolute().as_uri()} --hash=sha256:{a.sha256}\n" for a in artifacts
    ]
    env = clean_env()
    if ca_bundle:
        env["SSL_CERT_FILE"] = ca_bundle
    with tempfile.TemporaryDirectory(prefix="mlenv-install-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        fd = os.open(reqs, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(lines)
        cmd = [uv, "pip", "install", "--python", str(interp), "--require-hashes", "--no-deps", "--no-progress",
               "--color", "never", "-r", str(reqs)]  # fmt: skip
        if all(artifact_filename(a).endswith(".whl") for a in artifacts):
            cmd += ["--no-index", "--offline"]  # nothing to fetch: every file is local
        elif offline:
            cmd.append("--offline")
        if target is not None:
            cmd += ["--prefix", str(target)]
        for name in reinstall:
            cmd += ["--reinstall-package", name]
        if uv_cache is None:
            cmd.append("--no-cache")
        else:
            env["UV_CACHE_DIR"] = str(uv_cache)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if target is not None:
        (target / ".lock").unlink(missing_ok=True)
    if proc.returncode != 0:
        raise InstallError(explain_uv(proc.stderr))


def explain_uv(stderr: str) -> str:
    text = scrub(stderr.strip())
    lines = [
        ln
        for ln in text.splitlines()
        if ln.strip() and not ln.startswith(("Using ", "Resolved ", "Prepared ")) and "--system-certs" not in ln
    ]
    detail = "\n".join("  " + ln for ln in lines[-25:])
    m = re.search(r"Hash mismatch for `([^ `]+)", text)
    if m:
        exp = re.search(r"Expected:\s*(sha256:[0-9a-f]+)", text)
        got = re.search(r"Computed:\s*(sha256:[0-9a-f]+)", text)
        head = (
            f"sha256 mismatch for PyPI package {m.group(1)}: mlenv.lock says "
            f"{exp.group(1) if exp else '?'}, the artifact has {got.group(1) if got else '?'}"
        )
        return head + "\n  hint: the artifact or the lock was altered; re-lock from a trusted index"
    if re.search(r"certificate|UnknownIssuer|CERTIFICATE_VERIFY_FAILED", text, re.I):
        return (
            "TLS certificate verification failed while downloading PyPI packages (a TLS-intercepting proxy?)\n"
            + detail
            + "\n  hint: pass --ca-bundle FILE or set MLENV_CA_BUNDLE to the proxy's CA bundle"
        )
    if re.search(r"\b401\b|\b403\b|Unauthorized|Forbidden", text):
        return (
            "the package index refused the download (authentication)\n"
            + detail
            + "\n  hint: put credentials in the spec's index URL as ${VAR}, in MLENV_INDEX_URL, or in ~/.netrc"
        )
    return "uv could not install the locked PyPI packages\n" + detail


def uninstall(names: list[str], interp: Path, target: Path | None, *, uv: str) -> None:
    cmd = [uv, "pip", "uninstall", "--python", str(interp), "--no-progress", "--color", "never", *names]
    if target is not None:
        cmd += ["--prefix", str(target)]
    subprocess.run(cmd, capture_output=True, text=True, env=clean_env())
    if target is not None:
        (target / ".lock").unlink(missing_ok=True)


def drop_uv_cache_info(target: Path) -> None:
    """uv records the install time of a file:// requirement in
    `*.dist-info/uv_cache.json` (for its own reinstall checks): the one byte of an
    installed group that differs between two runs. Reproducible installs (images)
    drop it, and its RECORD line."""
    for info in target.glob("lib/python*/site-packages/*.dist-info"):
        cache = info / "uv_cache.json"
        if not cache.is_file():
            continue
        cache.unlink()
        record = info / "RECORD"
        if record.is_file():
            rel = f"{info.name}/uv_cache.json,"
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            record.write_text("".join(ln for ln in lines if not ln.startswith(rel)), encoding="utf-8")


def wanted_names(artifacts: list[Artifact]) -> set[str]:
    return {normalize(a.name) for a in artifacts}
