"""The install plan: what the installer installs, for one platform.

The host turns a lock into a plan (mlenv.installing.plan_for); the installer, on a
laptop or inside an image build step, installs exactly the plan. A plan is the
lock's packages for one platform with the fields an install needs, plus the few
facts about the interpreter; it holds no spec, no hash rules and no credentials.
Image build steps receive their plan from mlenv's artifact server by sha256 (the
plan's canonical JSON, `dumps()`), so the step's text pins exactly what it installs.

Format (JSON, keys sorted, no spaces):

    {"format": "mlenv-install-plan-v1",
     "platform": "linux-64",
     "python": "3.11.9" | null,       # the platform's Python (conda's, or the lock's)
     "interpreter": "/usr/bin/python3" | null,  # [image] python: the venv's base
     "needs_interpreter": true,       # a venv / conda python is needed (PyPI packages)
     "part": "env" | "pypi" | "all",
     "group": "numpy" | null,         # an image's PyPI group (one layer)
     "conda": [{record fields: name, version, build, build-number, subdir, channel,
                url, sha256, md5, size, timestamp, noarch, depends, constrains, license}],
     "pypi":  [{"name", "version", "url", "sha256", "size"}]}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import InstallError

FORMAT = "mlenv-install-plan-v1"
PART_ENV = "env"
PART_PYPI = "pypi"
PART_ALL = "all"
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Artifact:
    """One package of a plan: enough to fetch, verify and install it."""

    manager: str  # "conda" | "pypi"
    name: str
    version: str
    url: str
    sha256: str
    fields: dict = field(default_factory=dict, compare=False, hash=False)  # the lock's other fields

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    @property
    def size(self) -> int:
        size = self.fields.get("size")
        return size if isinstance(size, int) and not isinstance(size, bool) else 0

    def to_json(self) -> dict:
        return {**self.fields, "name": self.name, "version": self.version, "url": self.url, "sha256": self.sha256}


@dataclass
class Plan:
    platform: str
    python: str | None = None
    interpreter: str | None = None
    needs_interpreter: bool = False
    part: str = PART_ALL
    group: str | None = None
    conda: list[Artifact] = field(default_factory=list)
    pypi: list[Artifact] = field(default_factory=list)

    @property
    def artifacts(self) -> list[Artifact]:
        return list(self.conda) + list(self.pypi)

    def conda_python(self) -> Artifact | None:
        return next((a for a in self.conda if a.name == "python"), None)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "platform": self.platform,
            "python": self.python,
            "interpreter": self.interpreter,
            "needs_interpreter": self.needs_interpreter,
            "part": self.part,
            "group": self.group,
            "conda": [a.to_json() for a in sorted(self.conda, key=lambda a: (a.name, a.sha256))],
            "pypi": [a.to_json() for a in sorted(self.pypi, key=lambda a: (a.name, a.sha256))],
        }

    def dumps(self) -> str:
        """Canonical JSON: the same plan, the same bytes (its sha256 names it)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str, where: str = "install plan") -> Plan:
    """A plan from its JSON, every field checked (a plan file is input like any other)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InstallError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InstallError(f"{where}: not an {FORMAT} document")

    def opt_str(key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise InstallError(f"{where}: {key} must be a string")
        return value

    platform = data.get("platform")
    if not isinstance(platform, str) or not platform:
        raise InstallError(f"{where}: platform must be a non-empty string")
    part = data.get("part", PART_ALL)
    if part not in (PART_ENV, PART_PYPI, PART_ALL):
        raise InstallError(f"{where}: part must be env, pypi or all")
    needs = data.get("needs_interpreter", False)
    if not isinstance(needs, bool):
        raise InstallError(f"{where}: needs_interpreter must be true or false")
    return Plan(
        platform=platform,
        python=opt_str("python"),
        interpreter=opt_str("interpreter"),
        needs_interpreter=needs,
        part=part,
        group=opt_str("group"),
        conda=[_artifact("conda", raw, where) for raw in _list(data, "conda", where)],
        pypi=[_artifact("pypi", raw, where) for raw in _list(data, "pypi", where)],
    )


def _list(data: dict, key: str, where: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InstallError(f"{where}: {key} must be a list")
    return value


def _artifact(manager: str, raw, where: str) -> Artifact:
    if not isinstance(raw, dict):
        raise InstallError(f"{where}: a {manager} entry must be an object")
    values = {}
    for key in ("name", "version", "url", "sha256"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise InstallError(f"{where}: a {manager} entry has no valid {key}")
        values[key] = value
    if not _SHA256.match(values["sha256"]):
        raise InstallError(f"{where}: {manager} {values['name']}: sha256 must be 64 lowercase hex digits")
    fields = {k: v for k, v in raw.items() if k not in values}
    return Artifact(manager, values["name"], values["version"], values["url"], values["sha256"], fields)
