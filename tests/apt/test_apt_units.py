"""mlenv.apt and mlenv.oci.rootfs without the network: the parsers (with hypothesis,
since every input comes from a base image or a mirror), the resolution rule, the
gpgv verdict, the lock fields and the content hash."""

from __future__ import annotations

import base64
import io
import random
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlenv.apt import pins_current
from mlenv.apt.archive import ArchiveError, crc24, dearmor, judge, parse_packages, parse_release
from mlenv.apt.lock import requests_of, snapshot_url
from mlenv.apt.resolve import ResolveError, Resolver, Universe, installed_from_status, relations
from mlenv.apt.sources import Source, SourcesError, read_sources
from mlenv.errors import MlenvError
from mlenv.lockfile import Lock, Package, loads_lock
from mlenv.oci.rootfs import LayeredRootFS, RootFSError, normalize

# --- rootfs -------------------------------------------------------------------------------


def layer(entries) -> io.BytesIO:
    """entries: (name, kind, data-or-target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, value
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    buf.seek(0)
    return buf


def test_rootfs_layers_whiteouts_opaque_dirs_and_links():
    l1 = layer(
        [
            ("etc", "dir", None),
            ("etc/apt/sources.list", "file", b"one"),
            ("etc/apt/x/a", "file", b"a"),
            ("etc/apt/x/b", "file", b"b"),
            ("usr/share/keyrings/k.gpg", "file", b"K"),
            ("etc/gone", "file", b"g"),
            ("lib", "sym", "usr/lib"),
            ("usr/lib/libz.so", "file", b"Z"),
        ]
    )
    l2 = layer(
        [
            ("./etc/.wh.gone", "file", b""),
            ("etc/apt/x/.wh..wh..opq", "file", b""),
            ("etc/apt/x/c", "file", b"c"),
            ("etc/apt/sources.list", "file", b"two"),
            ("etc/apt/trusted.gpg.d/k.gpg", "sym", "/usr/share/keyrings/k.gpg"),
            ("etc/apt/hard", "hard", "etc/apt/sources.list"),
            ("../../escape", "file", b"no"),
        ]
    )
    fs = LayeredRootFS.from_layers([lambda: l1, lambda: l2])
    assert fs.read("/etc/apt/sources.list") == b"two"
    assert fs.read("/etc/gone") is None and not fs.exists("/etc/gone")
    assert fs.listdir("/etc/apt/x") == ["c"]  # opaque: the lower a and b are gone, the layer's own c stays
    assert fs.read("/etc/apt/trusted.gpg.d/k.gpg") == b"K"  # absolute symlink, resolved inside the image
    assert fs.read("/lib/libz.so") == b"Z" and fs.read("/etc/apt/hard") == b"two"
    assert not fs.exists("/escape") and fs.read("/../../escape") is None


def test_rootfs_keep_limits_what_is_held():
    fs = LayeredRootFS.from_layers(
        [lambda: layer([("a/keep", "file", b"1"), ("b/skip", "file", b"2")])], keep=lambda p: p.startswith("/a/")
    )
    assert fs.read("/a/keep") == b"1"
    with pytest.raises(RootFSError):
        fs.read("/b/skip")
    assert fs.exists("/b/skip")


def test_rootfs_symlink_loop_is_absent():
    fs = LayeredRootFS.from_layers([lambda: layer([("a", "sym", "b"), ("b", "sym", "a")])])
    assert fs.read("/a") is None and fs.resolve("/a/x") is None


names = st.lists(st.sampled_from(["a", "b", ".", "..", ".wh.a", ".wh..wh..opq", "/", ""]), min_size=1, max_size=5).map(
    "/".join
)


@given(
    st.lists(st.tuples(names, st.sampled_from(["file", "dir", "sym", "hard"]), names), max_size=12),
    st.lists(st.tuples(names, st.sampled_from(["file", "dir", "sym", "hard"]), names), max_size=12),
)
@settings(max_examples=150, deadline=None)
def test_rootfs_never_escapes_or_crashes_on_hostile_layers(a, b):
    def mk(entries):
        return [(n, k, v.encode() if k == "file" else v) for n, k, v in entries]

    try:
        fs = LayeredRootFS.from_layers([lambda: layer(mk(a)), lambda: layer(mk(b))])
    except RootFSError:
        return
    for path in list(fs.entries):
        assert path == "" or (".." not in path.split("/") and not path.startswith("/"))
        try:
            fs.read("/" + path)
            fs.listdir("/" + path)
        except RootFSError:
            pass


@given(st.text(max_size=40))
def test_normalize_is_safe(name):
    out = normalize(name)
    assert out is None or (".." not in out.split("/") and not out.startswith("/"))


# --- sources ---------------------------------------------------------------------------------


def test_sources_one_line_and_deb822():
    files = [
        (
            "/etc/apt/sources.list",
            (
                "# comment\ndeb http://deb.debian.org/debian bookworm main contrib\n"
                "deb-src http://deb.debian.org/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://repo.example/apt stable main\n"
                "deb file:/srv/repo ./\n"
                "deb https://flat.example/repo/x86_64/ /\n"
            ),
        ),
        (
            "/etc/apt/sources.list.d/debian.sources",
            (
                "Types: deb\nURIs: http://deb.debian.org/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://x.example/d\nSuites: s\nComponents: main\n"
                "Enabled: no\n"
            ),
        ),
    ]
    out = read_sources(files, "amd64")
    got = [(s.uri, s.suite, s.components, s.architectures, s.signed_by) for s in out.sources]
    assert got == [
        ("http://deb.debian.org/debian", "bookworm", ("main", "contrib"), (), ()),
        ("https://repo.example/apt", "stable", ("main",), ("amd64",), ("/usr/share/keyrings/x.gpg",)),
        ("https://flat.example/repo/x86_64", "/", (), (), ()),
        (
            "http://deb.debian.org/debian",
            "bookworm",
            ("main",),
            (),
            ("/usr/share/keyrings/debian-archive-keyring.gpg",),
        ),
        (
            "http://deb.debian.org/debian",
            "bookworm-updates",
            ("main",),
            (),
            ("/usr/share/keyrings/debian-archive-keyring.gpg",),
        ),
    ]
    assert out.sources[2].flat and out.sources[2].dist_url == "https://flat.example/repo/x86_64/"
    assert out.sources[0].dist_url == "http://deb.debian.org/debian/dists/bookworm/"
    assert any("file" in n for n in out.notes)


def test_sources_inline_key_and_refusals():
    key = (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n "
        + base64.b64encode(b"x" * 30).decode()
        + "\n -----END PGP PUBLIC KEY BLOCK-----"
    )
    out = read_sources(
        [
            (
                "/etc/apt/sources.list.d/k.sources",
                f"Types: deb\nURIs: https://r.example/d\nSuites: s\nComponents: main\nSigned-By: {key}\n",
            )
        ],
        "amd64",
    )
    assert out.sources[0].signed_by_key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    for bad in (
        "deb [trusted=yes] http://r.example/d s main\n",
        "deb http://user:pw@r.example/d s main\n",
        "deb http://r.example/d ../x main\n",
        "deb http://r.example/d s\n",
        "rpm http://x s main\n",
        "deb [arch=amd64 http://r.example s main\n",
    ):
        with pytest.raises(SourcesError):
            read_sources([("/etc/apt/sources.list", bad)], "amd64")


@given(st.text(max_size=300), st.booleans())
@settings(max_examples=300, deadline=None)
def test_sources_parser_fuzz(text, deb822):
    path = "/etc/apt/sources.list.d/x.sources" if deb822 else "/etc/apt/sources.list"
    try:
        out = read_sources([(path, text)], "amd64")
    except MlenvError:
        return
    for s in out.sources:
        assert s.uri.startswith(("http://", "https://")) and "@" not in s.uri.split("/")[2]
        assert ".." not in s.suite.split("/") and all(".." not in c.split("/") for c in s.components)


# --- OpenPGP armor and the gpgv verdict ------------------------------------------------------------


def armor(data: bytes) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    crc = base64.b64encode(crc24(data).to_bytes(3, "big")).decode()
    return "\n".join(
        [
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "Comment: x",
            "",
            *lines,
            "=" + crc,
            "-----END PGP PUBLIC KEY BLOCK-----",
            "",
        ]
    )


@given(st.binary(min_size=1, max_size=500))
def test_dearmor_round_trip(data):
    assert dearmor(armor(data)) == data
    assert dearmor(armor(data) + armor(b"more")) == data + b"more"


@given(st.text(max_size=300))
def test_dearmor_fuzz(text):
    try:
        dearmor(text)
    except ArchiveError:
        pass


def test_dearmor_rejects_a_bad_checksum():
    text = armor(b"hello world").replace("aGVsbG8", "aGVsbG9")
    with pytest.raises(ArchiveError):
        dearmor(text)


GOOD = "[GNUPG:] VALIDSIG {fpr} 2026-07-11 1 0 4 0 1 {algo} 01 {fpr}"


def test_judge_follows_apts_rules():
    fpr = "A" * 40
    assert judge(GOOD.format(fpr=fpr, algo=8) + "\n[GNUPG:] ERRSIG B 1 8 01 1 9").ok  # unknown signer ignored
    assert not judge(GOOD.format(fpr=fpr, algo=8) + "\n[GNUPG:] BADSIG A x").ok
    assert "weak" in judge(GOOD.format(fpr=fpr, algo=2)).reason
    assert not judge("[GNUPG:] NO_PUBKEY B\n[GNUPG:] ERRSIG B 1 8 01 1 9").ok
    assert not judge("[GNUPG:] EXPKEYSIG A name").ok and not judge("").ok
    assert not judge(GOOD.format(fpr=fpr, algo=8), ("B" * 40,)).ok  # Signed-By fingerprint of another key
    assert judge(GOOD.format(fpr=fpr, algo=8), (fpr.lower(),)).ok


@given(st.text(max_size=400))
def test_judge_fuzz(status):
    v = judge(status)
    assert v.ok == bool(v.signers)


# --- Release, Packages, status (python-debian) -----------------------------------------------------------

SRC = Source("http://deb.debian.org/debian", "bookworm", ("main",), origin="/etc/apt/sources.list:1")
RELEASE = """Origin: Debian
Suite: oldstable
Codename: bookworm
Date: Sat, 11 Jul 2026 10:16:37 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64
SHA256:
 {sha} 123 main/binary-amd64/Packages.xz
 {sha} 999 main/binary-amd64/Packages
 {sha} 5 ../../etc/passwd
"""


def test_release_fields_and_checks():
    rel = parse_release(RELEASE.format(sha="ab" * 32), SRC)
    assert rel.by_hash and rel.files["main/binary-amd64/Packages.xz"] == ("ab" * 32, 123)
    assert "../../etc/passwd" not in rel.files
    assert rel.timestamp == 1783764997 and rel.date.startswith("Sat, 11 Jul 2026")
    with pytest.raises(ArchiveError, match="another suite"):
        parse_release(RELEASE.format(sha="ab" * 32), Source("http://deb.debian.org/debian", "trixie", ("main",)))
    expired = RELEASE.format(sha="ab" * 32) + "Valid-Until: Sat, 01 Jan 2000 00:00:00 UTC\n"
    with pytest.raises(ArchiveError, match="expired"):
        parse_release(expired, SRC)


@given(st.text(max_size=400))
@settings(max_examples=200, deadline=None)
def test_release_parser_fuzz(text):
    try:
        rel = parse_release(text, Source("http://h.example/d", "/", ()))
    except ArchiveError:
        return
    for name, (sha, size) in rel.files.items():
        assert len(sha) == 64 and size >= 0 and ".." not in name.split("/")


@given(st.text(max_size=500))
@settings(max_examples=200, deadline=None)
def test_packages_and_status_parsers_fuzz(text):
    try:
        recs = parse_packages(text.encode(), "Packages")
    except ArchiveError:
        recs = []
    assert all(r.get("Package") and r.get("Version") for r in recs)
    try:
        for p in installed_from_status(text):
            assert p.name and p.version
    except MlenvError:
        pass


@given(st.text(max_size=120))
def test_relations_fuzz(text):
    try:
        for group in relations(text, "x"):
            assert group and all(r.name for r in group)
    except ResolveError:
        pass


# --- resolution rule -------------------------------------------------------------------------------------------


def rec(name, version, arch="amd64", **fields):
    r = {
        "Package": name,
        "Version": version,
        "Architecture": arch,
        "Filename": f"pool/{name}_{version}_{arch}.deb",
        "Size": "10",
        "SHA256": "0" * 64,
    }
    r.update({k.replace("_", "-").title().replace("Multi-Arch", "Multi-Arch"): v for k, v in fields.items()})
    return r


STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9
Provides: libc6-any

Package: oldlib
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


def universe(records, status=STATUS, shuffle=None):
    recs = [(0, r) for r in records]
    if shuffle is not None:
        random.Random(shuffle).shuffle(recs)
    return Universe.build("amd64", recs, installed_from_status(status), "test")


def resolve(records, wanted, **kw):
    return [(p.name, p.version) for p in Resolver(universe(records), **kw).resolve(requests_of(wanted))]


RECORDS = [
    rec("app", "2.0", Depends="libc6 (>= 2.34), liba | libb, mail-transport-agent, python3:any"),
    rec("app", "1.0", Depends="libc6"),
    rec("liba", "1.0", Depends="libc6 (>= 9.0)"),  # unsatisfiable: libc6 9 does not exist
    rec("libb", "3.0"),
    rec("libb", "2.0"),
    rec("exim4", "4.96", Provides="mail-transport-agent", Priority="standard"),
    rec("postfix", "3.7", Provides="mail-transport-agent", Priority="optional"),
    rec("python3", "3.11.2", Multi_Arch="allowed"),
    rec("docs", "1.0", "all"),
    rec("armonly", "1.0", "arm64"),
]


def test_closure_alternatives_virtuals_versions_and_multiarch():
    # liba needs a libc6 the archive lacks: the first *satisfiable* alternative, libb, is taken;
    # mail-transport-agent goes to exim4 (Priority standard before optional); libc6 is the base's.
    assert resolve(RECORDS, ["app"]) == [("app", "2.0"), ("exim4", "4.96"), ("libb", "3.0"), ("python3", "3.11.2")]
    assert resolve(RECORDS, ["app=1.0", "docs"]) == [("app", "1.0"), ("docs", "1.0")]
    assert resolve(RECORDS, ["libc6"]) == []  # the base has it


def test_closure_is_independent_of_index_order():
    want = resolve(RECORDS, ["app", "docs"])
    for seed in range(5):
        u = universe(RECORDS, shuffle=seed)
        assert [(p.name, p.version) for p in Resolver(u).resolve(requests_of(["docs", "app"]))] == want


def test_preferences_keep_pins_and_upgrade_moves_them():
    assert resolve(RECORDS, ["libb"], prefer={"libb": "2.0"}) == [("libb", "2.0")]
    assert resolve(RECORDS, ["libb"], prefer={"libb": "2.0"}, upgrade={"libb"}) == [("libb", "3.0")]
    assert resolve(RECORDS, ["libb"], prefer={"libb": "1.5"}) == [("libb", "3.0")]  # a pin gone from the index moves


@pytest.mark.parametrize(
    "wanted, message",
    [
        (["nosuch"], "no package named nosuch for amd64"),
        (["armonly"], "no package named armonly for amd64"),
        (["mail-transport-agent"], "virtual package provided by exim4, postfix"),
        (["libb=9.9"], "no version 9.9 of libb"),
        (["liba"], "cannot install liba 1.0: it needs libc6 (>= 9.0)"),
    ],
)
def test_bad_requests_are_one_clear_line(wanted, message):
    with pytest.raises(ResolveError) as exc:
        resolve(RECORDS, wanted)
    assert message in exc.value.message and "\n" not in exc.value.message


def test_conflicts_and_breaks_are_refused():
    recs = [rec("a", "1", Conflicts="b"), rec("b", "1"), rec("c", "1", Breaks="libc6 (<< 3)")]
    with pytest.raises(ResolveError, match="conflicts b 1"):
        resolve(recs, ["a", "b"])
    with pytest.raises(ResolveError, match="breaks libc6 2.36-9"):
        resolve(recs, ["c"])


def test_an_upgrade_that_breaks_the_base_upgrades_its_dependant():
    status = (
        STATUS
        + "\nPackage: tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\nDepends: lib (= 1)\n\n"
        "Package: lib\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n"
    )
    recs = [
        rec("lib", "2"),
        rec("lib", "1"),
        rec("tool", "2", Depends="lib (= 2)"),
        rec("new", "1", Depends="lib (>= 2)"),
    ]
    got = Resolver(universe(recs, status)).resolve(requests_of(["new"]))
    assert [(p.name, p.version) for p in got] == [("lib", "2"), ("new", "1"), ("tool", "2")]


# --- lock fields, freshness, content hash ----------------------------------------------------------------------------


def apt_lock(version="12.2.0-14+deb12u1", apt=("libgomp1", "curl")) -> Lock:
    ref = "127.0.0.1:5000/b@sha256:" + "e" * 64
    pkg = Package(
        "apt",
        "linux-64",
        "libgomp1",
        version,
        f"http://deb.debian.org/debian/pool/main/g/gcc-12/libgomp1_{version}_amd64.deb",
        "1" * 64,
        {
            "architecture": "amd64",
            "size": 115772,
            "snapshot-url": "https://snapshot.debian.org/archive/debian/20260711T221637Z/pool/x.deb",
        },
    )
    return Lock(
        spec_hash="sha256:" + "0" * 64,
        python=None,
        platforms={"linux-64": {"python": None}},
        packages=[pkg],
        image={"base": "b", "reference": ref, "digest": "sha256:" + "e" * 64, "apt-packages": list(apt), "steps": []},
        inputs={"apt-packages": sorted(apt), "apt-base": ref, "apt-platforms": ["linux-64"]},
    ).seal()


def test_apt_entries_round_trip_with_their_fields():
    lock = apt_lock()
    text = lock.dumps()
    assert 'manager = "apt"\nname = "libgomp1"\nversion = "12.2.0-14+deb12u1"\narchitecture = "amd64"\nurl = ' in text
    again = loads_lock(text)
    assert again.dumps() == text and again.content_hash == lock.content_hash
    assert again.packages[0].get("snapshot-url").startswith("https://snapshot.debian.org/archive/debian/")
    assert pins_current(again)


def test_hash_moves_with_a_resolved_version_not_with_request_order():
    a, b = apt_lock(apt=("libgomp1", "curl")), apt_lock(apt=("curl", "libgomp1"))
    assert a.content_hash == b.content_hash
    assert apt_lock(version="12.2.0-14").content_hash != a.content_hash


def test_pins_current_tracks_request_set_base_and_platforms():
    lock = apt_lock()
    assert pins_current(lock)
    lock.image["apt-packages"] = ["libgomp1"]
    assert not pins_current(lock)
    lock = apt_lock()
    lock.image["reference"] = "other@sha256:" + "f" * 64
    assert not pins_current(lock)


def test_snapshot_url_form():
    assert (
        snapshot_url("http://deb.debian.org/debian", "pool/main/c/curl/curl_1_amd64.deb", 1783765000)
        == "https://snapshot.debian.org/archive/debian/20260711T221640Z/pool/main/c/curl/curl_1_amd64.deb"
    )
    assert snapshot_url("http://security.debian.org/debian-security", "pool/x.deb", 0).startswith(
        "https://snapshot.debian.org/archive/debian-security/19700101T120000Z/"
    )
    assert snapshot_url("https://repo.example/debian", "pool/x.deb", 0) is None


# --- build-time fetch: the snapshot fallback, against a local "mirror" and "snapshot service" ---------------


@pytest.fixture
def debian_servers(tmp_path, monkeypatch):
    """One http server on 127.0.0.1 playing both the mirror (/debian/...) and snapshot.debian.org
    (/archive/debian/<stamp>/...): `files` maps a path to (status, body); requests are recorded."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    files: dict[str, tuple[int, bytes]] = {}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            seen.append(self.path)
            status, body = files.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files, seen
    finally:
        server.shutdown()
        server.server_close()


DEB = b"!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n" + bytes(range(256)) * 40
POOL = "pool/main/x/xdemo/xdemo_1.0-1_amd64.deb"
STAMP = "20260711T221637Z"


def deb_pkg(root: str, *, sha256: str | None = None, snapshot: bool = True) -> Package:
    import hashlib

    extra: dict = {"architecture": "amd64", "size": len(DEB)}
    if snapshot:
        extra["snapshot-url"] = f"{root}/archive/debian/{STAMP}/{POOL}"
    return Package(
        "apt", "linux-64", "xdemo", "1.0-1", f"{root}/debian/{POOL}", sha256 or hashlib.sha256(DEB).hexdigest(), extra
    )


def test_a_deb_gone_from_the_mirror_comes_from_its_snapshot_url(debian_servers):
    import hashlib

    from mlenv.apt.fetch import fetch_debs
    from mlenv.runtime.fetch import artifact_cache_dir

    root, files, seen = debian_servers
    files[f"/archive/debian/{STAMP}/{POOL}"] = (200, DEB)  # the mirror answers 404 (superseded)
    pkg = deb_pkg(root)
    got = fetch_debs([pkg])
    assert seen == [f"/debian/{POOL}", f"/debian/{POOL}", f"/archive/debian/{STAMP}/{POOL}"]  # batch, one, snapshot
    path = got[pkg.sha256]
    assert path == artifact_cache_dir() / pkg.sha256 and hashlib.sha256(path.read_bytes()).hexdigest() == pkg.sha256
    assert path.read_bytes() == DEB
    seen.clear()
    assert fetch_debs([pkg]) == got and seen == []  # now from the cache, checked again


def test_a_snapshot_copy_with_other_bytes_is_refused(debian_servers):
    from mlenv.apt.fetch import SupersededError, fetch_debs
    from mlenv.runtime.fetch import artifact_cache_dir

    root, files, seen = debian_servers
    files[f"/archive/debian/{STAMP}/{POOL}"] = (200, DEB + b"tampered")
    pkg = deb_pkg(root)
    with pytest.raises(SupersededError) as err:
        fetch_debs([pkg])
    line = err.value.message
    assert line.startswith(
        f"Debian package xdemo 1.0-1 is no longer at {root}/debian/{POOL} (superseded on the mirror)"
    )
    assert "its snapshot copy failed too" in line and "sha256" in line and "\n" not in line
    assert "mlenv lock --upgrade-package xdemo" in err.value.hint
    assert not (artifact_cache_dir() / pkg.sha256).exists()
    assert not [p for p in artifact_cache_dir().iterdir() if p.name.endswith(".part")]


def test_no_snapshot_or_a_mirror_error_other_than_gone(debian_servers):
    from mlenv.apt.fetch import SupersededError, fetch_debs
    from mlenv.runtime.errors import InstallError

    root, files, seen = debian_servers
    with pytest.raises(SupersededError) as err:  # 404 and no snapshot-url (not a Debian archive)
        fetch_debs([deb_pkg(root, snapshot=False)])
    assert "superseded on the mirror" in err.value.message and "snapshot" not in err.value.message
    assert "snapshot" not in (err.value.hint or "") and "--upgrade-package xdemo" in err.value.hint
    files[f"/debian/{POOL}"] = (500, b"busy")  # the mirror is broken, not superseded: no fallback
    files[f"/archive/debian/{STAMP}/{POOL}"] = (200, DEB)
    seen.clear()
    with pytest.raises(InstallError) as err:
        fetch_debs([deb_pkg(root)])
    assert not isinstance(err.value, SupersededError) and "HTTP Error 500" in err.value.message
    assert not any(p.startswith("/archive/") for p in seen)
