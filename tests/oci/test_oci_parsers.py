"""Property tests for every parser of mlenv.oci: WWW-Authenticate challenges, Docker
config.json, token service answers, manifests / indexes / configs, platform
selection and the docker-save manifest.json. Each either returns a record or raises
one MlenvError; nothing else escapes, and what is valid round-trips."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlenv.errors import MlenvError
from mlenv.oci.auth import _from_auths, parse_challenge, parse_docker_config, parse_token_response
from mlenv.oci.engine import parse_save_manifest
from mlenv.oci.manifest import (
    ManifestError,
    Platform,
    canonical_json,
    kind,
    parse_config,
    parse_image_manifest,
    parse_index,
    platform_of,
    select_platform,
)
from mlenv.oci.store import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+", min_size=1, max_size=12)
VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)
DIGEST = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(scheme=st.sampled_from(["Bearer", "Basic", "bearer"]), params=st.dictionaries(TOKEN, VALUE, max_size=5))
def test_challenge_round_trips(scheme, params):
    header = scheme + " " + ",".join(f"{k}={_quote(v)}" for k, v in params.items())
    got = parse_challenge(header)
    assert got is not None and got.scheme == scheme.lower()
    expected: dict[str, str] = {}
    for k, v in params.items():
        expected.setdefault(k.lower(), v)
    assert got.params == expected


@given(st.text(max_size=200))
def test_challenge_never_raises(header):
    got = parse_challenge(header)
    assert got is None or isinstance(got.params, dict)


def test_challenge_distribution_example():
    got = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                          'scope="repository:team/env:pull,push"')  # fmt: skip
    assert got.realm == "https://auth.example/token"
    assert got.params["scope"] == "repository:team/env:pull,push" and got.params["service"] == "registry.example"


@given(JSONISH)
def test_docker_config_parser_takes_any_json(value):
    try:
        config = parse_docker_config(json.dumps(value), "cfg.json")
    except MlenvError as exc:
        assert exc.message.startswith("cfg.json")
    else:
        assert isinstance(config.auths, dict) and isinstance(config.cred_helpers, dict)


@given(st.text(max_size=80))
def test_docker_config_parser_takes_any_text(text):
    try:
        parse_docker_config(text, "cfg.json")
    except MlenvError as exc:
        assert exc.message.startswith("cfg.json:") and "\n" not in exc.message


def test_docker_config_errors_never_show_its_content():
    for text in ('{"auths": {"h": {"auth": "c2VjcmV0LXZhbHVl"}}, oops', '{"auths": ["c2VjcmV0LXZhbHVl"]}'):
        with pytest.raises(MlenvError) as err:
            parse_docker_config(text, "cfg.json")
        assert "c2VjcmV0LXZhbHVl" not in str(err.value)


@given(
    host=st.sampled_from(["127.0.0.1:5000", "ghcr.io", "registry.example:8443"]),
    user=TOKEN,
    password=st.text(max_size=20).filter(lambda p: "\n" not in p),
    key_form=st.sampled_from(["{h}", "https://{h}", "http://{h}", "https://{h}/v1/"]),
)
def test_auths_entry_found_under_any_key_form(host, user, password, key_form):
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    data = {"auths": {key_form.format(h=host): {"auth": raw}, "other.example": {"auth": "eDp5"}}}
    config = parse_docker_config(json.dumps(data), "cfg.json")
    creds = _from_auths(config, host)
    assert creds is not None and (creds.username, creds.secret) == (user, password)
    assert "secret" not in repr(creds)  # the secret is left out of its repr
    assert _from_auths(config, "elsewhere.example") is None


@given(JSONISH)
def test_token_response_parser(value):
    try:
        token, lifetime = parse_token_response(json.dumps(value).encode())
    except MlenvError:
        return
    assert token and 0 <= lifetime <= 86400


def test_token_response_fields():
    assert parse_token_response(b'{"access_token": "abc", "expires_in": 300}') == ("abc", 300.0)
    assert parse_token_response(b'{"token": "abc"}') == ("abc", 60.0)


# --- manifests ----------------------------------------------------------------------------------

descriptor = st.builds(
    lambda d, n: {"mediaType": OCI_LAYER_GZIP, "digest": d, "size": n}, DIGEST, st.integers(0, 2**40)
)


@st.composite
def manifests(draw):
    layers = draw(st.lists(descriptor, max_size=6))
    config = {"mediaType": OCI_CONFIG, "digest": draw(DIGEST), "size": draw(st.integers(0, 10**6))}
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    if draw(st.booleans()):
        m["annotations"] = draw(st.dictionaries(TOKEN, VALUE, max_size=3))
    return m


@given(manifests())
def test_valid_manifest_round_trips(m):
    data = canonical_json(m)
    assert kind(data, None, "x") == "manifest"
    parsed = parse_image_manifest(data, "x")
    assert [d.to_json() for d in parsed.layers] == m["layers"]
    assert parsed.config.to_json() == m["config"]
    assert parsed.annotations == m.get("annotations", {})


@given(JSONISH)
def test_manifest_parsers_take_any_json(value):
    data = json.dumps(value).encode()
    for parse in (parse_image_manifest, parse_index, parse_config):
        try:
            parse(data, "where")
        except ManifestError as exc:
            assert exc.message.startswith("where")
    try:
        kind(data, None, "where")
    except ManifestError:
        pass


@given(manifests(), st.sampled_from(["config", "layers"]), JSONISH)
def test_damaged_manifest_is_one_line(m, key, junk):
    m[key] = junk
    try:
        parse_image_manifest(canonical_json(m), "ref")
    except ManifestError as exc:
        assert "\n" not in exc.message and exc.message.startswith("ref")


PLATS = [("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm64", None), ("linux", "arm", "v7"),
         ("linux", "ppc64le", None), ("unknown", "unknown", None), ("windows", "amd64", None)]  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from(PLATS), DIGEST), max_size=6),
       st.sampled_from(["linux-64", "linux-aarch64", "linux/arm/v7"]))  # fmt: skip
def test_platform_selection(entries, wanted):
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": 1,
         "platform": {k: v for k, v in zip(("os", "architecture", "variant"), p, strict=False) if v}} for p, d in entries]}  # fmt: skip
    parsed = parse_index(canonical_json(index), "idx")
    want = platform_of(wanted)
    try:
        chosen = select_platform(parsed, want, "idx")
    except ManifestError as exc:
        assert "has no image for" in exc.message
        assert not any(want.matches(*p) for p, _ in entries)
        return
    p = chosen.platform or {}
    assert want.matches(p.get("os"), p.get("architecture"), p.get("variant"))


def test_lock_platforms_map_to_oci():
    assert platform_of("linux-64") == Platform("linux", "amd64")
    arm = platform_of("linux-aarch64")
    assert arm.matches("linux", "arm64", None) and arm.matches("linux", "arm64", "v8")
    assert not arm.matches("linux", "arm", "v7") and not platform_of("linux-64").matches("linux", "arm64", None)


@given(st.lists(DIGEST, max_size=5), st.sampled_from([None, "amd64", 3]))
def test_config_parser(diff_ids, arch):
    cfg = {"rootfs": {"type": "layers", "diff_ids": diff_ids}, "os": "linux"}
    if arch is not None:
        cfg["architecture"] = arch
    parsed = parse_config(json.dumps(cfg).encode(), "c")
    assert list(parsed.diff_ids) == diff_ids and parsed.architecture == (arch if isinstance(arch, str) else None)


# --- docker save ---------------------------------------------------------------------------------


@given(st.lists(st.fixed_dictionaries({
    "Config": TOKEN.map(lambda t: f"blobs/sha256/{t}"),
    "RepoTags": st.lists(TOKEN.map(lambda t: f"name:{t}"), max_size=3),
    "Layers": st.lists(TOKEN.map(lambda t: f"{t}/layer.tar"), max_size=4),
}), min_size=1, max_size=3))  # fmt: skip
def test_save_manifest_round_trips(items):
    entries = parse_save_manifest(json.dumps(items).encode(), "save")
    assert [(e.config, list(e.repo_tags), list(e.layers)) for e in entries] == [
        (i["Config"], i["RepoTags"], i["Layers"]) for i in items
    ]


@settings(max_examples=200)
@given(JSONISH)
def test_save_manifest_takes_any_json(value):
    try:
        parse_save_manifest(json.dumps(value).encode(), "save")
    except ManifestError as exc:
        assert exc.message.startswith("save") and "\n" not in exc.message
