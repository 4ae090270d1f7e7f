"""What the console script's fast paths import (no timings: those live in bench/).

`mlenv build`'s cache hit (mlenv.image.hit) is answered before click or any model is
imported; `mlenv --help` imports click and nothing heavy. A module added at the top of
one of these files shows up here as a new name, long before a benchmark notices the
milliseconds it costs."""

from __future__ import annotations

from fresh_imports import imported_by, roots


def test_cache_hit_modules_import_only_os_and_themselves(tmp_path):
    # the modules the console script loads before it knows whether the hit answers
    new, _ = imported_by("import mlenv.cli.entry, mlenv.image.hit, mlenv.dockerd, mlenv.runtime.digest", tmp_path)
    allowed = {"mlenv", "mlenv.cli", "mlenv.cli.entry", "mlenv.image", "mlenv.image.hit", "mlenv.dockerd"}
    allowed |= {"mlenv.runtime", "mlenv.runtime.digest", "_sha256", "_sha2"}
    allowed |= {"__future__", "os", "posixpath", "genericpath", "stat", "_stat"}
    allowed |= {"os.path", "_collections_abc", "importlib._bootstrap", "importlib._bootstrap_external"}
    assert new <= allowed, sorted(new - allowed)


def test_cache_hit_attempt_without_a_record_stays_small(tmp_path, monkeypatch):
    # a miss (no record) is decided with the standard library's smallest parts: no typing, no re
    (tmp_path / "mlenv.toml").write_text('[environment]\nname = "x"\npython = "3.11"\n')
    (tmp_path / "mlenv.lock").write_text("{}\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    new, _ = imported_by("from mlenv.image.hit import try_hit; assert try_hit(['build']) is None", tmp_path)
    heavy = {"typing", "re", "click", "tomllib", "dataclasses", "json", "docker", "requests", "hashlib", "pathlib"}
    assert not heavy & new, sorted(heavy & new)


def test_help_imports_click_and_nothing_heavy(tmp_path):
    new, _ = imported_by("import mlenv.cli.main as m; m.main(['--help'])", tmp_path)
    assert "click" in roots(new)
    heavy = {"rich", "requests", "docker", "rattler", "tomlkit", "packaging", "jinja2", "tomllib", "platformdirs"}
    assert not heavy & roots(new), sorted(heavy & roots(new))
    assert not [n for n in new if n.startswith("mlenv.") and n.split(".")[1] not in ("cli", "errors", "runtime")]
