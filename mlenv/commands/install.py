"""`mlenv install` and `mlenv verify`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import ProgressLine, emit_json, spec_option, warn


def _lock_path(spec_file: str | None, lock_file: str | None) -> Path:
    if lock_file:
        return Path(lock_file)
    if spec_file:
        return Path(spec_file).with_name("mlenv.lock")
    return Path("mlenv.lock")


def _index_urls(spec_file: str | None, lock_path: Path) -> tuple[str, ...]:
    """Credentialed index URLs from the spec's ${VAR} URLs, expanded from the
    environment at install time (the lock's URLs never carry credentials)."""
    spec_path = Path(spec_file) if spec_file else lock_path.with_name("mlenv.toml")
    if not spec_path.is_file():
        return ()
    from ..errors import MlenvError
    from ..spec import expand_env, load_spec

    try:
        spec = load_spec(spec_path)
    except MlenvError:
        return ()
    urls = []
    for url in ([spec.index_url] if spec.index_url else []) + list(spec.extra_index_urls):
        try:
            urls.append(expand_env(url))
        except MlenvError as exc:
            warn(str(exc))
    return tuple(urls)


@click.command()
@spec_option
@click.option("--lock", "lock_file", type=click.Path(dir_okay=False), metavar="PATH",
              help="The lock file (default: next to the spec, or ./mlenv.lock).")
@click.option("--prefix", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Directory to install the environment into (created if missing).")
@click.option("--platform", "platform", metavar="PLATFORM", help="Platform of the lock to install (default: this host's).")
@click.option("--python", "python", metavar="PATH",
              help="Base interpreter for the venv when the lock has no conda Python (default: [image] python, else python3).")
@click.option("--pypi-prefix", type=click.Path(file_okay=False), metavar="DIR",
              help="Install PyPI packages under DIR (added to the env by a .pth file) instead of into the env itself.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False), envvar="MLENV_CA_BUNDLE", metavar="FILE",
              help="CA bundle for every download (env MLENV_CA_BUNDLE).")
@click.option("--no-cache", is_flag=True, help="Do not keep downloaded artifacts in mlenv's cache.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--quiet", "-q", is_flag=True)
def install(spec_file, lock_file, prefix, platform, python, pypi_prefix, ca_bundle, no_cache, as_json, quiet):
    """Materialize mlenv.lock into --prefix: conda packages with py-rattler,
    then PyPI packages with uv (--require-hashes --no-deps). Every artifact is
    sha256-checked against the lock; nothing is resolved afresh."""
    import os

    from .. import install as installer
    from ..lockfile import read_lock

    path = _lock_path(spec_file, lock_file)
    lock = read_lock(path)
    if not ca_bundle:
        from .. import settings

        ca_bundle = settings.get("ca-bundle")
    if ca_bundle:
        if not os.path.isfile(ca_bundle):
            from ..errors import MlenvError

            raise MlenvError(f"CA bundle {ca_bundle}: no such file", hint="pass an existing PEM file to --ca-bundle / MLENV_CA_BUNDLE")
        os.environ["MLENV_CA_BUNDLE"] = os.path.abspath(ca_bundle)
        os.environ["SSL_CERT_FILE"] = os.path.abspath(ca_bundle)
    with ProgressLine(quiet or as_json) as progress:
        res = installer.install(lock, prefix, platform=platform, python=python, pypi_prefix=pypi_prefix,
                                no_cache=no_cache, index_urls=_index_urls(spec_file, path), progress=progress)
    summary = {"prefix": str(res.prefix), "platform": res.platform, "conda": res.conda, "pypi": res.pypi,
               "interpreter": res.interpreter, "content_hash": lock.content_hash, "removed": res.removed}
    if as_json:
        emit_json(summary)
    elif not quiet:
        click.echo(f"Installed {lock.short_hash} ({res.platform}: {res.conda} conda + {res.pypi} PyPI) into {res.prefix}")
        if res.removed:
            click.echo(f"  removed packages not in the lock: {', '.join(res.removed)}")


@click.command()
@spec_option
@click.option("--lock", "lock_file", type=click.Path(dir_okay=False), metavar="PATH",
              help="The lock file (default: next to the spec, or ./mlenv.lock; with --image and no local lock, the image's own).")
@click.option("--prefix", type=click.Path(file_okay=False), metavar="DIR", help="The installed prefix to check.")
@click.option("--image", "image", metavar="REF", help="Check a Docker image built by mlenv instead of a prefix.")
@click.option("--platform", "platform", metavar="PLATFORM", help="Platform of the lock to compare with (default: this host's).")
@click.option("--pypi-prefix", type=click.Path(file_okay=False), metavar="DIR", help="Where PyPI packages were put, if apart.")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def verify(spec_file, lock_file, prefix, image, platform, pypi_prefix, as_json):
    """Report every difference between a prefix (or an image) and mlenv.lock:
    missing, extra or wrong-version packages and missing files. Exit 1 on any."""
    from ..errors import MlenvError
    from ..lockfile import read_lock

    if bool(prefix) == bool(image):
        raise MlenvError("verify needs exactly one of --prefix DIR or --image REF")
    path = _lock_path(spec_file, lock_file)
    if image:
        from ..build.docker import verify_image

        lock, diffs, where = verify_image(image, path if (lock_file or spec_file or path.exists()) else None)
        platform = "linux-64"
    else:
        from .. import install as installer

        lock = read_lock(path)
        where = prefix
        diffs = installer.verify(lock, prefix, platform=platform, pypi_prefix=pypi_prefix)
    if as_json:
        emit_json({"target": where, "content_hash": lock.content_hash, "ok": not diffs,
                   "differences": [d.as_dict() for d in diffs]})
    else:
        for d in diffs:
            click.echo(str(d))
        if diffs:
            click.echo(f"{where}: {len(diffs)} difference(s) from {path.name if not image else 'the lock'} ({lock.short_hash})", err=True)
        else:
            click.echo(f"{where} matches mlenv.lock {lock.short_hash}")
    if diffs:
        sys.exit(1)
