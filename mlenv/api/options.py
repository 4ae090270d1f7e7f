"""Where an option's value comes from, the same way for the CLI and the API: an
explicit argument, then its environment variable, then the user settings file
(mlenv.settings, ~/.config/mlenv/config.toml). Credentials for indexes come from
the environment only, and stay in memory."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MlenvError


def resolve(name: str, value: str | None) -> str | None:
    """The value of setting `name` (ca-bundle, registry, builder): the argument, else its
    environment variable, else the settings file (mlenv.settings.effective)."""
    if value:
        return value
    from .. import settings

    return settings.effective(name)


def ca_bundle(value: str | None, *, required: bool = True) -> str | None:
    """The CA bundle for downloads, as an absolute path; a named file that does not
    exist is an error (`required`), since every download would then fail."""
    path = resolve("ca-bundle", value)
    if not path:
        return None
    if required and not os.path.isfile(path):
        from .. import settings

        raise MlenvError(f"CA bundle {path}: no such file",
                         hint="pass an existing PEM file to --ca-bundle (or fix MLENV_CA_BUNDLE / ca-bundle in "
                              f"{settings.config_path()})")  # fmt: skip
    return os.path.abspath(path)


def source_urls(spec) -> list[str]:
    """The spec's URLs that downloads may need credentials for, as written: the indexes,
    the find-links pages, the archive URLs of `name @ https://...` dependencies and the
    conda channels (a lock's artifact URLs never carry credentials; downloads match them
    by host:port)."""
    from ..reqforms import URL, quick

    urls = ([spec.index_url] if spec.index_url else []) + list(spec.extra_index_urls)
    urls += [c for c in getattr(spec, "channels", []) if "://" in c]
    urls += list(getattr(spec, "find_links", []))
    for dep in spec.pypi_dependencies:
        form = quick(dep) if "@" in dep else None
        if form and form[0] == URL:
            urls.append(form[1])
    return urls


def index_urls(spec) -> tuple[str, ...]:
    """Credentialed source URLs for downloads (mlenv.runtime.fetch.credentials_by_host):
    the spec's `${VAR}` URLs (source_urls) expanded from the environment, and
    MLENV_INDEX_URL. In memory only: never written, logged or passed into a build."""
    from ..runtime.secrets import remember_url
    from ..spec import expand_env

    urls = []
    if spec is not None:
        for url in source_urls(spec):
            if "${" in url:
                try:
                    urls.append(expand_env(url))
                except MlenvError:
                    pass
    urls += [u for u in os.environ.get("MLENV_INDEX_URL", "").split() if u]
    for url in urls:
        remember_url(url)  # the scrubber masks the password in every message from here on
    return tuple(urls)


def spec_file(spec: str | os.PathLike[str] | None) -> Path:
    """The mlenv.toml to act on: a file, a directory holding one, default the cwd. An
    interrupted write of that directory's files is completed first (mlenv.runtime.journal)."""
    from ..runtime.journal import recover
    from ..spec import find_spec

    start = Path(spec) if spec else Path.cwd()
    recover(start.parent if start.suffix == ".toml" else start)
    return find_spec(start)
