"""`mlenv.build(layout="….tar")` (`mlenv build --layout FILE.tar`), called in-process: the
daemonless builder's OCI image layout as one deterministic tar, read back here with tarfile
alone (no skopeo): index.json -> manifest -> config and layers, every blob's sha256 checked."""

from __future__ import annotations

import hashlib
import json
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest
from refusals import one_line

import mlenv as api
from mlenv.errors import MlenvError

pytestmark = [pytest.mark.docker, pytest.mark.registry]
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch):
    """The builder is auto's choice and no CA bundle is named."""
    monkeypatch.delenv("MLENV_CA_BUNDLE", raising=False)
    monkeypatch.delenv("MLENV_BUILDER", raising=False)


def read_layout_tar(path: Path) -> tuple[dict[str, bytes], dict]:
    """The tar's files, and the one image's manifest, every blob checked against its name."""
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        for m in tar.getmembers():
            assert m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    (entry,) = json.loads(files["index.json"])["manifests"]
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].split(":", 1)[1]])
    for d in [manifest["config"], *manifest["layers"]]:
        assert len(files["blobs/sha256/" + d["digest"].split(":", 1)[1]]) == d["size"]
    return files, {"entry": entry, "manifest": manifest}


def test_layout_tar_is_deterministic_atomic_and_readable(tmp_path, base_image_remote, fixture_paths, monkeypatch):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "mlenv.toml").write_text(
        textwrap.dedent(f"""\
        [environment]
        name = "layout-tar-{RUN}"
        platforms = ["linux-64"]
        python = "3.11"
        [pypi]
        index-url = "{fixture_paths["pypi_simple_url"]}"
        dependencies = ["fixbeta"]
        [image]
        base = "{base_image_remote}"
        python = "/usr/bin/python3"
        """)
    )
    api.lock(d)
    first = tmp_path / "out" / "first.tar"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    built = api.build(d, layout=first)
    assert built.builder == "daemonless" and built.action == "built"

    # again, another cache, the same lock: the same bytes; and a layout is
    # written even though the image could now be "reused" (nothing would be written then)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    second = tmp_path / "second.tar"
    image = api.build(d / "mlenv.toml", layout=second)
    assert image.builder == "daemonless"
    assert second.read_bytes() == first.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["first.tar"]  # no temp file left beside it
    assert sorted(p.name for p in tmp_path.glob("*.tar*")) == ["second.tar"]

    files, found = read_layout_tar(first)
    short = built.content_hash.split(":", 1)[1][:12]
    assert found["entry"]["annotations"]["org.opencontainers.image.ref.name"] == short
    config = json.loads(files["blobs/sha256/" + found["manifest"]["config"]["digest"].split(":", 1)[1]])
    assert config["config"]["Labels"]["org.mlenv.content-hash"] == built.content_hash
    assert found["entry"]["digest"] == built.digest

    # the directory form of the same build holds the same files
    layout_dir = tmp_path / "dir-layout"
    api.build(d / "mlenv.toml", layout=layout_dir)
    on_disk = {str(p.relative_to(layout_dir)): p.read_bytes() for p in layout_dir.rglob("*") if p.is_file()}
    assert on_disk == files

    # a directory named *.tar is not overwritten by a file
    clash = tmp_path / "clash.tar"
    clash.mkdir()
    with pytest.raises(MlenvError) as e:
        api.build(d, layout=clash)
    assert e.value.exit_code != 0 and "is a directory, not a tar file" in one_line(e)
    assert clash.is_dir() and list(clash.iterdir()) == []
