"""mlenv.lock: TOML round trip, the content hash (what counts, what does not),
tamper detection, and the committed example lock."""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlenv.errors import LockError
from mlenv.lockfile import Lock, Package, loads_lock, read_lock

ROOT = Path(__file__).resolve().parent.parent


def make_lock(**over) -> Lock:
    pkgs = [
        Package(
            "pypi",
            "linux-64",
            "pandas",
            "2.2.3",
            "https://files.example/pandas-2.2.3-cp311-manylinux.whl",
            "a" * 64,
            {"size": 10, "index": "https://pypi.org/simple"},
        ),
        Package(
            "pypi",
            "linux-64",
            "numpy",
            "1.26.4",
            "https://files.example/numpy-1.26.4-cp311-manylinux.whl",
            "b" * 64,
            {"size": 20, "index": "https://pypi.org/simple"},
        ),
        Package(
            "conda",
            "linux-64",
            "libfix",
            "1.1.0",
            "file:///c/linux-64/libfix-1.1.0-0.tar.bz2",
            "c" * 64,
            {
                "build": "0",
                "build-number": 0,
                "subdir": "linux-64",
                "channel": "file:///c",
                "md5": "d" * 32,
                "size": 5,
                "timestamp": 1700000000000,
                "depends": [],
                "constrains": [],
            },
        ),
    ]
    fields = {
        "spec_hash": "sha256:" + "0" * 64,
        "python": "3.11",
        "platforms": {"linux-64": {"python": "3.11.9"}},
        "packages": pkgs,
        "variables": {"OMP_NUM_THREADS": "4"},
        "image": {
            "base": "python:3.11-slim",
            "reference": "docker.io/library/python@sha256:" + "e" * 64,
            "digest": "sha256:" + "e" * 64,
            "apt-packages": ["libgomp1"],
            "steps": [],
        },
        "inputs": {"platforms": ["linux-64"], "pypi-dependencies": ["pandas"]},
    }
    fields.update(over)
    return Lock(**fields).seal()


def test_round_trip_is_byte_stable():
    lock = make_lock()
    text = lock.dumps()
    again = loads_lock(text)
    assert again.content_hash == lock.content_hash
    assert again.dumps() == text
    assert tomllib.loads(text)["content-hash"] == lock.content_hash


def test_hash_is_sha256_of_documented_canonical_json():
    lock = make_lock()
    blob = json.dumps(lock.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert lock.content_hash == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert lock.short_hash == lock.content_hash[7:19]
    canon = lock.canonical()
    assert canon["format"] == "mlenv-content-v1"
    assert canon["image"]["base"] == "docker.io/library/python@sha256:" + "e" * 64  # the digest, not the tag


def test_hash_ignores_package_order_spec_hash_and_inputs():
    lock = make_lock()
    other = make_lock(
        packages=list(reversed(lock.packages)),
        spec_hash="sha256:" + "1" * 64,
        inputs={"platforms": ["linux-64"], "pypi-dependencies": ["pandas>=2", "numpy"]},
    )
    assert other.content_hash == lock.content_hash


def test_hash_ignores_apt_order_but_not_step_order():
    a = make_lock(image={**make_lock().image, "apt-packages": ["a", "b"], "steps": ["RUN a", "RUN b"]})
    b = make_lock(image={**make_lock().image, "apt-packages": ["b", "a"], "steps": ["RUN a", "RUN b"]})
    c = make_lock(image={**make_lock().image, "apt-packages": ["a", "b"], "steps": ["RUN b", "RUN a"]})
    assert a.content_hash == b.content_hash != c.content_hash


FIELDS = st.sampled_from(["name", "version", "url", "sha256", "manager"])


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2), FIELDS, st.text(min_size=1, max_size=8))
def test_property_changing_any_locked_package_changes_the_hash(index, field, suffix):
    lock = make_lock()
    pkgs = copy.deepcopy(lock.packages)
    old = getattr(pkgs[index], field)
    new = "conda" if field == "manager" and old == "pypi" else ("pypi" if field == "manager" else old + suffix)
    setattr(pkgs[index], field, new)
    assert make_lock(packages=pkgs).content_hash != lock.content_hash


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z_]{1,5}", fullmatch=True), st.text(max_size=5), min_size=1, max_size=3))
def test_property_changing_variables_changes_the_hash(extra):
    lock = make_lock()
    variables = {**lock.variables, **extra}
    if variables == lock.variables:
        return
    assert make_lock(variables=variables).content_hash != lock.content_hash


@pytest.mark.parametrize(
    "image_change",
    [
        {"reference": "docker.io/library/python@sha256:" + "f" * 64},
        {"reference": "docker.io/library/python:3.12-slim"},
        {"apt-packages": ["libgomp1", "curl"]},
        {"python": "/usr/bin/python3"},
        {"steps": ["RUN echo hi"]},
    ],
)
def test_changing_the_image_changes_the_hash(image_change):
    lock = make_lock()
    assert make_lock(image={**lock.image, **image_change}).content_hash != lock.content_hash


def test_changing_platform_python_changes_the_hash():
    assert make_lock(platforms={"linux-64": {"python": "3.11.10"}}).content_hash != make_lock().content_hash


def test_hand_edit_is_rejected(tmp_path):
    path = tmp_path / "mlenv.lock"
    make_lock().write(path)
    text = path.read_text()
    path.write_text(text.replace('version = "2.2.3"', 'version = "2.2.4"'))
    with pytest.raises(LockError) as info:
        read_lock(path)
    assert "content hash mismatch" in str(info.value) and "edited by hand or corrupted" in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("not toml [[[", "not a valid lock file"),
        ("version = 99\n", "lock format version 99 is not supported"),
        ('version = 1\ncontent-hash = "x"\n', "malformed lock file"),
    ],
)
def test_corrupt_locks_are_rejected_clearly(text, expected):
    with pytest.raises(LockError) as info:
        loads_lock(text, "mlenv.lock")
    assert expected in str(info.value)


def test_strings_are_escaped():
    lock = make_lock(variables={"QUOTE": 'say "hi"\\ \n\ttab', "UNI": "ünï ✓"})
    assert loads_lock(lock.dumps()).variables == lock.variables


def test_example_lock_matches_its_hash_and_spec():
    """mlenv.lock.example is a real lock of the README's example spec: a format
    change without a regenerated example fails here."""
    from mlenv.locking import status
    from mlenv.spec import load_spec

    lock = read_lock(ROOT / "mlenv.lock.example")  # verifies the content hash
    spec = load_spec(ROOT / "examples" / "fraud-train" / "mlenv.toml")
    assert lock.spec_hash == spec.spec_hash()
    assert status(spec, lock).state == "fresh"
    names = {p.name for p in lock.for_platform("linux-64", "pypi")}
    assert {"scikit-learn", "pandas", "numpy", "requests"} <= names
    for pkg in lock.packages:
        assert pkg.url.startswith("https://") and len(pkg.sha256) == 64
