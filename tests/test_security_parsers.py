"""Issue 9, part 1: every spec, lock, settings file, import and registry record is untrusted input.

One test (or a parametrized family) per finding of the issue, named after it:
item 2 (corrupt input gives tracebacks), item 3 (secrets leak: the spec/solver part),
item 4 (an empty index reads as an empty registry; a read-only registry), item 6
(validation holes), plus the rules behind them (mlenv.runtime.secrets, size and
nesting limits, messages that truncate what they quote). docs/security.md is the
trust model these tests hold mlenv to.

A refusal is library behaviour: the commands run in-process through the API and each bad
input is a `pytest.raises` of a one-line message (`one_error`), checked before the CLI's
scrubber, so a secret in a message fails here even where the CLI would mask it. The CLI
runs that stay: one per command family rendering a refusal (`one_clean_error`), what
`show` prints, and the read-only registry (mlenv run as another user).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import hypothesis
import pytest
from hypothesis import strategies as hst
from refusals import one_line
from registry_envs import make_env

import mlenv
from mlenv.errors import LockError, MlenvError, SpecError
from mlenv.lockfile import loads_lock, read_lock
from mlenv.registry.base import RegistryError
from mlenv.registry.local import LocalRegistry
from mlenv.runtime.secrets import has_literal_credential, referenced_values, scrub, strip_credentials
from mlenv.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_LOCK = (ROOT / "mlenv.lock.example").read_text()
SECRET = "s3cr3t-Pa55"


def mlenv_cli(*args, cwd, env=None, user=None):
    full = dict(os.environ)
    full.update(env or {})
    cmd = [sys.executable, "-m", "mlenv.cli", *args]
    if user is not None:  # run as another user (the read-only registry tests)
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full)


def one_clean_error(proc, *, code=2) -> str:
    """The error of a failed command: exit code, no traceback, one `error:` (after any
    progress lines), returned from there on."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return "\n".join(lines[errors[0] :]) + "\n"


def one_error(call, *args, code: int = 2, **kwargs) -> str:
    """The refusal of an API call: an MlenvError with a one-line message and exit code `code`;
    returns its text (message and hint, as the CLI prints them)."""
    with pytest.raises(MlenvError) as info:
        call(*args, **kwargs)
    return one_line(info, code=code)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Registries are always passed explicitly (the caller's stays out), and the secrets an
    in-process call remembers for the scrubber are forgotten after the test."""
    from mlenv.runtime import secrets

    monkeypatch.delenv("MLENV_REGISTRY", raising=False)
    monkeypatch.setattr(secrets, "_remembered", set(secrets._remembered))


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(text), Path("mlenv.toml"))
    return str(info.value)


def lock_error(text: str | bytes) -> str:
    with pytest.raises(LockError) as info:
        loads_lock(text, "mlenv.lock")
    return str(info.value)


def relocked(text: str) -> str:
    """The lock text with its content hash recomputed (an attacker can always do that)."""
    import re
    import tomllib

    from mlenv.lockfile import Lock, Package

    data = tomllib.loads(text)
    pkgs = []
    for raw in data.get("package", []):
        raw = dict(raw)
        pkgs.append(
            Package(
                raw.pop("manager"),
                raw.pop("platform"),
                raw.pop("name"),
                raw.pop("version"),
                raw.pop("url"),
                raw.pop("sha256"),
                raw,
            )
        )
    env = data.get("environment", {})
    try:
        lock = Lock(
            data["spec-hash"],
            env.get("python"),
            {k: {"python": v.get("python")} for k, v in data["platforms"].items()},
            pkgs,
            variables=env.get("variables") if isinstance(env.get("variables"), dict) else {},
            image=data.get("image") if isinstance(data.get("image"), dict) else {},
        )
        digest = lock.compute_hash()
    except (TypeError, AttributeError, ValueError):
        return text
    return re.sub(r'^content-hash = "[^"]*"', f'content-hash = "{digest}"', text, count=1, flags=re.M)


# --- item 2: a corrupt lock gives tracebacks -----------------------------------------------


@pytest.fixture
def project(tmp_path):
    """A spec with a current lock (no solve needed) and a registry directory."""
    make_env(tmp_path / "p", variables={"OMP_NUM_THREADS": "4"}, packages={"fixalpha": "1.1.0"})
    return tmp_path / "p"


LOCK_COMMANDS = {  # every command that reads the lock: its API call (project, registry), its exit code
    "hash": (lambda p, r: mlenv.content_hash(spec=p), 2),
    "lock --check": (lambda p, r: mlenv.check(p), 1),
    "export --format requirements": (lambda p, r: mlenv.export("requirements", spec=p), 2),
    "register --no-image": (lambda p, r: mlenv.register(p, registry=r, image=False), 2),
    "verify --prefix prefix": (lambda p, r: mlenv.verify(prefix=p / "prefix", spec=p), 2),
    "install --prefix prefix": (lambda p, r: mlenv.install(p / "prefix", spec=p), 2),
}


def _non_utf8_lock(project: Path) -> Path:
    lock = project / "mlenv.lock"
    lock.write_bytes(lock.read_bytes().replace(b"fixalpha", b"fix\xffalpha", 1))
    return lock


@pytest.mark.parametrize("command", list(LOCK_COMMANDS))
def test_item2_non_utf8_lock_is_one_error_naming_the_path(project, tmp_path, command):
    lock = _non_utf8_lock(project)
    call, code = LOCK_COMMANDS[command]
    err = one_error(call, project, str(tmp_path / "reg"), code=code)
    assert str(lock) in err or "mlenv.lock" in err
    assert "not UTF-8" in err


@pytest.mark.parametrize("args, code", [(["hash"], 2), (["lock", "--check"], 1)], ids=["hash", "lock --check"])
def test_item2_non_utf8_lock_renders_as_one_error_line(project, tmp_path, args, code):
    """The CLI: the refusal above is one `error:` line with its exit code (2, and 1 for
    lock --check), no traceback."""
    lock = _non_utf8_lock(project)
    err = one_clean_error(mlenv_cli(*args, cwd=project, env={"MLENV_REGISTRY": str(tmp_path / "reg")}), code=code)
    assert (str(lock) in err or "mlenv.lock" in err) and "not UTF-8" in err


def test_item2_mlenv_lock_replaces_a_corrupt_lock_as_documented(project):
    lock = project / "mlenv.lock"
    lock.write_bytes(b"\xff\xfe" + lock.read_bytes())
    warnings = "\n".join(mlenv.lock(project, offline=True).warnings)
    assert "not UTF-8" in warnings and "solving from scratch and replacing it" in warnings
    assert read_lock(lock).packages == []  # regenerated from the spec (which has no dependencies)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("apt-packages", "[[1], 2]", "[image] apt-packages must be a list of a Debian package"),
        ("variables", '"ab"', "[environment] variables must be a table"),
    ],
)
def test_item2_lock_fields_of_the_wrong_shape_are_lock_errors_even_with_a_recomputed_hash(field, value, expected):
    import re

    text = re.sub(rf"^{field} = .*$", f"{field} = {value}", EXAMPLE_LOCK, count=1, flags=re.M)
    assert text != EXAMPLE_LOCK
    assert expected in lock_error(relocked(text))


def test_item2_array_nested_500_deep_is_refused_everywhere(tmp_path, monkeypatch):
    deep = "[" * 500 + "]" * 500
    assert "nested deeper than 16 levels" in spec_error(
        f'[environment]\nname = "x"\npython = "3.11"\n[variables]\nA = {deep}\n'
    )
    assert "nested deeper than 16 levels" in lock_error(EXAMPLE_LOCK.replace("steps = []", f"steps = {deep}"))
    config = tmp_path / "config.toml"
    config.write_text(f"registry = {deep}\n")
    monkeypatch.setenv("MLENV_CONFIG", str(config))
    from mlenv import settings

    settings._loaded.clear()
    with pytest.raises(MlenvError, match="nested deeper than 16 levels"):
        settings.load()
    settings._loaded.clear()


def test_item2_nesting_hidden_behind_brackets_in_strings_is_still_refused():
    # unbalanced "]" inside a string makes a raw bracket count too low; the parser's own limit still holds
    text = 'a = "' + "]" * 2000 + '"\nb = ' + "[" * 3000 + "]" * 3000 + "\n"
    assert "not a valid lock file" in lock_error(text)


@pytest.mark.parametrize("channel", ["javascript:alert(1)", "http://x y"])
def test_item2_bad_channels_are_spec_errors_not_invalid_channel_tracebacks(tmp_path, channel):
    (tmp_path / "mlenv.toml").write_text(
        f'[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = [{json.dumps(channel)}]\ndependencies = ["numpy"]\n'
    )
    err = one_error(mlenv.lock, tmp_path, offline=True)
    assert "mlenv.toml:5: channel" in err and "InvalidChannelError" not in err


@pytest.mark.parametrize("value", ["x", "1.5", "", "١", "2\n", None])
def test_item2_tampered_schema_value_in_local_registry_is_one_error(project, tmp_path, value):
    reg = tmp_path / "reg"
    mlenv.register(project, registry=str(reg), image=False)
    db = sqlite3.connect(reg / "index.sqlite3")
    if value is None:
        db.execute("DELETE FROM meta")
    else:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (value,))
    db.commit()
    db.close()
    err = one_error(mlenv.versions, "demo", registry=str(reg))
    assert "index.sqlite3" in err and ("schema" in err)


# --- item 3: secrets ---------------------------------------------------------------------------


def test_item3_conda_channel_password_is_refused_and_never_printed_by_lock_offline(tmp_path):
    (tmp_path / "mlenv.toml").write_text(
        f'[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["https://user:{SECRET}@conda.example.org/ch"]\n'
        'dependencies = ["numpy"]\n'
    )
    err = one_error(mlenv.lock, tmp_path, offline=True)
    assert SECRET not in err and "literal credential" in err and "${" in err
    assert not (tmp_path / "mlenv.lock").exists()


def test_item3_channel_reference_is_expanded_in_memory_and_never_printed_by_lock_offline(tmp_path, monkeypatch):
    (tmp_path / "mlenv.toml").write_text(
        '[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["https://user:${CHAN_TOKEN}@conda.example.org/ch"]\n'
        'dependencies = ["numpy"]\n'
    )
    monkeypatch.setenv("CHAN_TOKEN", SECRET)
    err = one_error(mlenv.lock, tmp_path, offline=True)
    assert "--offline cannot solve against the remote conda channel" in err and SECRET not in err


def test_item3_network_failure_hint_never_prints_the_channel_password(tmp_path, monkeypatch):
    # port 9 (discard) on loopback: nothing answers, rattler reports a fetch error with the URL
    (tmp_path / "mlenv.toml").write_text(
        '[environment]\nname = "x"\npython = "3.11"\n[conda]\nchannels = ["http://${CHAN_USER}:${CHAN_TOKEN}@127.0.0.1:9/ch"]\n'
        'dependencies = ["numpy"]\n[image]\nbase = "debian:bookworm-slim"\n'
    )
    monkeypatch.setenv("CHAN_USER", "chan-user")
    monkeypatch.setenv("CHAN_TOKEN", SECRET)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    err = one_error(mlenv.lock, tmp_path)
    assert SECRET not in err and "chan-user" not in err
    assert "127.0.0.1:9" in err  # the hint still names the channel, without its userinfo


def test_item3_literal_index_password_is_refused_so_it_is_never_registered_shown_or_restored(project, tmp_path):
    spec = project / "mlenv.toml"
    spec.write_text(
        spec.read_text().replace(
            "[variables]", f'[pypi]\nindex-url = "https://u:{SECRET}@pypi.example.org/simple"\n\n[variables]'
        )
    )
    reg = str(tmp_path / "reg")
    for call, kwargs in (
        (mlenv.register, {"registry": reg, "image": False}),
        (mlenv.lock, {"offline": True}),
        (lambda p: mlenv.export("requirements", spec=p), {}),
    ):
        err = one_error(call, project, **kwargs)
        assert SECRET not in err and "literal credential" in err
    assert all(SECRET.encode() not in p.read_bytes() for p in (tmp_path / "reg").rglob("*") if p.is_file())


def test_item3_show_scrubs_a_password_registered_before_the_rule(project, tmp_path):
    """A version registered by an older mlenv (or another client) may hold a literal password:
    `show` and `show --json` never print it."""
    spec = (
        (project / "mlenv.toml")
        .read_bytes()
        .replace(
            b"[variables]", f'[pypi]\nindex-url = "https://u:{SECRET}@pypi.example.org/simple"\n\n[variables]'.encode()
        )
    )
    lock = (project / "mlenv.lock").read_bytes()
    with LocalRegistry(tmp_path / "reg") as reg:
        reg.register("demo", spec, lock, read_lock(project / "mlenv.lock").content_hash)
    env = {"MLENV_REGISTRY": str(tmp_path / "reg")}
    for args in (["show", "demo@1"], ["show", "demo@1", "--json"]):
        proc = mlenv_cli(*args, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr and "pypi.example.org/simple" in proc.stdout


@pytest.mark.parametrize(
    "url, literal",
    [
        ("https://pypi.org/simple", False),
        ("https://user:pass@h/x", True),
        ("https://tok3n@h/x", True),
        ("https://user:@h/x", True),
        ("https://user%3Apass@h/x", True),
        ("https://a@b:c@h/x", True),
        ("https://${U}:${T}@h/x", False),
        ("https://${TOKEN}@h/x", False),
        ("https://__token__:${TOKEN}@h/x", False),
        ("https://${U}:literal@h/x", True),
        ("https://${U}x@h/x", True),
        ("https://h/x?u=a@b", False),
        ("conda-forge", False),
    ],
)
def test_item3_what_counts_as_a_literal_credential(url, literal):
    assert has_literal_credential(url) is literal


def test_item3_one_scrubber_for_urls_in_text_and_known_secrets():
    assert strip_credentials("https://a:b@c@host:8/x?y=z@w#f@g") == "https://host:8/x?y=z@w#f@g"
    assert strip_credentials("file:///srv/x") == "file:///srv/x"
    text = (
        "Failed to fetch `https://u:p@h.example/simple/x/` and 'http://tok@127.0.0.1:9/ch/noarch/repodata.json' "
        "(git+https://a:b@git.example/r.git); token=" + SECRET
    )
    out = scrub(text, [SECRET, ""])
    assert "u:p@" not in out and "tok@" not in out and "a:b@" not in out and SECRET not in out
    assert "https://h.example/simple/x/" in out and "http://127.0.0.1:9/ch" in out and "****" in out
    assert referenced_values(["https://${A}:${B}@h", None, "x"], {"A": "user", "B": SECRET}) == ["user", SECRET]


def test_item3_references_outside_the_userinfo_are_refused():
    # a path or query is copied into the lock's artifact URLs: a ${TOKEN} there would be stored
    err = spec_error(
        '[environment]\nname = "x"\npython = "3.11"\n[pypi]\nindex-url = "https://h.example/${TOKEN}/simple"\n'
    )
    assert "${VAR} reference outside the user:password@ part" in err


def test_item3_importer_drops_a_literal_credential_with_a_note(tmp_path):
    from mlenv.formats.importers import import_file

    req = tmp_path / "requirements.txt"
    req.write_text(f"--index-url https://u:{SECRET}@pypi.example.org/simple\nnumpy>=1\n")
    text, notes = import_file(req, name="demo", project=tmp_path)
    assert SECRET not in text and SECRET not in "".join(notes)
    assert 'index-url = "https://pypi.example.org/simple"' in text
    assert any("literal credential was not copied" in n for n in notes)
    parse_spec(text, tmp_path / "mlenv.toml")


# --- item 4: registry integrity -----------------------------------------------------------------


@pytest.mark.parametrize("damage", ["zero-byte", "missing", "foreign"])
def test_item4_empty_missing_or_foreign_index_beside_blobs_is_an_error(project, tmp_path, damage):
    reg = tmp_path / "reg"
    mlenv.register(project, registry=str(reg), image=False)
    index = reg / "index.sqlite3"
    for extra in reg.glob("index.sqlite3-*"):
        extra.unlink()
    if damage == "zero-byte":
        index.write_bytes(b"")
    elif damage == "missing":
        index.unlink()
    else:
        index.unlink()
        other = sqlite3.connect(index)
        other.execute("CREATE TABLE notes (body TEXT)")
        other.commit()
        other.close()
    before = index.read_bytes() if index.exists() else None
    other_dir = tmp_path / "q"
    make_env(other_dir, variables={"OTHER": "1"})  # different content: would be version 1 of a fresh index
    for call, args in (
        (mlenv.register, (other_dir,)),
        (mlenv.versions, ("demo",)),
        (mlenv.environments, ()),
    ):
        err = one_error(call, *args, registry=str(reg), **({"image": False} if call is mlenv.register else {}))
        assert "index.sqlite3" in err
        assert ("refusing to treat it as an empty registry" in err) or ("not an mlenv registry index" in err)
    assert (index.read_bytes() if index.exists() else None) == before  # left exactly as found


def test_item4_a_fresh_registry_still_starts_empty(project, tmp_path):
    registered = mlenv.register(project, registry=str(tmp_path / "new"), image=False)
    assert registered.created and registered.ref == "demo@1"
    assert registered.message().startswith("registered demo@1")


needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to run mlenv as another user"
)


@pytest.fixture
def shared_dir():
    """A directory another user can reach (pytest's tmp_path lives under a 0700 directory)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="mlenv-ro-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path)


@needs_setpriv
def test_item4_read_only_registry_serves_reads_and_refuses_writes_in_one_line(shared_dir):
    tmp_path = shared_dir
    make_env(tmp_path / "p", variables={"OMP_NUM_THREADS": "4"}, packages={"fixalpha": "1.1.0"})
    project = tmp_path / "p"
    reg = tmp_path / "reg"
    env = {"MLENV_REGISTRY": str(reg), "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home")}
    mlenv.register(project, registry=str(reg), image=False)  # set up as root, in-process
    mlenv.label("demo@1", "prod", registry=str(reg))
    out = tmp_path / "out"
    for p in (tmp_path, project, tmp_path / "home", out):
        p.mkdir(exist_ok=True)
        p.chmod(0o777)
    for p in [reg, *reg.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    nobody = "65534"
    for args in (
        ["list"],
        ["versions", "demo"],
        ["show", "demo@prod", "--json"],
        ["restore", "demo@1", "--into", str(out)],
    ):
        proc = mlenv_cli(*args, cwd=tmp_path, env=env, user=nobody)
        assert proc.returncode == 0, (args, proc.stderr)
    assert json.loads(mlenv_cli("show", "demo@1", "--json", cwd=tmp_path, env=env, user=nobody).stdout)["labels"] == [
        "prod"
    ]
    assert (out / "mlenv.lock").read_bytes() == (project / "mlenv.lock").read_bytes()
    for args in (["label", "demo@1", "stable"], ["archive", "demo@1"], ["register", "--no-image"]):
        err = one_clean_error(mlenv_cli(*args, cwd=project, env=env, user=nobody))
        assert err.count("\n") <= 2 and "read-only for this user; nothing was written" in err


@pytest.mark.parametrize(
    "column, value",
    [
        ("spec_sha256", "../../../../../../etc/hostname"),
        ("lock_sha256", "0" * 63 + "\n"),
        ("content_hash", "sha256:" + "٠" * 64),
        ("name", "demo\n"),
        ("version", "x1"),
        ("archived", 7),
        ("image", "a\nb"),
    ],
)
def test_item4_every_row_read_is_checked(project, tmp_path, column, value):
    reg = tmp_path / "reg"
    mlenv.register(project, registry=str(reg), image=False)
    db = sqlite3.connect(reg / "index.sqlite3")
    db.execute(f"UPDATE versions SET {column} = ?", (value,))
    db.commit()
    db.close()
    err = one_error(mlenv.show, "demo@1", registry=str(reg))
    # a row whose name no longer matches is simply not that environment's any more
    assert "damaged registry record" in err or "demo has no versions" in err
    assert "root:" not in err and "etc/hostname" not in err.split("invalid")[0]


def _registry_with_non_utf8_text(project, tmp_path) -> Path:
    """project registered as demo@1 in a local registry whose row then holds bytes that are not UTF-8."""
    reg = tmp_path / "reg"
    mlenv.register(project, registry=str(reg), image=False)
    db = sqlite3.connect(reg / "index.sqlite3")
    db.execute("UPDATE versions SET content_hash = CAST(X'ff41' AS TEXT)")
    db.commit()
    db.close()
    return reg


def test_item4_text_that_is_not_utf8_in_the_index_is_a_damaged_record(project, tmp_path):
    reg = _registry_with_non_utf8_text(project, tmp_path)
    assert "damaged registry record" in one_error(mlenv.versions, "demo", registry=str(reg))


def test_item4_a_damaged_record_renders_as_one_error_line(project, tmp_path):
    """The CLI of the registry reads: a damaged record (above, in-process) is one `error:`
    line, exit 2, no traceback."""
    reg = _registry_with_non_utf8_text(project, tmp_path)
    for args in (["versions", "demo"], ["show", "demo@1"]):
        err = one_clean_error(mlenv_cli(*args, cwd=project, env={"MLENV_REGISTRY": str(reg)}))
        assert "damaged registry record" in err


def test_item4_environment_without_versions_is_not_found_not_an_index_error(project, tmp_path):
    reg = tmp_path / "reg"
    mlenv.register(project, registry=str(reg), image=False)
    db = sqlite3.connect(reg / "index.sqlite3")
    db.execute("DELETE FROM versions")
    db.commit()
    db.close()
    assert "demo has no versions" in one_error(mlenv.show, "demo", registry=str(reg))


# --- item 6: validation holes ---------------------------------------------------------------


BASE = '[environment]\nname = "demo"\npython = "3.11"\n'


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[environment]\nname = "demo\\n"\npython = "3.11"\n', "name"),
        ('[environment]\nname = "demo"\npython = "3.\u0661\u0661"\n', "invalid python version '3.١١'"),
        ('[environment]\nname = "demo"\npython = "3.11\\n"\n', "python"),
        (BASE + '[system]\ncuda = "12.4\\n"\n', "cuda"),
        (BASE + '[system]\ncuda = "\u0661\u0662.4"\n', "invalid version"),
        (BASE + '[image]\napt-packages = ["curl\\n"]\n', "apt-packages"),
        (BASE + '[image]\napt-packages = ["curl\\nRUN x"]\n', "apt-packages"),
        (BASE + '[variables]\n"A\\n" = "1"\n', "invalid variable name"),
        (BASE + '[variables]\n"A B" = "1"\n', "invalid variable name"),
        (BASE + '[pypi]\ndependencies = ["numpy\\n--index-url http://evil.example/simple"]\n', "control character"),
        (BASE + '[image]\nbase = "debian:bookworm-slim\\u0000"\n', "control character"),
        (BASE + '[image]\npython = "/usr/bin/python3 -c x"\n', "absolute interpreter path"),
    ],
    ids=[
        "name-newline",
        "python-arabic-digits",
        "python-newline",
        "cuda-newline",
        "cuda-arabic-digits",
        "apt-newline",
        "apt-injection",
        "variable-newline",
        "variable-space",
        "dependency-newline",
        "base-nul",
        "interpreter-args",
    ],
)
def test_item6_newlines_control_characters_and_other_digits_are_refused(text, expected):
    assert expected in spec_error(text)


def test_item6_name_with_trailing_newline_cannot_register(project, tmp_path):
    spec = project / "mlenv.toml"
    spec.write_text(spec.read_text().replace('name = "demo"', 'name = "demo\\n"'))
    err = one_error(mlenv.register, project, registry=str(tmp_path / "reg"), image=False)
    assert "mlenv.toml:2" in err
    with LocalRegistry(tmp_path / "reg2") as reg, pytest.raises(RegistryError, match="invalid environment name"):
        reg.register("demo\n", b"s", b"l", "sha256:" + "0" * 64)


@pytest.mark.parametrize("label", ["prod\n", "prod\t", "pröd", "latest", "p" * 65])
def test_item6_labels_with_newlines_or_other_scripts_are_refused(project, tmp_path, label):
    reg = str(tmp_path / "reg")
    mlenv.register(project, registry=reg, image=False)
    assert "invalid label" in one_error(mlenv.label, "demo@1", label, registry=reg)


def test_item6_version_ref_in_other_digits_is_not_a_number(project, tmp_path):
    reg = str(tmp_path / "reg")
    mlenv.register(project, registry=reg, image=False)
    assert "no version, label or content hash matches" in one_error(mlenv.show, "demo@١", registry=reg)


@pytest.mark.parametrize("value", ["true", "false", "1.0", '"1"', "2"])
def test_item6_lock_version_true_is_refused(value):
    import re

    text = re.sub(r"^version = 1$", f"version = {value}", EXAMPLE_LOCK, count=1, flags=re.M)
    err = lock_error(text)
    assert "version" in err and ("must be an integer" in err or "is not supported" in err)


@pytest.mark.parametrize(
    "channel, problem",
    [
        ("ftp://h.example/ch", "scheme 'ftp'"),
        ("", "is empty"),
        ("../../x", "neither a channel name"),
        ("conda-forge\x00", "control character"),
        ("https://h.example/a/../b", "'..' path segment"),
        ("https://h.example/a/%2e%2e/b", "'..' path segment"),
        ("file://host/x", "file:///absolute/path"),
        ("https:///x", "has no host"),
        ("javascript:alert(1)", "neither a channel name"),
    ],
)
def test_item6_channel_strings_are_validated(channel, problem):
    err = spec_error(BASE + f'[conda]\nchannels = [{json.dumps(channel)}]\ndependencies = ["numpy"]\n')
    assert problem in err


@pytest.mark.parametrize(
    "channel",
    [
        "conda-forge",
        "conda-forge/label/rc",
        "https://conda.example.org/ch",
        "http://127.0.0.1:8000/ch",
        "file:///srv/channel",
        "https://${U}:${T}@h.example/ch",
    ],
)
def test_item6_channels_that_stay_allowed(channel):
    parse_spec(BASE + f'[conda]\nchannels = [{json.dumps(channel)}]\ndependencies = ["numpy"]\n', Path("mlenv.toml"))


def test_item6_a_1mb_unknown_key_is_not_echoed(tmp_path, monkeypatch):
    key = "k" * 1_000_000
    err = spec_error(BASE + f"{key} = 1\n")
    assert len(err) < 400 and "more characters" in err
    err = lock_error(EXAMPLE_LOCK.replace("[inputs]", f"[inputs]\n{key} = 1", 1))
    assert len(err) < 400
    config = tmp_path / "config.toml"
    config.write_text(f'{key} = "x"\n')
    monkeypatch.setenv("MLENV_CONFIG", str(config))
    from mlenv import settings

    settings._loaded.clear()
    with pytest.raises(MlenvError) as info:
        settings.load()
    settings._loaded.clear()
    assert len(str(info.value).splitlines()[0]) < 400


# --- limits and the lock schema ------------------------------------------------------------------


def test_files_above_their_size_limit_are_refused_before_parsing(tmp_path, monkeypatch):
    from mlenv import lockfile
    from mlenv.spec import load_spec
    from mlenv.validation import MAX_SPEC_BYTES

    spec = tmp_path / "mlenv.toml"
    spec.write_text(BASE + "#" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SpecError, match=f"larger than {MAX_SPEC_BYTES} bytes"):
        load_spec(spec)
    monkeypatch.setattr(lockfile, "MAX_LOCK_BYTES", 1000)
    (tmp_path / "mlenv.lock").write_text(EXAMPLE_LOCK)
    with pytest.raises(LockError, match="larger than 1000 bytes"):
        read_lock(tmp_path / "mlenv.lock")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (('sha256 = "', 'sha256 = "A'), "sha256 must be 64 lowercase hex digits"),
        (('manager = "pypi"', 'manager = "npm"'), "manager must be one of conda, pypi, apt"),
        (('platform = "linux-64"', 'platform = "linux-aarch64"'), "has no [platforms.linux-aarch64] table"),
        (("size = ", "size = -"), "size must be a non-negative integer"),
        (("size = ", "size = true # "), "size must be a non-negative integer"),
        (('name = "certifi"', 'name = "certifi\\n"'), "name must be a package name"),
        (('url = "https://', 'url = "https://x y/'), "url must be a URL"),
        (('index = "', 'evil = "'), "unknown field 'evil' for a pypi package"),
        (("[inputs]", '[inputs]\nbogus = "x"'), "unknown key 'bogus' in [inputs]"),
    ],
)
def test_lock_schema_types_every_field_even_with_a_recomputed_hash(edit, expected):
    old, new = edit
    assert old in EXAMPLE_LOCK
    assert expected in lock_error(relocked(EXAMPLE_LOCK.replace(old, new, 1)))


def test_lock_header_hashes_must_be_sha256_digests():
    assert "content-hash must be sha256:" in lock_error(
        EXAMPLE_LOCK.replace('content-hash = "sha256:', 'content-hash = "sha1:')
    )
    assert "spec-hash must be sha256:" in lock_error(EXAMPLE_LOCK.replace('spec-hash = "sha256:', 'spec-hash = "'))


def test_lock_schema_accepts_every_lock_mlenv_ships():
    for path in [ROOT / "mlenv.lock.example", *sorted((ROOT / "mlenv/curated").glob("*.lock"))]:
        read_lock(path)


def test_lock_schema_has_a_row_per_manager_field_and_knows_apt():
    from mlenv.lock_schema import PACKAGE_FIELDS

    assert set(PACKAGE_FIELDS) == {"conda", "pypi", "apt"}
    assert set(PACKAGE_FIELDS["apt"]) == {"name", "version", "architecture", "url", "sha256", "size", "snapshot-url"}
    for fields in PACKAGE_FIELDS.values():
        assert all(fields[k][1] for k in ("name", "version", "url", "sha256"))


def test_settings_values_with_control_characters_are_refused(tmp_path, monkeypatch):
    from mlenv import settings

    config = tmp_path / "config.toml"
    config.write_text('ca-bundle = "/etc/ssl/a\\u0000b.pem"\n')
    monkeypatch.setenv("MLENV_CONFIG", str(config))
    settings._loaded.clear()
    with pytest.raises(MlenvError, match="control character"):
        settings.load()
    config.write_bytes(b'registry = "\xff"\n')
    settings._loaded.clear()
    with pytest.raises(MlenvError, match="not UTF-8"):
        settings.load()
    settings._loaded.clear()


# --- importers: files are untrusted too ----------------------------------------------------------


def test_importer_reads_no_file_outside_the_imported_files_directory(tmp_path, monkeypatch):
    """The importer reads only files beside the imported one or in the project directory
    (where mlenv.toml goes), whatever the process's current directory is."""
    from mlenv.formats.importers import import_file

    inner = tmp_path / "in"
    inner.mkdir()
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.chdir(tmp_path)  # the current directory holds the secret: it is not a root
    (inner / "requirements.txt").write_text("-r ../id_rsa\n")
    with pytest.raises(SpecError, match="outside") as info:
        import_file(inner / "requirements.txt", name="demo", project=inner)
    assert "PRIVATE KEY" not in one_line(info)
    (inner / "env.yml").write_text("$schema: azureml\nimage: x\nconda_file: ../id_rsa\n")
    with pytest.raises(SpecError, match="outside") as info:
        import_file(inner / "env.yml", name="demo", project=inner)
    one_line(info)


def test_importer_notes_stay_comments(tmp_path):
    from mlenv.formats.importers import import_file

    env = tmp_path / "environment.yml"
    env.write_text(
        'dependencies:\n  - python=3.11\n  - pip:\n    - "-e .\\n[pypi]\\nindex-url = \\"http://evil.example/simple\\""\n'
    )
    text, notes = import_file(env, name="demo", project=tmp_path)
    spec = parse_spec(text, tmp_path / "mlenv.toml")
    assert spec.index_url is None and "evil.example" not in (spec.index_url or "")
    assert all("\n" not in n for n in notes)


def test_importer_refuses_a_yaml_alias_bomb_quickly(tmp_path):
    from mlenv.formats.importers import import_file

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines += ["dependencies: [*a8]"]
    (tmp_path / "environment.yml").write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError, match="expands to more than"):
        import_file(tmp_path / "environment.yml", name="demo", project=tmp_path)


# --- the CLI: one line, whatever the input -------------------------------------------------------


def test_cli_in_process_prints_no_traceback_for_the_issue_inputs(tmp_path):
    import fuzz_targets as ft

    for spec in (
        b'[environment]\nname = "x"\npython = "3.11"\n[variables]\nA = ' + b"[" * 500 + b"]" * 500 + b"\n",
        b'[environment]\nname = "x"\n\xff',
        ft.VALID_SPEC,
    ):
        for lock in (
            None,
            EXAMPLE_LOCK.encode().replace(b"certifi", b"cert\xffifi"),
            EXAMPLE_LOCK.encode().replace(b"version = 1", b"version = true"),
        ):
            for args in (["lock", "--offline", "-q"], ["lock", "--check"], ["hash"], ["export", "--format", "pylock"]):
                ft.check_cli(spec, lock, args)


def test_content_hash_of_a_written_lock_is_unchanged_by_validation():
    """Validation reads; it never changes what a lock means."""
    lock = read_lock(ROOT / "mlenv.lock.example")
    assert lock.dumps() == EXAMPLE_LOCK
    assert hashlib.sha256(lock.dumps().encode()).hexdigest() == hashlib.sha256(EXAMPLE_LOCK.encode()).hexdigest()


def test_importer_pylock_package_name_that_is_not_text(tmp_path):
    """Found by bench/fuzz.py: a TOML date as a package name gave a TypeError."""
    from mlenv.formats.importers import import_file

    path = tmp_path / "pylock.toml"
    path.write_text(
        'lock-version = "1.0"\n[[packages]]\nname = 2024-01-01\nversion = "1.0"\n'
        '[[packages]]\nname = "numpy"\nversion = "1.26.4"\n'
    )
    text, notes = import_file(path, name="demo", project=tmp_path)
    assert '"numpy==1.26.4"' in text and any("'2024-01-01==1.0'" in n for n in notes)
    parse_spec(text, tmp_path / "mlenv.toml")


def test_lock_inputs_that_are_not_requirements_make_the_lock_stale(tmp_path):
    """Found by bench/fuzz.py (CLI): an [inputs] pypi-dependencies entry that is not PEP 508
    gave an InvalidRequirement traceback in the satisfiability check."""
    import re

    import fuzz_targets as ft

    spec = (ROOT / "examples/fraud-train/mlenv.toml").read_bytes()
    lock = re.sub(
        r"^pypi-dependencies = \[",
        'pypi-dependencies = ["tensorflow-cpu=pandas==2.2.*", ',
        EXAMPLE_LOCK,
        count=1,
        flags=re.M,
    )
    assert lock != EXAMPLE_LOCK
    ft.check_cli(spec.replace(b'"requests"', b'"requests>=2"'), lock.encode(), ["lock", "--check"])
    result = mlenv.check(_project(tmp_path, spec.replace(b'"requests"', b'"requests>=2"'), lock))
    assert not result.ok and result.state == "stale"  # lock --check: exit 1
    assert any("not PEP 508 requirements" in r for r in result.reasons)


def _project(directory: Path, spec: bytes, lock: str) -> Path:
    (directory / "mlenv.toml").write_bytes(spec)
    (directory / "mlenv.lock").write_text(lock)
    return directory


@pytest.mark.registry
def test_item2_crafted_oci_state_document_and_manifest_on_a_real_registry(test_registry, project):
    """A registry is shared storage: a state document of the wrong shape is one error, a
    version manifest with a version number in other digits is passed over as foreign."""
    import uuid

    from mlenv.registry import oci

    url = f"oci://{test_registry}/mlenv-sec-{uuid.uuid4().hex[:10]}"
    mlenv.register(project, registry=url, image=False)
    reg = oci.OciRegistry(url)
    repo = reg.repo("demo")
    good = reg._get_manifest(repo, "v1")
    assert good is not None
    fake = json.loads(good[1])
    fake["annotations"][oci.A_VERSION] = "٢"
    reg._put_manifest(repo, "v2", json.dumps(fake).encode())
    assert [v.version for v in mlenv.versions("demo", registry=url)] == [1]
    for state in (
        {"archived": "yes"},
        {"labels": {"prod\n": 1}},
        {"versions": {"1": {"image": "a b"}}},
        {"history": {"prod": [["t", "1"]]}},
        [1, 2],
    ):
        raw = json.dumps(state).encode()
        reg._put_manifest(
            repo, oci.STATE_TAG, reg._artifact(repo, oci.STATE_ARTIFACT, [(raw, oci.STATE_MEDIA, "state.json")], {})
        )
        err = one_error(mlenv.versions, "demo", registry=url)
        assert "damaged registry record" in err and "state document" in err
    reg.close()


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    password=hst.text(
        alphabet=hst.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#"), min_size=1
    ),
    before=hst.sampled_from(["", "(", "'", '"', "[", "see ", "url="]),
    after=hst.sampled_from(["", ")", "'", '"', "]", " next"]),
)
def test_scrub_drops_any_userinfo_in_free_text(password, before, after):
    """Whatever a password holds (quotes, brackets, '@'), a URL's userinfo in a message
    is dropped: the authority ends only where a URL parser would end it."""
    from mlenv.runtime.secrets import scrub

    text = f"{before}https://user:{password}@host.example/simple{after}"
    out = scrub(text)
    assert "user:" not in out and out.endswith(f"host.example/simple{after}")
