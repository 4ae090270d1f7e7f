"""mlenv: reproducible, content-addressed machine-learning environments.

    import mlenv
    mlenv.curated.list()
    env = mlenv.Environment.create("fraud-train", python="3.11", pypi=["scikit-learn==1.5.2"])
    env.save(); lock = env.lock(); image = env.build(); v = env.register()

Everything the `mlenv` command does is a function here (docs/api.md). Names are
imported on first use, so `import mlenv` stays cheap (and this file is shipped into
image build steps with the stdlib-only mlenv.runtime: it must import nothing at the top).
"""

from __future__ import annotations

# not `from typing import TYPE_CHECKING`: typing costs milliseconds on `mlenv build`'s cache hit,
# which imports this package; type checkers treat a TYPE_CHECKING name as true all the same
TYPE_CHECKING = False

__version__ = "0.1.0"

# public name -> "module:attribute" (or "module" for a submodule)
_EXPORTS = {
    "Environment": "mlenv.api.environment:Environment",
    "Lock": "mlenv.lockfile:Lock",
    "Spec": "mlenv.spec:Spec",
    "MlenvError": "mlenv.errors:MlenvError",
    "SpecError": "mlenv.errors:SpecError",
    "LockError": "mlenv.errors:LockError",
    "SolveError": "mlenv.errors:SolveError",
    "InstallError": "mlenv.errors:InstallError",
    "RegistryError": "mlenv.registry.base:RegistryError",
    "open_registry": "mlenv.registry:open_registry",
    # the CLI's commands, one function each
    "init": "mlenv.api.spec:init",
    "add": "mlenv.api.spec:add",
    "remove": "mlenv.api.spec:remove",
    "lock": "mlenv.api.lock:lock",
    "check": "mlenv.api.lock:check",
    "content_hash": "mlenv.api.lock:content_hash",
    "install": "mlenv.api.install:install",
    "verify": "mlenv.api.install:verify",
    "build": "mlenv.api.image:build",
    "rebase": "mlenv.api.image:rebase",
    "images": "mlenv.api.image:images",
    "gc": "mlenv.api.image:gc",
    "register": "mlenv.api.registry:register",
    "environments": "mlenv.api.registry:environments",
    "versions": "mlenv.api.registry:versions",
    "show": "mlenv.api.registry:show",
    "diff": "mlenv.api.registry:diff",
    "label": "mlenv.api.registry:label",
    "label_history": "mlenv.api.registry:label_history",
    "archive": "mlenv.api.registry:archive",
    "unarchive": "mlenv.api.registry:unarchive",
    "restore": "mlenv.api.registry:restore",
    "search": "mlenv.api.registry:search",
    "web_ui": "mlenv.api.ui:ui",  # not `ui`: mlenv.ui is the catalog's package
    "export": "mlenv.api.export:export",
    "curated": "mlenv.curated",
    "cache": "mlenv.cache",
}

# a literal list (type checkers and linters read it); tests/api/test_api.py checks it against _EXPORTS
__all__ = [
    "__version__",
    "Environment",
    "Lock",
    "Spec",
    "MlenvError",
    "SpecError",
    "LockError",
    "SolveError",
    "InstallError",
    "RegistryError",
    "open_registry",
    "init",
    "add",
    "remove",
    "lock",
    "check",
    "content_hash",
    "install",
    "verify",
    "build",
    "rebase",
    "images",
    "gc",
    "register",
    "environments",
    "versions",
    "show",
    "diff",
    "label",
    "label_history",
    "archive",
    "unarchive",
    "restore",
    "search",
    "web_ui",
    "export",
    "curated",
    "cache",
]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'mlenv' has no attribute {name!r}")
    import importlib  # here, not at the top: importlib costs half a millisecond of the cache hit

    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from typing import Any

    from . import cache, curated
    from .api.environment import Environment
    from .api.export import export
    from .api.image import build, gc, images, rebase
    from .api.install import install, verify
    from .api.lock import check, content_hash, lock
    from .api.registry import (
        archive,
        diff,
        environments,
        label,
        label_history,
        register,
        restore,
        search,
        show,
        unarchive,
        versions,
    )
    from .api.spec import add, init, remove
    from .api.ui import ui as web_ui
    from .errors import InstallError, LockError, MlenvError, SolveError, SpecError
    from .lockfile import Lock
    from .registry import open_registry
    from .registry.base import RegistryError
    from .spec import Spec
