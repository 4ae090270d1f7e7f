"""Fuzz targets and input strategies for every parser of untrusted input (issue 9).

Shared by tests/test_fuzz.py (bounded, in CI) and bench/fuzz.py (10,000 cases per
parser). A *target* takes one generated input and runs a parser and what reads its
result; the property is always the same: it returns, or it raises an MlenvError.
Any other exception is a defect.

Inputs are generated two ways for every format:
- structured: near-valid documents, built table by table from the format's own keys,
  with values that are right, nearly right (a trailing newline, another script's
  digits, a control character, a credential, a huge string) or of the wrong type;
- raw mutation: valid seed files with bytes inserted, deleted, duplicated or swapped,
  including bytes that are not UTF-8.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

from hypothesis import strategies as st

from mlenv.errors import MlenvError

ROOT = Path(__file__).resolve().parent.parent

# --- values -------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\n",
    "\t",
    "demo\n",
    "demo",
    "Demo",
    "3.11",
    "3.11\n",
    "3.١١",
    "3.1𝟏",
    "3.11.9",
    "12.4",
    "١٢.٤",
    "2.28",
    "\x00",
    "a\x00b",
    "\x7f",
    "\x85",
    "\u2028",
    "é",
    "\ud800",
    "../../x",
    "..",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "javascript:alert(1)",
    "http://x y",
    "ftp://h/x",
    "https://u:p4ss@h.example/x",
    "https://tok3n@h.example/x",
    "https://${USER}:${TOKEN}@h.example/simple",
    "https://h.example/${TOKEN}/simple",
    "http://127.0.0.1:9/simple",
    "file:///",
    "file:///srv/channel",
    "file://host/x",
    "https://h.example/a/../b",
    "https://[::1/x",
    "https://h.example:99999/x",
    "conda-forge",
    "conda-forge/label/rc",
    "defaults",
    "nodefaults",
    "x" * 2000,
    "numpy",
    "numpy >=>1",
    "numpy 1.26.*",
    "python 3.11.*",
    "python >=3.11,<3.12",
    "pandas>=2",
    "pkg @ http://x/y.whl",
    "git+https://h.example/r.git",
    "-e .",
    "--index-url",
    "libgomp1",
    "Not OK",
    "curl=7.88.1-10+deb12u8",
    "/usr/bin/python3",
    "python3",
    "python:3.11-slim",
    "debian:bookworm-slim",
    "a b",
    "linux-64",
    "win-64",
    "osx-arm64",
    "noarch",
    "sha256:" + "0" * 64,
    "0" * 64,
    "F" * 64,
    "latest",
    "prod",
    "v1",
    "1",
    "0",
    "-1",
    "١",
    "RUN echo hi",
    "RUN a\nRUN b",
    "[x]",
    "{",
    '"',
    "'",
    "\\",
    "#",
    "=",
    "&a",
    "*a",
    "!!python/object:os.system",
]
# Mostly valid Unicode (a lone surrogate makes the whole TOML document invalid, so it is one nasty value among many).
PLAIN = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=24)
TEXT = st.one_of(st.sampled_from(NASTY), PLAIN)
KEY = st.one_of(
    st.sampled_from(["name", "version", "x", "", "a b", "A\n", "OMP_NUM_THREADS", "1X", "é"]),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8),
)
SCALAR = st.one_of(
    TEXT, TEXT, st.booleans(), st.integers(min_value=-(2**64), max_value=2**64), st.floats(allow_nan=True),
    st.datetimes(), st.dates(),
)  # fmt: skip
VALUE = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=3), max_leaves=8
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- a TOML writer for generated documents (any value, valid TOML or close to it) -----


def toml_value(v: object) -> str:
    import datetime

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_k(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest as
    it is (a lone surrogate stays and makes the file invalid UTF-8: one more bad input)."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _k(key: object) -> str:
    """A TOML key: bare when it can be (detectors look for `lock-version =`, `[project]`)."""
    text = str(key)
    return text if text and all(c.isascii() and (c.isalnum() or c in "-_") for c in text) else toml_string(text)


def toml_doc(doc: dict) -> str:
    """Top-level scalars first, then [table]s (a list of dicts becomes [[array]] tables)."""
    out = []
    for k, v in doc.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
            out.append(f"{_k(k)} = {toml_value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            out.append(f"\n[{_k(k)}]")
            for kk, vv in v.items():
                if isinstance(vv, dict) and all(isinstance(x, dict) for x in vv.values()) and vv:
                    for sub, table in vv.items():  # [platforms.linux-64]
                        out.append(f"\n[{_k(k)}.{_k(sub)}]")
                        out += [f"{_k(a)} = {toml_value(b)}" for a, b in table.items()]
                    out.append(f"\n[{_k(k)}]")
                else:
                    out.append(f"{_k(kk)} = {toml_value(vv)}")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for table in v:
                out.append(f"\n[[{_k(k)}]]")
                out += [f"{_k(a)} = {toml_value(b)}" for a, b in table.items()]
    return "\n".join(out) + "\n"


# --- raw mutation ----------------------------------------------------------------------

TOKENS = ["\n", "[", "]", "{", "}", '"', "'", "=", ",", "#", "\\", "\x00", "\t", "\r", "[[", "]]", '"""', "'''", "\\u0000",
          "é", "١", "\n[environment]\n", '\nname = "x"\n', "\n[pypi]\n", nested(40), nested(600), "&a", "*a", "- ", ": ",
          "\n  - pip:\n    - ", "--hash=sha256:00", "\n-r other.txt\n", "\n-r ../../../../etc/passwd\n"]  # fmt: skip


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "byte"]))
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS)).encode("utf-8", "surrogatepass")
        elif op == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=40))]
        elif op == "replace" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(min_value=0, max_value=127))
        elif op == "duplicate":
            end = min(len(data), pos + draw(st.integers(min_value=1, max_value=80)))
            data[pos:pos] = data[pos:end]
        else:
            data[pos:pos] = bytes([draw(st.sampled_from([0xFF, 0xC3, 0x80, 0xED, 0xA0, 0xFE]))])
    return bytes(data)


def _seed_files(pattern: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(ROOT.glob(pattern))]


SPEC_SEEDS = _seed_files("mlenv/curated/*.toml") + _seed_files("examples/*/mlenv.toml") + [
    (b'[environment]\nname = "demo"\npython = "3.11"\n[conda]\nchannels = ["conda-forge"]\ndependencies = ["numpy"]\n'
    b'[pypi]\nindex-url = "https://${U}:${T}@h.example/simple"\ndependencies = ["pandas>=2"]\n[variables]\nA = "1"\n'
    b'[system]\ncuda = "12.4"\n[image]\nbase = "debian:bookworm-slim"\napt-packages = ["libgomp1"]\nsteps = ["RUN x"]\n'),
]  # fmt: skip
SPEC_SEEDS = [s for s in SPEC_SEEDS if not s.startswith(b"[catalog")]
CONDA_SPEC = (
    b'[environment]\nname = "demo"\npython = "3.11"\n[conda]\nchannels = ["file:///nonexistent/channel"]\n'
    b'dependencies = ["numpy >=1.26", "libfix"]\n[pypi]\ndependencies = ["fixalpha"]\n'
)


def _conda_lock() -> bytes:
    """A lock with conda records (the shipped locks are PyPI-only), for the conda read paths."""
    from mlenv.lockfile import Lock, Package

    channel = "file:///nonexistent/channel"
    conda = {
        "build-number": 0,
        "subdir": "linux-64",
        "channel": channel,
        "md5": "d" * 32,
        "size": 5,
        "timestamp": 1700000000000,
        "license": "BSD-3-Clause",
    }
    pkgs = [
        Package(
            "conda",
            "linux-64",
            "python",
            "3.11.9",
            f"{channel}/linux-64/python-3.11.9-h0_0.conda",
            "a" * 64,
            {**conda, "build": "h0_0", "depends": ["libfix >=1"]},
        ),
        Package(
            "conda",
            "linux-64",
            "numpy",
            "1.26.4",
            f"{channel}/linux-64/numpy-1.26.4-py311_0.conda",
            "b" * 64,
            {**conda, "build": "py311_0", "depends": ["python >=3.11,<3.12.0a0"], "constrains": ["numpy-base <0a0"]},
        ),
        Package(
            "conda",
            "linux-64",
            "libfix",
            "1.1.0",
            f"{channel}/noarch/libfix-1.1.0-0.tar.bz2",
            "c" * 64,
            {**conda, "build": "0", "subdir": "noarch", "noarch": "generic"},
        ),
        Package(
            "pypi",
            "linux-64",
            "fixalpha",
            "1.1.0",
            "https://files.example/fixalpha-1.1.0-py3-none-any.whl",
            "e" * 64,
            {"size": 10, "index": "https://pypi.org/simple"},
        ),
    ]
    lock = Lock(
        spec_hash="sha256:" + "0" * 64,
        python="3.11",
        platforms={"linux-64": {"python": "3.11.9"}},
        packages=pkgs,
        image={
            "base": "debian:bookworm-slim",
            "reference": "docker.io/library/debian:bookworm-slim",
            "apt-packages": [],
            "steps": [],
        },
        inputs={
            "platforms": ["linux-64"],
            "channels": [channel],
            "conda-dependencies": ["libfix", "numpy >=1.26"],
            "pypi-dependencies": ["fixalpha"],
            "system": {},
            "extra-index-urls": [],
        },
    )
    return lock.seal().dumps().encode()


LOCK_SEEDS = _seed_files("mlenv/curated/*.lock") + [(ROOT / "mlenv.lock.example").read_bytes(), _conda_lock()]


# --- spec --------------------------------------------------------------------------------


def mostly(valid, nasty, ratio: int = 6):
    """`valid` most of the time (so later checks run), `nasty` one time in `ratio`."""
    return st.integers(min_value=0, max_value=ratio - 1).flatmap(lambda i: nasty if i == ratio - 1 else valid)


ENV_TABLE = st.fixed_dictionaries(
    {"name": mostly(st.sampled_from(["demo", "x.y_z-1", "a" * 128]), st.one_of(st.sampled_from(["demo\n", "Demo", "a" * 129]), VALUE))},
    optional={"python": mostly(st.sampled_from(["3.11", "3.11.9", "3.12"]), st.one_of(st.sampled_from(["3.١١", "3.11\n", "4.0"]), VALUE)),
              "platforms": mostly(st.lists(st.sampled_from(["linux-64", "osx-arm64", "win-64"]), min_size=1, max_size=3, unique=True),
                                  st.one_of(st.lists(st.sampled_from(["linux-64\n", "solaris", "linux-64"]), max_size=3), VALUE)),
              "description": mostly(PLAIN, VALUE)},
)  # fmt: skip
GOOD_URL = st.sampled_from(
    [
        "https://pypi.example.org/simple",
        "https://${U}:${T}@h.example/simple",
        "file:///srv/index",
        "http://127.0.0.1:9/simple",
        "https://__token__:${TOKEN}@h.example/s",
    ]
)
GOOD_CHANNEL = st.sampled_from(
    ["conda-forge", "conda-forge/label/rc", "https://conda.example.org/ch", "file:///srv/ch"]
)
URLS = st.one_of(
    st.sampled_from([n for n in NASTY if "://" in n or n in ("conda-forge", "defaults", "", "../../x")]), TEXT
)
GOOD_PYPI = st.sampled_from(
    [
        "pandas>=2",
        "numpy<2.1",
        "requests",
        "torch==2.4.*",
        "a[b]; python_version<'3.12'",
        "a @ file:///x",
        "b @ https://h.example/b.whl",
        "c ===1",
        "d>=1; extra == 'x'",
        "e (>=1)",
    ]
)
GOOD_CONDA = st.sampled_from(
    [
        "numpy 1.26.*",
        "python >=3.11,<3.12",
        "conda-forge::pytorch",
        "libgomp",
        "python 3.11.*",
        "python",
        "python *",
        "python=3.11=h0_cpython",
        "python >=3.11|<3",
        "python 3.12.*",
        "python ==3.11.* *_cpython",
        "python[version='>=3.11']",
        "python 3.11.9 h1234_0",
        "numpy[build=py311*]",
        "python >=3.١١",
    ]
)
SPEC_DOC = st.fixed_dictionaries(
    {"environment": mostly(ENV_TABLE, VALUE, 8)},
    optional={
        "conda": st.fixed_dictionaries({}, optional={
            "channels": mostly(st.lists(GOOD_CHANNEL, min_size=1, max_size=2), st.one_of(st.lists(URLS, max_size=3), VALUE)),
            "dependencies": mostly(st.lists(GOOD_CONDA, max_size=3), st.one_of(st.lists(TEXT, max_size=3), VALUE))}),
        "pypi": st.fixed_dictionaries({}, optional={
            "index-url": mostly(GOOD_URL, st.one_of(URLS, VALUE)),
            "extra-index-urls": mostly(st.lists(GOOD_URL, max_size=2), st.one_of(st.lists(URLS, max_size=3), VALUE)),
            "dependencies": mostly(st.lists(GOOD_PYPI, max_size=3), st.one_of(st.lists(TEXT, max_size=3), VALUE))}),
        "variables": st.dictionaries(mostly(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), KEY),
                                     mostly(PLAIN, VALUE), max_size=3),
        "system": st.dictionaries(st.sampled_from(["cuda", "glibc", "osx", "linux", "x"]),
                                  mostly(st.sampled_from(["12.4", "2.28", "13.0"]), st.one_of(TEXT, VALUE)), max_size=3),
        "image": st.fixed_dictionaries({}, optional={
            "base": mostly(st.sampled_from(["debian:bookworm-slim", "python:3.11-slim", "r.example/x@sha256:" + "0" * 64]),
                           st.one_of(TEXT, VALUE)),
            "apt-packages": mostly(st.lists(st.sampled_from(["libgomp1", "curl=7.88.1-10+deb12u8"]), max_size=2),
                                   st.one_of(st.lists(TEXT, max_size=3), VALUE)),
            "python": mostly(st.just("/usr/bin/python3"), st.one_of(TEXT, VALUE)),
            "steps": mostly(st.lists(st.sampled_from(["RUN echo hi", "RUN a\nRUN b"]), max_size=2),
                            st.one_of(st.lists(TEXT, max_size=2), VALUE))}),
    },
)  # fmt: skip


@st.composite
def with_extra(draw, docs) -> dict:
    """A document, now and then with one unknown key at the top or in a table."""
    doc = draw(docs)
    if draw(st.integers(min_value=0, max_value=7)) == 7:
        tables = [k for k, v in doc.items() if isinstance(v, dict)]
        target = doc[draw(st.sampled_from(tables))] if tables and draw(st.booleans()) else doc
        target[draw(KEY)] = draw(VALUE)
    return doc


SPEC_TEXT = st.one_of(
    with_extra(SPEC_DOC).map(lambda d: toml_doc(d).encode("utf-8", "surrogatepass")), mutated(SPEC_SEEDS)
)


def check_spec(data: bytes) -> None:
    """load_spec from a file, then what `mlenv lock` does with it before solving."""
    from mlenv.spec import load_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlenv.toml"
        path.write_bytes(data)
        spec = load_spec(path)
        spec.spec_hash()
        spec.conda_specs()
        spec.validate_requirements()


# --- lock --------------------------------------------------------------------------------


@st.composite
def lock_docs(draw) -> bytes:
    """A real lock with a few fields replaced, removed or added; the content hash is
    recomputed when the result still makes a Lock, so the checks after the hash run too."""
    import tomllib

    doc = tomllib.loads(draw(st.sampled_from(LOCK_SEEDS)).decode())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(
            st.sampled_from(["top", "environment", "image", "inputs", "platforms", "package", "package", "package"])
        )
        value = draw(VALUE)
        op = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if where == "top":
            key = draw(st.sampled_from(["version", "content-hash", "spec-hash", "environment", "image", "package"]))
            target = doc
        elif where == "package" and isinstance(doc.get("package"), list) and doc["package"]:
            target = doc["package"][draw(st.integers(min_value=0, max_value=len(doc["package"]) - 1))]
            if not isinstance(target, dict):
                continue
            key = draw(
                st.sampled_from(
                    [
                        "manager",
                        "platform",
                        "name",
                        "version",
                        "url",
                        "sha256",
                        "size",
                        "depends",
                        "md5",
                        "build-number",
                        "architecture",
                        "index",
                        "timestamp",
                        "channel",
                        "build",
                        "subdir",
                        "noarch",
                        "constrains",
                    ]
                )
            )
        elif where == "platforms" and isinstance(doc.get("platforms"), dict):
            target = doc["platforms"]
            key = draw(st.sampled_from(["linux-64", "osx-arm64", "solaris"]))
            value = draw(st.one_of(st.fixed_dictionaries({}, optional={"python": VALUE, "packages": VALUE}), VALUE))
        else:
            target = doc.get(where)
            if not isinstance(target, dict):
                continue
            key = draw(
                st.sampled_from(
                    [
                        "python",
                        "variables",
                        "base",
                        "reference",
                        "digest",
                        "apt-packages",
                        "steps",
                        "platforms",
                        "channels",
                        "system",
                        "index-url",
                    ]
                )
            )
        if op == "delete":
            target.pop(key, None)
        elif op == "add":
            target[draw(KEY)] = value
        else:
            target[key] = value
    text = toml_doc(doc)
    if draw(st.booleans()):
        text = _rehash(text)
    return text.encode("utf-8", "surrogatepass")


def _rehash(text: str) -> str:
    """The same document with a content hash that matches, when it can be computed."""
    import re

    from mlenv.lockfile import loads_lock

    try:
        lock = loads_lock(text, verify=False)
    except MlenvError:
        return text
    return re.sub(r'content-hash = "[^"]*"', f'content-hash = "{lock.compute_hash()}"', text, count=1)


LOCK_TEXT = st.one_of(lock_docs(), mutated(LOCK_SEEDS))


def check_lock(data: bytes) -> None:
    """read_lock, and for a lock that reads: it writes back byte-stable and reads again."""
    from mlenv.lockfile import loads_lock, read_lock

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlenv.lock"
        path.write_bytes(data)
        for verify in (True, False):
            try:
                lock = read_lock(path, verify=verify)
            except MlenvError:
                continue
            text = lock.dumps()
            again = loads_lock(text, verify=verify)  # whatever reads must write back readable
            assert again.dumps() == text
            for plat in lock.platforms:
                lock.for_platform(plat)
                lock.platform_python(plat)


# --- settings ----------------------------------------------------------------------------

SETTINGS_DOC = st.dictionaries(
    st.one_of(st.sampled_from(["ca-bundle", "registry", "builder", "cabundle"]), KEY),
    st.one_of(TEXT, VALUE),
    max_size=4,
)
SETTINGS_TEXT = st.one_of(
    SETTINGS_DOC.map(lambda d: toml_doc(d).encode("utf-8", "surrogatepass")),
    mutated([b'ca-bundle = "/etc/ssl/certs/ca.pem"\nregistry = "oci://127.0.0.1:5000/ml"\nbuilder = "classic"\n']),
)


def check_settings(data: bytes) -> None:
    from mlenv import settings

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_bytes(data)
        old = os.environ.get("MLENV_CONFIG")
        os.environ["MLENV_CONFIG"] = str(path)
        settings._loaded.clear()
        try:
            for name in settings.KEYS:
                settings.get(name)
        finally:
            settings._loaded.clear()
            if old is None:
                os.environ.pop("MLENV_CONFIG", None)
            else:
                os.environ["MLENV_CONFIG"] = old


# --- importers ---------------------------------------------------------------------------


def _yaml(doc: object) -> bytes:
    import yaml

    return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")


DEPENDENCY = st.one_of(TEXT, TEXT, st.fixed_dictionaries({"pip": st.one_of(st.lists(TEXT, max_size=3), VALUE)}), VALUE)
CONDA_DOC = st.fixed_dictionaries(
    {"dependencies": st.one_of(st.lists(DEPENDENCY, max_size=4), VALUE)},
    optional={"name": TEXT, "channels": st.one_of(st.lists(URLS, max_size=3), VALUE), "prefix": TEXT,
              "variables": st.one_of(st.dictionaries(KEY, TEXT, max_size=3), VALUE), "x": VALUE},
)  # fmt: skip
AZURE_DOC = st.fixed_dictionaries(
    {"$schema": st.just("https://azuremlschemas.azureedge.net/latest/environment.schema.json")},
    optional={"image": st.one_of(TEXT, VALUE), "conda_file": st.one_of(CONDA_DOC, st.sampled_from(
        ["conda.yml", "../conda.yml", "/etc/passwd", "missing.yml", "a\x00b"]), VALUE),
        "build": st.one_of(st.fixed_dictionaries({"path": st.sampled_from([".", "..", "ctx", "https://h/x", "/"])},
                                                 optional={"dockerfile_path": TEXT}), VALUE),
        "tags": st.one_of(st.fixed_dictionaries({}, optional={
            "mlenv.variables": st.one_of(st.sampled_from(['{"A": "1"}', '{"A\\n": 1}', "[1]", "{", "[" * 3000]), TEXT),
            "mlenv.platform": TEXT, "mlenv.python": TEXT}), VALUE),
        "os_type": TEXT, "version": VALUE, "inference_config": VALUE, "description": VALUE},
)  # fmt: skip
REQ_LINE = st.one_of(
    st.sampled_from(["numpy>=1", "pandas==2.2.3 --hash=sha256:00", "-r other.txt", "-c other.txt", "-r missing.txt",
                     "-r ../../../../../etc/passwd", "-r /etc/hostname", "-r a\x00b", "-i https://h.example/simple",
                     "--index-url=https://u:p4ss@h.example/simple", "--extra-index-url https://${T}@h.example/s",
                     "-e .", "-f ./wheels", "--trusted-host h", "--no-index", "git+https://h.example/r.git",
                     "pkg @ https://h.example/p.whl", "./local", "x \\", "# c", "--hash", "--unknown-option x",
                     "numpy; python_version < '3.12'"]),
    TEXT,
)  # fmt: skip
PYPROJECT_DOC = st.fixed_dictionaries(
    {"project": st.one_of(st.fixed_dictionaries({}, optional={
        "name": VALUE, "description": VALUE, "requires-python": st.one_of(st.sampled_from([">=3.9", "<3", "==3.١١"]),
                                                                           VALUE),
        "dependencies": st.one_of(st.lists(REQ_LINE, max_size=4), VALUE), "dynamic": VALUE,
        "optional-dependencies": st.one_of(st.dictionaries(KEY, st.lists(TEXT, max_size=2), max_size=2), VALUE)}),
        VALUE)},
    optional={"dependency-groups": VALUE, "tool": st.one_of(st.fixed_dictionaries({"uv": st.fixed_dictionaries(
        {"index": st.one_of(st.lists(st.fixed_dictionaries({"url": URLS}, optional={"default": VALUE}), max_size=2),
                            VALUE)})}), VALUE)},
)  # fmt: skip
PYLOCK_DOC = st.fixed_dictionaries(
    {"lock-version": st.just("1.0")},
    optional={"requires-python": VALUE, "packages": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["numpy", "a b", "x\n"]), VALUE)},
        optional={"version": st.one_of(st.sampled_from(["1.0", "1.0\n", "١"]), VALUE), "marker": VALUE,
                  "index": st.one_of(URLS, VALUE), "vcs": VALUE}), VALUE), max_size=4), VALUE)},
)  # fmt: skip
DOCKERFILE = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "FROM python:3.11",
                "FROM a\nFROM b",
                'ENV A=1 B="x\\q"',
                'ENV C="\\u00"',
                "ENV D 1",
                "ENV 1X=2",
                "RUN apt-get install -y curl",
                "RUN pip install 'a",
                "RUN pip install numpy pandas>=2",
                "RUN pip install ./x",
                "COPY . /x",
                "LABEL a=b",
                "USER x",
            ]
        ),
        TEXT,
    ),
    max_size=5,
).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))

IMPORT_CASE = st.one_of(
    st.tuples(st.just("environment.yml"), st.one_of(CONDA_DOC.map(_yaml), mutated([_yaml({"channels": ["conda-forge"],
              "dependencies": ["python=3.11", "numpy", {"pip": ["pandas>=2"]}], "variables": {"A": "1"}}),
              b"a: &a [1, *a]\n", b"a: &a [x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\ndependencies: [*c]\n"]))),
    st.tuples(st.just("azureml.yml"), st.one_of(AZURE_DOC.map(_yaml), mutated([_yaml({"$schema": "azureml", "image": "x",
              "conda_file": {"dependencies": ["python=3.11"]}})]))),
    st.tuples(st.just("requirements.txt"), st.lists(REQ_LINE, max_size=6).map(
        lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))),
    st.tuples(st.just("pyproject.toml"), st.one_of(PYPROJECT_DOC.map(lambda d: toml_doc(d).encode("utf-8", "surrogatepass")),
              mutated([b'[project]\nname = "x"\nrequires-python = ">=3.10"\ndependencies = ["numpy"]\n']))),
    st.tuples(st.just("pylock.toml"), st.one_of(PYLOCK_DOC.map(lambda d: toml_doc(d).encode("utf-8", "surrogatepass")),
              mutated([b'lock-version = "1.0"\n[[packages]]\nname = "numpy"\nversion = "1.26.4"\n']))),
)  # fmt: skip
SIDE_FILES = st.fixed_dictionaries({
    "other.txt": st.one_of(st.lists(REQ_LINE, max_size=3).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
                           st.just(b"\xff\xfe")),
    "conda.yml": CONDA_DOC.map(_yaml), "Dockerfile": DOCKERFILE,
})  # fmt: skip


def check_import(case: tuple[str, bytes], side: dict[str, bytes]) -> None:
    """`mlenv init --from FILE`: import_file, then the spec check the command runs on its output."""
    from mlenv.formats.importers import import_file
    from mlenv.spec import parse_spec

    name, data = case
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        (root / "ctx").mkdir(parents=True)
        (root / name).write_bytes(data)
        for side_name, side_data in side.items():
            (root / side_name).write_bytes(side_data)
        (root / "ctx" / "Dockerfile").write_bytes(side["Dockerfile"])
        (Path(tmp) / "conda.yml").write_bytes(b"dependencies: [numpy]\n")  # outside the imported file's directory
        os.chdir(root)
        try:
            text, _notes = import_file(root / name, name="imported")
            spec = parse_spec(text, root / "mlenv.toml")
            spec.validate_requirements()
        finally:
            os.chdir(cwd)


# --- local registry rows -----------------------------------------------------------------


class _InvalidUtf8:
    """A TEXT value that is not UTF-8 (written with CAST(X'..' AS TEXT))."""


INVALID_UTF8 = _InvalidUtf8()


ROW_VALUE = st.one_of(
    st.sampled_from(["demo", "demo\n", "../../../../etc/passwd", "0" * 64, "sha256:" + "0" * 64, "sha256:" + "g" * 64,
                     "prod", "latest", "Prod\n", "١", "2", "", "x" * 5000, "a\x00b", "2024-01-01T00:00:00Z"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none(), st.floats(), st.binary(max_size=8), PLAIN,
    st.just(INVALID_UTF8),
)  # fmt: skip
ROW_EDIT = st.one_of(
    st.tuples(st.just("bytes"), st.integers(min_value=0, max_value=60000), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("versions"), st.sampled_from(["name", "version", "content_hash", "spec_sha256", "lock_sha256",
                                                    "created", "description", "archived", "image", "image_digest"]),
              ROW_VALUE),
    st.tuples(st.just("environments"), st.sampled_from(["name", "archived", "created"]), ROW_VALUE),
    st.tuples(st.just("labels"), st.sampled_from(["label", "version", "name"]), ROW_VALUE),
    st.tuples(st.just("label_history"), st.sampled_from(["time", "version", "label"]), ROW_VALUE),
    st.tuples(st.just("meta"), st.just("value"), ROW_VALUE),
    st.tuples(st.just("delete"), st.sampled_from(["meta", "environments", "labels", "versions"]), st.none()),
    st.tuples(st.just("insert"), st.just("versions"), st.tuples(ROW_VALUE, ROW_VALUE, ROW_VALUE)),
)  # fmt: skip


def _set(db: sqlite3.Connection, sql: str, value: object) -> None:
    if value is INVALID_UTF8:
        db.execute(sql.replace("?", "CAST(X'ff41' AS TEXT)"))
    else:
        db.execute(sql, (value,))


def _registry_with_one_version(root: Path) -> None:
    from mlenv.lockfile import read_lock
    from mlenv.registry.local import LocalRegistry

    lock_bytes = (ROOT / "mlenv/curated/minimal-py311-cpu.lock").read_bytes()
    spec_bytes = (ROOT / "mlenv/curated/minimal-py311-cpu.toml").read_bytes()
    content_hash = read_lock(ROOT / "mlenv/curated/minimal-py311-cpu.lock").content_hash
    with LocalRegistry(root) as reg:
        reg.register("demo", spec_bytes, lock_bytes, content_hash)
        reg.set_label("demo", 1, "prod")


_TEMPLATE: list[Path] = []


def _template_registry() -> Path:
    """One registry with demo@1 (label prod), made once per process and copied per case."""
    if not _TEMPLATE:
        import atexit
        import shutil

        top = tempfile.mkdtemp(prefix="mlenv-fuzz-registry-")
        atexit.register(shutil.rmtree, top, True)
        root = Path(top) / "reg"
        _registry_with_one_version(root)
        _TEMPLATE.append(root)
    return _TEMPLATE[0]


def check_registry_rows(edits: list[tuple[str, str, object]]) -> None:
    """Crafted rows written into index.sqlite3 behind mlenv's back, then every read path."""
    import shutil

    from mlenv.registry.local import LocalRegistry

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "reg"
        shutil.copytree(_template_registry(), root)
        db = sqlite3.connect(root / "index.sqlite3")
        patches = []
        for table, column, value in edits:
            if table == "bytes":
                patches.append((column, value))
            elif table == "delete":
                db.execute(f"DELETE FROM {column}")
            elif table == "insert":
                name, version, other = (None if v is INVALID_UTF8 else v for v in value)  # type: ignore[attr-defined]
                db.execute(
                    "INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, '', '', 0, NULL, NULL)",
                    (name, version, other, other, other),
                )
            elif table == "meta":
                _set(db, "UPDATE OR IGNORE meta SET value = ? WHERE key = 'schema'", value)
            else:
                _set(db, f"UPDATE OR IGNORE {table} SET {column} = ?", value)
        db.commit()
        db.close()
        for offset, data in patches:  # bytes overwritten in the file: a damaged page
            with open(root / "index.sqlite3", "r+b") as fh:
                fh.seek(offset)
                fh.write(data)
        with LocalRegistry(root) as reg:
            _read_everything(reg)
        for args in (["show", "demo", "--json"], ["versions", "demo", "--all"], ["list", "--all"]):
            code, _out, err = run_cli([*args, "--registry", str(root)], Path(tmp))
            assert code in (0, 1, 2) and "Traceback" not in err, (code, err)


def _read_everything(reg) -> None:
    for call in (
        lambda: reg.names(include_archived=True),
        lambda: reg.summary(include_archived=True),
        reg.content_hashes,
    ):
        with contextlib.suppress(MlenvError):
            call()
    names = ["demo"]
    with contextlib.suppress(MlenvError):
        names += reg.names(include_archived=True)
    for name in names:
        for ref in ("latest", "1", "2", "prod", "0000", "١"):
            try:
                v = reg.resolve(name, ref)
                reg.read(v)
            except MlenvError:
                pass
        with contextlib.suppress(MlenvError):
            reg.label_history(name, "prod")
        with contextlib.suppress(MlenvError):
            reg.find(name, "sha256:" + "0" * 64)


# --- OCI and Azure ML documents ------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
OCI_STATE = st.one_of(
    JSON,
    st.fixed_dictionaries({}, optional={
        "archived": JSON, "versions": st.one_of(st.dictionaries(st.sampled_from(["1", "01", "١", "x", "2"]),
                                                                st.one_of(st.dictionaries(st.sampled_from(
                                                                    ["archived", "description", "image", "image_digest"]),
                                                                    JSON, max_size=4), JSON), max_size=3), JSON),
        "labels": st.one_of(st.dictionaries(st.sampled_from(["prod", "latest", "Prod", "p\n"]), JSON, max_size=2), JSON),
        "history": st.one_of(st.dictionaries(st.sampled_from(["prod", "x y"]), st.one_of(
            st.lists(st.one_of(st.tuples(TEXT, JSON).map(list), JSON), max_size=3), JSON), max_size=2), JSON)}),
)  # fmt: skip
OCI_MANIFEST = st.one_of(JSON, st.fixed_dictionaries(
    {"artifactType": st.sampled_from(["application/vnd.mlenv.environment.v1", "x"])},
    optional={"annotations": st.one_of(st.fixed_dictionaries({}, optional={
        "org.mlenv.name": st.one_of(st.sampled_from(["demo", "demo\n"]), JSON),
        "org.mlenv.version": st.one_of(st.sampled_from(["1", "١", "01", "-1", "1\n", "99999999999"]), JSON),
        "org.mlenv.content-hash": st.one_of(st.just("sha256:" + "0" * 64), JSON),
        "org.opencontainers.image.created": JSON, "org.opencontainers.image.description": JSON}), JSON),
        "layers": st.one_of(st.lists(st.one_of(st.fixed_dictionaries({
            "mediaType": st.sampled_from(["application/vnd.mlenv.spec.v1+toml", "application/vnd.mlenv.lock.v1+toml"]),
            "digest": st.one_of(st.just("sha256:" + "0" * 64), st.just("sha256:../../x"), JSON)}), JSON), max_size=3),
            JSON)}))  # fmt: skip


def check_oci_documents(state: object, manifest: object) -> None:
    """The OCI backend's readers of documents a registry hands back (no server needed)."""
    from mlenv.registry import oci

    raw = json.dumps(state).encode()
    body = oci._object(raw)
    if body is not None:
        merged = oci._empty_state()
        merged.update(body)
        with contextlib.suppress(MlenvError):
            oci._check_state(merged, "state")
    with contextlib.suppress(MlenvError):
        oci._strings(raw, "tags", "tags")
    oci._numbers([str(x) for x in (state if isinstance(state, list) else [state])])
    reg = oci.OciRegistry("oci://127.0.0.1:1/fuzz")
    reg._to_version("demo", manifest)  # a Version or None, never an exception


AZURE_ENV = st.fixed_dictionaries({
    "name": st.one_of(st.sampled_from(["demo", "Demo"]), TEXT), "version": st.one_of(st.sampled_from(["1", "١", "²", "01"]), JSON),
    "properties": st.one_of(st.fixed_dictionaries({"mlenv.format": st.just("1")}, optional={
        "mlenv.content-hash": st.one_of(st.just("sha256:" + "0" * 64), JSON), "mlenv.spec-sha256": JSON,
        "mlenv.lock-sha256": JSON, "mlenv.spec.chunks": st.one_of(st.sampled_from(["1", "0", "99999999", "١"]), JSON),
        "mlenv.spec.0": st.one_of(st.sampled_from(["eJwDAAAAAAE=", "!!", ""]), JSON),
        "mlenv.lock.chunks": JSON, "mlenv.lock.0": JSON}), JSON),
    "tags": st.one_of(st.dictionaries(st.sampled_from(["mlenv.label.prod", "mlenv.label.P\n", "mlenv.image",
                                                       "mlenv.label-history.prod"]), JSON, max_size=3), JSON),
    "description": st.one_of(st.none(), TEXT),
})  # fmt: skip


def check_azure_documents(env: dict) -> None:
    """The Azure ML backend's readers of environment versions (properties, tags, stored chunks)."""
    from mlenv.registry.azureml import AzureMLRegistry
    from mlenv.registry.base import Version

    obj = SimpleNamespace(creation_context=None, **env)
    client = SimpleNamespace(environments=SimpleNamespace(get=lambda name, version: obj))
    reg = AzureMLRegistry("azureml://subscriptions/s/resourceGroups/r/workspaces/w", client=client)
    with contextlib.suppress(MlenvError):
        reg._to_version(obj, set(), False)
    v = Version("demo", 1, "sha256:" + "0" * 64, "0" * 64, "0" * 64, "")
    with contextlib.suppress(MlenvError):
        reg.read(v)


# --- the CLI -------------------------------------------------------------------------------

CLI_ARGS = st.sampled_from(
    [
        ["lock", "--offline", "-q"],
        ["lock", "--check"],
        ["hash"],
        ["lock", "--offline", "--json"],
        ["export", "--format", "requirements"],
        ["verify", "--prefix", "no-such-prefix"],
    ]
)


def run_cli(args: list[str], directory: Path) -> tuple[int, str, str]:
    """mlenv.cli.main in-process, in `directory`: (exit code, stdout, stderr)."""
    from mlenv.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    code = 0
    os.chdir(directory)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


def check_cli(spec: bytes, lock: bytes | None, args: list[str]) -> None:
    """The property at the CLI: exit 0, 1 or 2 and no traceback on stderr (an exception
    other than MlenvError escapes main() and fails the test by itself)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "mlenv.toml").write_bytes(spec)
        if lock is not None:
            (d / "mlenv.lock").write_bytes(lock)
        code, _out, err = run_cli(args, d)
        assert code in (0, 1, 2), (code, err)
        assert "Traceback" not in err, err
        if code:  # one `error:` line (after progress lines), or lock --check's "stale" report, or a usage error
            assert (
                sum(line.startswith("error:") for line in err.splitlines()) == 1 or "stale" in err or "Usage:" in err
            ), err


CLI_SPEC = st.one_of(
    SPEC_TEXT, st.sampled_from([CONDA_SPEC, CONDA_SPEC.replace(b">=1.26", b">=2")]), st.just(b"")
)  # VALID_SPEC is added below

VALID_SPEC = textwrap.dedent("""\
    [environment]
    name = "demo"
    python = "3.11"

    [image]
    base = "debian:bookworm-slim"
""").encode()
CLI_SPEC = st.one_of(CLI_SPEC, st.just(VALID_SPEC))
