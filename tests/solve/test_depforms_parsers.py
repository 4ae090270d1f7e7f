"""Property-based tests (hypothesis) of every parser issue 13 added: requirement forms
(mlenv.reqforms), git URLs, find-links HTML (mlenv.solve.findlinks), the importers'
direct-requirement carrier (mlenv.formats.directreqs), the reproducible wheel repack and
the source-tree hash (mlenv.wheelbuild); plus the sources rule on crafted locks."""

from __future__ import annotations

import hashlib
import io
import string
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlenv.reqforms import GIT, INDEX, PATH, URL, git_url, parse, quick, quick_git_url, requirement_text

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}([._-][A-Za-z0-9]{1,5}){0,2}", fullmatch=True)
segment = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)
hosts = st.one_of(st.just("127.0.0.1:8080"), st.from_regex(r"[a-z]{1,10}\.(com|org|internal)", fullmatch=True))
refs = st.one_of(st.none(), st.from_regex(r"v?[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True),
                 st.from_regex(r"[0-9a-f]{40}", fullmatch=True), st.from_regex(r"(main|release/[a-z0-9]{1,6})", fullmatch=True))  # fmt: skip
subdirs = st.one_of(st.none(), st.lists(segment, min_size=1, max_size=3).map("/".join))
markers = st.sampled_from([None, 'python_version >= "3.8"', "sys_platform == 'linux'"])


# --- requirement forms ---------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_valueerror(text):
    try:
        form = parse(text)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    assert form.kind in (INDEX, GIT, URL, PATH)


@SETTINGS
@given(names, st.sampled_from(["https", "http"]), hosts, st.lists(segment, min_size=1, max_size=3), refs, subdirs,
       markers)  # fmt: skip
def test_git_requirements_round_trip(name, scheme, host, path, ref, sub, marker):
    repo = f"{scheme}://{host}/{'/'.join(path)}.git"
    text = f"{name} @ git+{repo}" + (f"@{ref}" if ref else "") + (f"#subdirectory={sub}" if sub else "")
    if marker:
        text += f" ; {marker}"
    form = parse(text)
    assert form.kind == GIT and form.url == repo and form.ref == ref and form.subdirectory == sub
    assert form.pinned_commit == bool(ref and len(ref) == 40 and all(c in "0123456789abcdef" for c in ref))
    # the text mlenv gives uv parses back to the same form; the no-packaging reader agrees
    again = parse(requirement_text(form, url=git_url(form)))
    assert (again.kind, again.url, again.ref, again.subdirectory, again.marker) == (
        GIT, form.url, form.ref, form.subdirectory, form.marker)  # fmt: skip
    assert quick(text) == (GIT, repo) and quick_git_url(text) == repo


@SETTINGS
@given(names, hosts, st.lists(segment, min_size=0, max_size=3), st.sampled_from([".whl", ".tar.gz", ".zip"]),
       st.one_of(st.none(), st.from_regex(r"[0-9a-f]{64}", fullmatch=True)))  # fmt: skip
def test_url_requirements_round_trip(name, host, path, suffix, sha):
    url = f"https://{host}/" + "/".join([*path, f"{name}-1.0{'-py3-none-any' if suffix == '.whl' else ''}{suffix}"])
    text = f"{name} @ {url}" + (f"#sha256={sha}" if sha else "")
    form = parse(text)
    assert form.kind == URL and form.url == url and form.sha256 == sha and form.archive
    assert quick(text) == (URL, url)


@SETTINGS
@given(names, st.lists(segment, min_size=0, max_size=4), st.booleans())
def test_path_requirements_are_normalized_and_stay_relative(name, parts, up):
    raw = ("../" if up else "./") + "/".join(parts) if parts or up else "."
    form = parse(f"{name} @ {raw}")
    assert form.kind == PATH and not form.path.startswith("/")
    assert quick(f"{name} @ {raw}") == (PATH, form.path)


@pytest.mark.parametrize("text,words", [
    ("x @ git+ssh://git@h/r.git", "ssh is not supported"),
    ("x @ git+https://h/r.git@bad..ref", "not a valid git"),
    ("x @ git+https://h/r.git#subdirectory=../up", "inside the repository"),
    ("x @ git+https://h/r.git#foo=bar", "unsupported URL fragment"),
    ("x @ https://h/x.whl#sha256=abc", "64 lowercase hex"),
    ("x @ https://h/x", "does not name a wheel"),
    ("x @ /abs/path", "absolute path"),
    ("x @ libs/x", "must start with ./"),
    ("x @ C:\\\\x", "write local paths with '/'"),
    ("x @ ftp://h/x.whl", "unsupported URL scheme"),
])  # fmt: skip
def test_unsupported_forms_are_one_line(text, words):
    with pytest.raises(ValueError, match=None) as info:
        parse(text)
    assert words in str(info.value) and "\n" not in str(info.value)


# --- find-links HTML -----------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=2000))
def test_find_links_parser_never_raises(html):
    from mlenv.solve.findlinks import parse_links

    for link in parse_links(html, "https://example.org/wheels/index.html"):
        assert link.url.startswith(("https://", "http://", "file://")) and "/" not in link.filename


filenames = st.builds(lambda n, v, t: f"{n}-{v}{t}", st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                      st.from_regex(r"[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True),
                      st.sampled_from(["-py3-none-any.whl", ".tar.gz", "-cp311-cp311-manylinux_2_28_x86_64.whl"]))  # fmt: skip


@SETTINGS
@given(st.lists(st.tuples(filenames, st.one_of(st.none(), st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
                          st.sampled_from(["", "sub/", "/abs/", "https://cdn.example.com/x/"])), max_size=12, unique_by=lambda t: t[0] + t[2]),
       st.lists(st.sampled_from(["<p>noise</p>", "<a href='readme.txt'>r</a>", "<a>no href</a>", "<!-- c -->"]), max_size=5))  # fmt: skip
def test_find_links_page_gives_exactly_its_distribution_links(links, noise):
    from mlenv.solve.findlinks import parse_links

    page = "https://example.org/wheels/index.html"
    body = "".join(noise) + "".join(
        f'<a href="{prefix}{name}' + (f"#sha256={sha}" if sha else "") + f'">{name}</a>\n'
        for name, sha, prefix in links
    )
    found = parse_links(f"<html><body>{body}</body></html>", page)
    assert [(f.filename, f.sha256) for f in found] == [(name, sha) for name, sha, _ in links]
    for f, (name, _, prefix) in zip(found, links, strict=True):
        base = {"": "https://example.org/wheels/", "sub/": "https://example.org/wheels/sub/",
                "/abs/": "https://example.org/abs/", "https://cdn.example.com/x/": "https://cdn.example.com/x/"}[prefix]  # fmt: skip
        assert f.url == base + name


def test_find_links_base_href_and_entities():
    from mlenv.solve.findlinks import parse_links

    html = '<base href="https://files.example.org/pkgs/"><a href="a-1.0-py3-none-any.whl?x=1&amp;y=2">a</a>'
    (link,) = parse_links(html, "https://example.org/index.html")
    assert link.url == "https://files.example.org/pkgs/a-1.0-py3-none-any.whl?x=1&y=2"


# --- the importers' carrier ------------------------------------------------------------------


@SETTINGS
@given(st.text(alphabet=string.printable, max_size=120), st.booleans())
def test_carry_never_raises_and_gives_parseable_requirements(text, editable):
    from mlenv.formats.directreqs import carry

    base = Path("/nonexistent-mlenv-test/base")
    requirement, notes = carry(text, base_dir=base, project=Path("/nonexistent-mlenv-test"), editable=editable)
    if requirement is not None:
        parse(requirement)
    assert all("\n" not in n for n in notes) or requirement is None


# --- reproducible wheels and source trees ----------------------------------------------------

file_sets = st.dictionaries(
    st.lists(segment, min_size=1, max_size=3).map(lambda p: "pkg/" + "/".join(p) + ".py"),
    st.tuples(st.binary(max_size=200), st.booleans()), min_size=1, max_size=8)  # fmt: skip


def _wheel(files: dict, order: list[str], compress: int, date: tuple) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in order:
            data, executable = files[name]
            info = zipfile.ZipInfo(name, date_time=date)
            info.compress_type = compress
            info.external_attr = (0o100755 if executable else 0o100664) << 16
            z.writestr(info, data)
    return buf.getvalue()


@SETTINGS
@given(file_sets, st.randoms(use_true_random=False), st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
       st.tuples(st.integers(1980, 2030), st.integers(1, 12), st.integers(1, 28)))  # fmt: skip
def test_repack_depends_only_on_names_and_contents(files, rnd, compress, day):
    from mlenv.wheelbuild.repack import repack, wheel_metadata

    files = dict(files)
    files["pkg-1.0.dist-info/METADATA"] = (b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n", False)
    files["pkg-1.0.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nTag: py3-none-any\n", False)
    files["pkg-1.0.dist-info/RECORD"] = (b"whatever,,\n", False)
    order = list(files)
    rnd.shuffle(order)
    a = repack(_wheel(files, order, compress, (*day, 12, 0, 0)))
    b = repack(_wheel(files, sorted(files), zipfile.ZIP_DEFLATED, (1999, 1, 1, 0, 0, 0)))
    assert a == b and repack(a) == a
    assert wheel_metadata(a) == ("pkg", "1.0")
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        names = z.namelist()
        assert names[-1] == "pkg-1.0.dist-info/RECORD" and names[:-1] == sorted(names[:-1], key=lambda n: (
            n.startswith("pkg-1.0.dist-info/"), n))  # fmt: skip
        for name in names[:-1]:
            assert z.read(name) == files[name][0]


@SETTINGS
@given(st.binary(max_size=300))
def test_repack_of_garbage_is_a_wheel_error(data):
    from mlenv.wheelbuild.repack import WheelError, repack

    try:
        repack(data)
    except WheelError:
        pass


@SETTINGS
@given(st.lists(st.tuples(st.lists(segment, min_size=1, max_size=3).map("/".join), st.sampled_from("fxl"),
                          st.binary(max_size=20)), unique_by=lambda t: t[0], max_size=10), st.randoms(use_true_random=False))  # fmt: skip
def test_tree_hash_is_order_independent_and_content_sensitive(entries, rnd):
    from mlenv.wheelbuild.tree import Entry, tree_hash

    es = [Entry(p, k, hashlib.sha256(c).hexdigest()) for p, k, c in entries]
    shuffled = list(es)
    rnd.shuffle(shuffled)
    assert tree_hash(es) == tree_hash(shuffled)
    if es:
        changed = [
            Entry(es[0].path, es[0].kind, hashlib.sha256(b"other" + bytes(es[0].sha256, "ascii")).hexdigest()),
            *es[1:],
        ]
        assert tree_hash(changed) != tree_hash(es)


def test_tree_scan_reuses_hashes_and_sees_a_same_size_edit(tmp_path, monkeypatch):
    import os
    import time

    from mlenv.wheelbuild import tree

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    f = src / "pkg" / "a.py"
    f.write_text("A = 1\n")
    old = time.time() - 100
    os.utime(f, (old, old))
    first, _ = tree.scan(src)
    assert tree.scan(src)[0] == first
    f.write_text("A = 2\n")  # same size; a new mtime (and ctime)
    assert tree.scan(src)[0] != first
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (src / "build").mkdir()
    (src / "build" / "junk").write_text("x")
    assert tree.scan(src)[0] == tree.scan(src, use_cache=False)[0]  # tool output does not count


# --- the sources rule knows the new sources ----------------------------------------------------


def _lock_with(pkg_fields: dict, inputs: dict):
    from mlenv.lockfile import Lock, Package

    fields = dict(pkg_fields)
    pkg = Package("pypi", "linux-64", fields.pop("name"), fields.pop("version"), fields.pop("url"), fields.pop("sha256"),
                  fields)  # fmt: skip
    return Lock(spec_hash="sha256:" + "0" * 64, python="3.11", platforms={"linux-64": {"python": "3.11"}},
                packages=[pkg], inputs=inputs).seal()  # fmt: skip


COMMIT = "a" * 40
SHA = "b" * 64


@pytest.mark.parametrize("fields,deps,ok_or_words", [
    ({"url": f"git+https://h.example/t.git@{COMMIT}", "source": "git", "commit": COMMIT},
     ["t @ git+https://h.example/t.git@v1"], None),
    ({"url": f"git+https://evil.example/t.git@{COMMIT}", "source": "git", "commit": COMMIT},
     ["t @ git+https://h.example/t.git@v1"], "not one a [pypi] requirement declares"),
    ({"url": f"git+https://h.example/t.git@{COMMIT}", "source": "git", "commit": "c" * 40},
     ["t @ git+https://h.example/t.git@v1"], "does not match its commit"),
    ({"url": "./libs/t", "source": "path", "filename": "t-1.0-py3-none-any.whl", "source-tree": "sha256:" + SHA},
     ["t @ ./libs/t"], None),
    ({"url": "./../etc", "source": "path", "filename": "t-1.0-py3-none-any.whl"}, ["t @ ./libs/t"], "inside the project"),
    ({"url": "./libs/other", "source": "path", "filename": "t-1.0-py3-none-any.whl"}, ["t @ ./libs/t"],
     "not one a [pypi] requirement declares"),
    ({"url": "https://h.example/t-1.0-py3-none-any.whl", "source": "url"},
     ["t @ https://h.example/t-1.0-py3-none-any.whl"], None),
    ({"url": "https://evil.example/t-1.0-py3-none-any.whl", "source": "url"},
     ["t @ https://h.example/t-1.0-py3-none-any.whl"], "not one a [pypi] requirement declares"),
])  # fmt: skip
def test_sources_rule_for_built_and_direct_packages(fields, deps, ok_or_words):
    from mlenv.errors import LockError
    from mlenv.sources import check_sources

    pkg = {"name": "t", "version": "1.0", "sha256": SHA, **fields}
    if pkg.get("source") == "git":
        pkg.setdefault("filename", "t-1.0-py3-none-any.whl")
    lock = _lock_with(pkg, {"pypi-dependencies": deps, "platforms": ["linux-64"]})
    if ok_or_words is None:
        check_sources(lock)
    else:
        with pytest.raises(LockError) as info:
            check_sources(lock)
        assert ok_or_words in info.value.message


def test_sources_rule_for_find_links_packages():
    from mlenv.errors import LockError
    from mlenv.sources import check_sources

    page = "https://wheels.example/flinks/"
    good = {"name": "t", "version": "1.0", "sha256": SHA, "url": "https://wheels.example/files/t-1.0-py3-none-any.whl",
            "find-links": page}  # fmt: skip
    check_sources(_lock_with(good, {"find-links": [page], "pypi-dependencies": ["t"]}))
    with pytest.raises(LockError, match="find-links page"):
        check_sources(_lock_with(good, {"find-links": [], "pypi-dependencies": ["t"]}))
    other_host = dict(good, url="https://elsewhere.example/t-1.0-py3-none-any.whl")
    with pytest.raises(LockError, match="not from a source the lock declares"):
        check_sources(_lock_with(other_host, {"find-links": [page], "pypi-dependencies": ["t"]}))
