"""User settings: `<user config dir>/mlenv/config.toml` (`~/.config/mlenv/config.toml`
on Linux, `XDG_CONFIG_HOME` respected; `MLENV_CONFIG=FILE` names another file).

For what a user sets once per machine rather than per project: the CA bundle of a
TLS-intercepting proxy, the team registry, the image builder. A command-line option
wins over its environment variable, which wins over this file:

    ca-bundle = "/etc/ssl/certs/corp-ca.pem"   # --ca-bundle / MLENV_CA_BUNDLE
    registry = "oci://registry.example.com/ml" # --registry / MLENV_REGISTRY
    builder = "classic"                        # --builder / MLENV_BUILDER

A relative `ca-bundle` is relative to the file's directory; `~` is expanded.
An unknown key or a wrong type is an error naming file:line. The file is read as
untrusted input (mlenv.validation): at most 64 KiB, UTF-8, bounded nesting, values
without control characters, quoted values cut short in messages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import MlenvError

KEYS = {
    "ca-bundle": "a PEM file: the CA bundle for every download (--ca-bundle, MLENV_CA_BUNDLE)",
    "registry": "the default registry (--registry, MLENV_REGISTRY)",
    "builder": "auto, daemonless, buildkit, classic or a plugin builder's name (--builder, MLENV_BUILDER)",
}
# the environment variable of each setting: it wins over this file (and an argument over both)
ENV_VARS = {"ca-bundle": "MLENV_CA_BUNDLE", "registry": "MLENV_REGISTRY", "builder": "MLENV_BUILDER"}
_loaded: dict[str, dict] = {}


class SettingsError(MlenvError):
    pass


def config_path() -> Path:
    explicit = os.environ.get("MLENV_CONFIG")
    if explicit:
        return Path(explicit)
    from platformdirs import user_config_dir

    return Path(user_config_dir("mlenv")) / "config.toml"


def _line(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
            return i
    return 1


def load() -> dict[str, str]:
    path = config_path()
    key = str(path)
    if key in _loaded:
        return _loaded[key]
    from .validation import MAX_SETTINGS_BYTES, has_control, loads_toml, quote, read_text

    try:
        text = read_text(path, MAX_SETTINGS_BYTES, SettingsError, "settings file", hint="fix or remove the file")
    except FileNotFoundError:
        _loaded[key] = {}
        return {}
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file ({exc.strerror or exc})") from None
    data = loads_toml(text, path, SettingsError, hint="fix or remove the file", label="not valid TOML")
    settings = {}
    for name, value in data.items():
        where = f"{path}:{_line(text, name)}"
        if name not in KEYS:
            raise SettingsError(
                f"{where}: unknown setting {quote(name)}",
                hint="known settings: " + "; ".join(f"{k}: {v}" for k, v in KEYS.items()),
            )
        if not isinstance(value, str) or not value:
            raise SettingsError(f"{where}: {name} must be a non-empty string")
        if has_control(value):
            raise SettingsError(f"{where}: {name} holds a control character ({quote(value)})")
        if name == "builder" and not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", value):
            # a name; which builders exist (built in, or by entry point) is mlenv.image.engine's to say
            raise SettingsError(f"{where}: builder must be a builder's name (auto, daemonless, buildkit, classic), "
                                f"not {quote(value)}")  # fmt: skip
        if name == "ca-bundle":
            value = str(path.parent / os.path.expanduser(value))  # an absolute value stays as it is
        settings[name] = value
    _loaded[key] = settings
    return settings


def get(name: str) -> str | None:
    return load().get(name)


def effective(name: str) -> str | None:
    """Setting `name` where no argument gives it: its environment variable, else this file.
    The one precedence rule (mlenv.api.options.resolve puts an argument first)."""
    return os.environ.get(ENV_VARS[name]) or get(name)


def ca_bundle() -> str | None:
    """The CA bundle for a download made below the API (uv, the apt indexes, OCI
    registries): MLENV_CA_BUNDLE, else the ca-bundle setting; None: the default trust store."""
    return effective("ca-bundle")
