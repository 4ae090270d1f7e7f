"""Conda packages: a rattler record from the lock's fields, and linking into a prefix.

py-rattler is imported only here and only when called: an install step of an
image receives it as a tool tar (mlenv.image) only when its plan has conda packages.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InstallError
from .plan import Artifact
from .text import first_line


def record(name: str, version: str, url: str, sha256: str, fields: dict, platform: str):
    """A rattler RepoDataRecord rebuilt from a locked conda package's fields (no
    repodata read): the solver's preferences and the installer both use it."""
    import datetime

    import rattler

    noarch = fields.get("noarch") or None
    rec = rattler.PackageRecord(
        name=name,
        version=version,
        build=rattler.BuildString(fields.get("build", "")),
        build_number=int(fields.get("build-number", 0)),
        subdir=fields.get("subdir", platform),
        noarch=noarch,
        depends=list(fields.get("depends", [])),
        constrains=list(fields.get("constrains", [])),
        sha256=bytes.fromhex(sha256) if sha256 else None,
        md5=bytes.fromhex(fields["md5"]) if fields.get("md5") else None,
        size=fields.get("size") or None,
        license=fields.get("license") or None,
    )
    if fields.get("timestamp"):
        rec.timestamp = datetime.datetime.fromtimestamp(fields["timestamp"] / 1000, tz=datetime.UTC)
    file_name = url.rsplit("/", 1)[-1]
    return rattler.RepoDataRecord(rec, file_name, url, fields.get("channel", ""))


def link(artifacts: list[Artifact], prefix: Path, platform: str, local: Path, rattler_cache: Path) -> None:
    """Link verified local artifacts (local/<filename>) into prefix with py-rattler;
    no link scripts run."""
    import rattler

    from .aio import run
    from .fetch import artifact_filename

    records = [
        record(a.name, a.version, (local / artifact_filename(a)).absolute().as_uri(), a.sha256, a.fields, platform)
        for a in artifacts
    ]
    tag_existed = (prefix / "CACHEDIR.TAG").exists()
    try:
        run(lambda: rattler.install(records, str(prefix), cache_dir=rattler_cache, show_progress=False,
                                    platform=rattler.Subdir(platform)))  # fmt: skip
    except Exception as exc:  # rattler raises its own exception types
        raise InstallError(
            f"py-rattler could not install the conda packages into {prefix}: {first_line(exc)}"
        ) from None
    if not tag_existed:  # py-rattler marks the prefix as a cache dir; an environment is not one
        (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
