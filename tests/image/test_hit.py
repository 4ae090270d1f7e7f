"""mlenv.image.hit against the real Docker Engine: a hit record that does not name an
image carrying its content hash is no hit (the full path answers instead)."""

from __future__ import annotations

import json

import pytest

from mlenv.image import hit

pytestmark = pytest.mark.docker


def test_a_damaged_hit_record_is_no_hit(base_image, docker_client, tmp_path, monkeypatch, capsys):
    # the record names an image that exists (the test base) but carries no org.mlenv.content-hash label
    repo, _, tag = base_image.rpartition(":")
    repository, _, name = repo.rpartition("/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    d = tmp_path / "env"
    d.mkdir()
    (d / "mlenv.toml").write_bytes(b"spec bytes")
    (d / "mlenv.lock").write_bytes(b"lock bytes")
    hits = tmp_path / "cache" / "mlenv" / "hits"
    hits.mkdir(parents=True)
    record = hits / hit._key(b"spec bytes", b"lock bytes", hit.DEFAULT_PLATFORM)
    argv = ["-C", str(d), "build", "--json", "--repository", repository]
    for damaged in (
        {"name": name, "content_hash": None, "short_hash": tag},  # null == the missing label: was a false hit
        {"name": name, "content_hash": "sha256:" + "0" * 64, "short_hash": tag},
        {"name": name, "content_hash": 7, "short_hash": tag},
        {"name": None, "content_hash": "sha256:" + "0" * 64, "short_hash": tag},
        [name, tag],
    ):
        record.write_text(json.dumps(damaged))
        assert hit.try_hit(argv) is None, damaged
    assert capsys.readouterr().out == ""
