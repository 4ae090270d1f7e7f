"""The web catalog in a real browser (headless Chromium, no mocks): served by `mlenv ui`
and exported by `mlenv ui --export` and opened from disk, the same checks on both.
Also: hostile registry data renders as text (XSS), the server is read-only and sends
its headers, the exported site is deterministic, and the static search's PEP 440 port
agrees with packaging."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from cli_run import mlenv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.specifiers import InvalidSpecifier, Specifier
from packaging.version import Version
from test_ui_search import loose_versions, pep440
from ui_envs import fraud_train, make_rich_env, pkg, register

from mlenv.curated.catalog import dumps_catalog, load_catalog
from mlenv.registry import open_registry
from mlenv.runtime.text import human_size
from mlenv.ui.search import Clause, clause_matches

pytestmark = pytest.mark.browser
CURATED = "sklearn-1.5-py311-cpu"
HOSTILE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


# --- catalogs to look at ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def curated_dir(tmp_path_factory) -> Path:
    """A curated catalog of one entry (the shipped sklearn one: a real lock with sizes)."""
    out = tmp_path_factory.mktemp("curated")
    entry = next(e for e in load_catalog() if e.name == CURATED)
    shutil.copyfile(entry.spec_path, out / f"{CURATED}.toml")
    shutil.copyfile(entry.lock_path, out / f"{CURATED}.lock")
    (out / "catalog.toml").write_text(dumps_catalog([entry]))
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """A local registry holding two versions of one environment (fraud-train 1 and 2)."""
    base = tmp_path_factory.mktemp("catalog")
    url = str(base / "registry")
    fraud_train(base / "envs", url)
    return url


class Served:
    def __init__(self, registry: str, tmp: Path, *args: str):
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlenv.cli", "ui", "--registry", registry, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("serving "), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url = line.split(" at ", 1)[1].split()[0]
        assert self.url.startswith("http://127.0.0.1:")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def export(registry: str, tmp: Path, out: Path, *args: str) -> str:
    proc = mlenv(
        "ui",
        "--registry",
        registry,
        "--export",
        str(out),
        *args,
        cwd=tmp,
        env={"XDG_CACHE_HOME": str(tmp / "cache")},
        check=True,
    )
    assert proc.stdout.startswith("exported ")
    return out.as_uri() + "/"


@pytest.fixture(scope="module", params=["server", "static"])
def site(request, registry, curated_dir, tmp_path_factory):
    """The catalog's root URL: http://127.0.0.1:PORT/ (mlenv ui) or file:///…/ (mlenv ui --export)."""
    tmp = tmp_path_factory.mktemp(f"site-{request.param}")
    if request.param == "server":
        served = Served(registry, tmp, "--curated", str(curated_dir))
        yield request.param, served.url
        served.stop()
    else:
        yield request.param, export(registry, tmp, tmp / "site", "--curated", str(curated_dir))


# --- helpers ---------------------------------------------------------------------------------------


def wait(driver, condition, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # While the next page loads, an element of the previous one may go stale under us.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, 20, ignored_exceptions=ignored).until(lambda d: condition(d), message=what)


def h1(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "h1").text


def go_to(driver, link_text: str, expect_h1: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.LINK_TEXT, link_text).click()
    wait(driver, lambda d: h1(d).startswith(expect_h1), f"page {expect_h1!r} after clicking {link_text!r}")


def table(driver, css: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"{css} tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def no_console_errors(driver) -> None:
    """Nothing the page did failed: a blocked script or style (CSP), a 404, a JS error."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


# --- the same checks, served and exported -------------------------------------------------------------


def test_browse_the_catalog(browser, screenshot, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    mode, root = site
    d = browser
    d.get(root + "index.html")
    assert h1(d) == "Environments"
    rows = table(d, "#environments")
    assert [r[:5] for r in rows] == [["fraud-train", "numpy 2 and pandas", "prod → 2", "2", "2"]]
    assert d.find_element(By.ID, "registry").text == "local registry"
    no_console_errors(d)
    screenshot(d, f"{mode}-environments")

    # the curated catalog: one entry, its packages and its size chart
    go_to(d, "Curated", "Curated environments")
    assert [r[0] for r in table(d, "#curated")] == [CURATED]
    go_to(d, CURATED, CURATED)
    assert "scikit-learn 1.5" in d.find_element(By.CSS_SELECTOR, "p.lead").text
    assert ["scikit-learn", "1.5.2", "PyPI"] == table(d, "table.packages")[14][:3]
    assert d.find_element(By.ID, "init-cmd").text == f"mlenv init --curated {CURATED} --name my-env"
    assert len(d.find_elements(By.CSS_SELECTOR, "svg#sizes-linux-64 rect")) == 8
    no_console_errors(d)
    screenshot(d, f"{mode}-curated")

    # an environment, then a version
    go_to(d, "Environments", "Environments")
    go_to(d, "fraud-train", "fraud-train")
    versions = table(d, "#versions")
    assert [(r[0], r[3], r[4]) for r in versions] == [("2", "prod", "numpy 2 and pandas"), ("1", "", "first cut")]
    screenshot(d, f"{mode}-environment")
    d.find_element(By.CSS_SELECTOR, "#versions tbody tr:first-child td:first-child a").click()
    wait(d, lambda d: h1(d).startswith("fraud-train@2"), "the version page")
    assert "prod" in h1(d)
    assert d.find_element(By.ID, "restore-cmd").text == "mlenv restore fraud-train@2"
    assert d.find_element(By.ID, "image").text.startswith("none recorded")
    assert d.find_elements(By.ID, "pull-cmd") == []
    linux = [r[:4] for r in table(d, 'table.packages[data-platform="linux-64"]')]
    assert linux == [
        ["openssl", "3.0.14 h0_0", "conda", human_size(2_950_000)],
        ["pytorch", "2.5.1 h0_0", "conda", "60.0 MB"],
        ["numpy", "2.0.1", "PyPI", "19.5 MB"],
        ["pandas", "2.2.3", "PyPI", "12.7 MB"],
        ["scikit-learn", "1.5.2", "PyPI", "13.4 MB"],
        ["urllib3", "2.2.3", "PyPI", "126.0 KB"],
    ]
    assert [r[0] for r in table(d, 'table.packages[data-platform="osx-arm64"]')] == [
        "openssl",
        "pytorch",
        "numpy",
        "scikit-learn",
        "urllib3",
    ]
    assert table(d, "table.variables") == [["OMP_NUM_THREADS", "8"]]
    bars = d.find_elements(By.CSS_SELECTOR, "svg#sizes-linux-64 g text:not(.value)")
    # build order: the conda env, then PyPI groups (transitive ones first, then the spec's own; largest first)
    assert [b.text for b in bars] == ["conda env", "pandas", "numpy", "scikit-learn", "urllib3"]
    assert 'name = "fraud-train"' in d.find_element(By.ID, "spec").text
    no_console_errors(d)
    screenshot(d, f"{mode}-version")

    # the diff, through the compare form
    Select(d.find_element(By.CSS_SELECTOR, "form.inline select[name=b]")).select_by_visible_text("1")
    d.find_element(By.CSS_SELECTOR, "form.inline button[type=submit]").click()
    wait(d, lambda d: h1(d) == "fraud-train@1 → fraud-train@2", "the diff page")
    assert d.current_url.endswith("env/fraud-train/diff-1-2.html")
    assert table(d, "#environment-changes") == [
        ["base image", "changed", "docker.io/library/python:3.11-slim-bookworm",
         "docker.io/library/python:3.11.9-slim-bookworm"],
        ["variable OMP_NUM_THREADS", "changed", "4", "8"],
    ]  # fmt: skip
    assert table(d, 'table.package-changes[data-platform="linux-64"]') == [
        ["pandas", "added", "", "2.2.3", "pypi"],
        ["six", "removed", "1.16.0", "", "pypi"],
        ["openssl", "upgraded", "3.0.13", "3.0.14", "conda"],
        ["numpy", "upgraded", "1.26.4", "2.0.1", "pypi"],
        ["scikit-learn", "upgraded", "1.5.1", "1.5.2", "pypi"],
        ["urllib3", "upgraded", "2.2.1", "2.2.3", "pypi"],
    ]
    osx = table(d, 'table.package-changes[data-platform="osx-arm64"]')
    assert "pandas" not in [r[0] for r in osx] and ["six", "removed", "1.16.0", "", "pypi"] in osx
    assert [e.text for e in d.find_elements(By.CSS_SELECTOR, "tr.removed td.removed")] == ["removed", "removed"]
    no_console_errors(d)
    screenshot(d, f"{mode}-diff")

    # package search: from the header box, then narrowed to a platform
    box = d.find_element(By.CSS_SELECTOR, "header input[name=q]")
    box.send_keys("urllib3<2.2.2")
    box.submit()
    wait(d, lambda d: d.find_elements(By.ID, "summary"), "the search results")
    assert d.find_element(By.ID, "summary").text == (
        "1 version(s) of 1 environment(s) match urllib3<2.2.2, among 2 version(s)."
    )
    assert [r[:5] for r in table(d, "#hits")] == [
        ["fraud-train@1", "linux-64", "urllib3", "2.2.1", "PyPI"],
        ["fraud-train@1", "osx-arm64", "urllib3", "2.2.1", "PyPI"],
    ]
    screenshot(d, f"{mode}-search")
    Select(d.find_element(By.ID, "platform")).select_by_visible_text("osx-arm64")
    query = d.find_element(By.ID, "q")
    query.clear()
    query.send_keys("conda:torch")
    d.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait(d, lambda d: "conda:torch" in d.find_element(By.ID, "summary").text, "the second search")
    assert [r[:5] for r in table(d, "#hits")] == [
        ["fraud-train@2 prod", "osx-arm64", "pytorch", "2.5.1", "conda"],
        ["fraud-train@1", "osx-arm64", "pytorch", "2.5.1", "conda"],
    ]
    d.find_element(By.LINK_TEXT, "fraud-train@1").click()
    wait(d, lambda d: h1(d).startswith("fraud-train@1"), "a version from the results")
    no_console_errors(d)

    # packages A-Z and one package's page
    go_to(d, "Packages", "Packages")
    assert d.find_element(By.ID, "package-names").text.split("\n") == [
        "numpy (2)",
        "openssl (2)",
        "pandas (1)",
        "pytorch (2)",
        "scikit-learn (2)",
        "six (1)",
        "urllib3 (2)",
    ]
    go_to(d, "numpy (2)", "numpy")
    assert [(r[0], r[1], r[3]) for r in table(d, "#hits")] == [
        ("fraud-train@2 prod", "linux-64", "2.0.1"),
        ("fraud-train@2 prod", "osx-arm64", "2.0.1"),
        ("fraud-train@1", "linux-64", "1.26.4"),
        ("fraud-train@1", "osx-arm64", "1.26.4"),
    ]
    no_console_errors(d)


def test_pages_work_without_javascript(registry, curated_dir, tmp_path, browser):
    """The server's pages are plain HTML: with JavaScript off, the compare form and the search still answer."""
    from selenium.webdriver.common.by import By

    served = Served(registry, tmp_path, "--curated", str(curated_dir))
    try:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.get(served.url + "env/fraud-train/v2.html")
        assert "js" not in (browser.find_element(By.TAG_NAME, "html").get_attribute("class") or "")
        assert not browser.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
        browser.find_element(By.CSS_SELECTOR, "form.inline button[type=submit]").click()
        wait(browser, lambda d: h1(d) == "fraud-train@1 → fraud-train@2", "the diff without JavaScript")
        browser.get(served.url + "search.html?q=numpy%3E%3D2")
        assert [r[0] for r in table(browser, "#hits")] == ["fraud-train@2 prod", "fraud-train@2 prod"]
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
        served.stop()


# --- hostile registry data ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_registry(tmp_path_factory) -> str:
    """Registry data written by someone else that mlenv accepts: a description (of the
    version and of the spec) and variable values holding markup and event handlers; two
    versions, so the diff page shows them too. Names, labels and package names cannot
    hold markup: they are validated when written and again when read (a row that breaks
    the rules is refused, test below)."""
    base = tmp_path_factory.mktemp("hostile")
    url = str(base / "registry")
    for n, extra in ((1, "one"), (2, "two")):
        make_rich_env(base / f"env{n}", "evil", [pkg("urllib3", "2.2.1"), pkg("idna", f"3.{n}")],
                      variables={"GREETING": HOSTILE, "STAGE": extra}, description=HOSTILE)  # fmt: skip
        register(base / f"env{n}", url, description=HOSTILE)
    return url


@pytest.mark.parametrize("mode", ["server", "static"])
def test_hostile_registry_data_renders_as_text(hostile_registry, tmp_path, browser, screenshot, mode):
    from urllib.parse import quote

    from selenium.webdriver.common.by import By

    if mode == "server":
        served = Served(hostile_registry, tmp_path)
        root = served.url
    else:
        root = export(hostile_registry, tmp_path, tmp_path / "site")
    try:
        pages = [
            "index.html",
            "env/evil/index.html",
            "env/evil/v1.html",
            "env/evil/v2.html",
            "env/evil/diff-1-2.html",
            "packages/index.html",
            "search.html?q=urllib3",
            "search.html?q=" + quote(HOSTILE),
        ]
        for page in pages:
            browser.get(root + page)
            assert browser.execute_script("return window.__xss") is None, page
            assert browser.find_elements(By.CSS_SELECTOR, "img, svg[onload], [onerror], [onload]") == [], page
            scripts = browser.find_elements(By.TAG_NAME, "script")
            assert all(s.get_attribute("src") and not s.get_attribute("innerHTML").strip() for s in scripts), page
        browser.get(root + "env/evil/v1.html")
        assert HOSTILE in browser.find_element(By.ID, "description").text  # the description
        assert HOSTILE in browser.find_element(By.CSS_SELECTOR, "table.variables").text  # a variable
        assert "<script>window.__xss=1</script>" in browser.find_element(By.ID, "spec").text  # the spec's text
        screenshot(browser, f"{mode}-hostile")
        browser.get(root + "env/evil/diff-1-2.html")
        assert browser.execute_script("return window.__xss") is None
        if mode == "server":
            browser.get(root + "search.html?q=" + quote(HOSTILE))
            error = browser.find_element(By.ID, "query-error").text
            assert "cannot read the package query" in error and HOSTILE in error  # reflected, as text
            assert browser.execute_script("return window.__xss") is None
    finally:
        if mode == "server":
            served.stop()


def test_a_hostile_row_written_into_the_index_is_refused_not_rendered(hostile_registry, tmp_path, browser):
    """A label (or name) holding markup can only come from an index edited outside mlenv: the
    registry refuses the damaged row with one line, which the server shows as text and the
    static export prints; no page carries it as markup."""
    from selenium.webdriver.common.by import By

    damaged = tmp_path / "registry"
    shutil.copytree(hostile_registry, damaged)
    db = sqlite3.connect(damaged / "index.sqlite3")
    db.execute("INSERT INTO labels(name, label, version) VALUES ('evil', ?, 1)", (HOSTILE,))
    db.commit()
    db.close()
    proc = mlenv("ui", "--registry", str(damaged), "--export", str(tmp_path / "site"), cwd=tmp_path,
                 env={"XDG_CACHE_HOME": str(tmp_path / "cache")})  # fmt: skip
    assert proc.returncode == 2 and "damaged registry record" in proc.stderr and "Traceback" not in proc.stderr
    served = Served(str(damaged), tmp_path)
    try:
        browser.get(served.url + "env/evil/v1.html")
        assert browser.execute_script("return window.__xss") is None
        assert browser.find_elements(By.CSS_SELECTOR, "img, [onerror], [onload]") == []
        assert "damaged registry record" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        served.stop()


# --- the server itself ---------------------------------------------------------------------------------


def request(url: str, method: str = "GET", headers: dict | None = None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        resp = opener.open(urllib.request.Request(url, method=method, headers=headers or {}), timeout=30)
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_server_is_read_only_local_and_sends_its_policy(registry, tmp_path):
    served = Served(registry, tmp_path)
    try:
        status, headers, body = request(served.url + "index.html")
        assert status == 200 and b"fraud-train" in body
        assert headers["content-security-policy"].startswith("default-src 'none'; style-src 'self'; script-src 'self'")
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, headers, _ = request(served.url + "index.html", method)
            assert status == 405 and headers["allow"] == "GET, HEAD", method
        assert request(served.url + "index.html", "HEAD")[0] == 200
        # a page of another site that rebinds its name to 127.0.0.1 cannot read the catalog
        assert request(served.url + "index.html", headers={"Host": "attacker.example"})[0] == 400
        assert request(served.url + "env/fraud-train/v9.html")[0] == 404
        assert request(served.url + "../../etc/passwd")[0] == 404
        assert request(served.url + "static/../pages.py")[0] == 404
    finally:
        served.stop()
    assert "[default: 127.0.0.1]" in mlenv("ui", "--help", cwd=tmp_path, check=True).stdout


def test_static_export_is_deterministic_and_careful_with_its_directory(registry, curated_dir, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    export(registry, tmp_path, a, "--curated", str(curated_dir))
    export(registry, tmp_path, b, "--curated", str(curated_dir))
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert str(tmp_path) not in "".join((a / f).read_text() for f in files_a if f.endswith((".html", ".js")))
    assert "env/fraud-train/diff-1-2.html" in files_a and "search-data.js" in files_a
    # an export replaces an earlier export, never another directory
    (a / "stale.html").write_text("old")
    export(registry, tmp_path, a, "--curated", str(curated_dir))
    assert not (a / "stale.html").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    proc = mlenv("ui", "--registry", registry, "--export", str(other), cwd=tmp_path)
    assert proc.returncode == 2 and "not an earlier mlenv export" in proc.stderr
    assert (other / "notes.txt").read_text() == "keep me" and len(list(other.iterdir())) == 1


# --- the pushed image's layers (OCI registry) ---------------------------------------------------------


@pytest.mark.registry
def test_version_page_on_an_oci_registry_shows_the_pushed_images_layers(
    test_registry, base_image_remote, tmp_path, browser, screenshot
):
    """A real lock (the curated scikit-learn one) registered in an OCI registry, with the
    image record pointing at an image that registry holds: its layers are read and drawn."""
    from selenium.webdriver.common.by import By

    from mlenv.image_ref import parse
    from mlenv.oci.client import resolve_digest

    url = f"oci://{test_registry}/mlenv-ui-{uuid.uuid4().hex[:10]}"
    entry = next(e for e in load_catalog() if e.name == CURATED)
    lock = entry.lock_path.read_bytes()
    digest = resolve_digest(parse(base_image_remote))
    repo = base_image_remote.rsplit(":", 1)[0]
    with open_registry(url) as reg:
        reg.register(
            "sklearn-train",
            entry.spec_path.read_bytes(),
            lock,
            entry.content_hash,
            description="scikit-learn 1.5 for the nightly fraud model",
        )
        reg.update("sklearn-train", 1, image=f"{repo}:{entry.short_hash}", image_digest=digest)
        reg.set_label("sklearn-train", 1, "prod")
    served = Served(url, tmp_path)
    try:
        browser.get(served.url + "env/sklearn-train/v1.html")
        assert browser.find_element(By.ID, "restore-cmd").text == f"mlenv restore sklearn-train@1 --registry {url}"
        assert browser.find_element(By.ID, "pull-cmd").text == f"docker pull {repo}@{digest}"
        assert browser.find_element(By.ID, "image-digest").text == digest
        layers = browser.find_elements(By.CSS_SELECTOR, "svg#layers rect")
        assert len(layers) >= 1
        caption = browser.find_element(By.CSS_SELECTOR, "svg#layers + figcaption").text
        assert f"compressed in {len(layers)} layer(s)" in caption and repo in caption
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg#sizes-linux-64 rect")) == 8
        no_console_errors(browser)
        screenshot(browser, "oci-version-with-layers")
        screenshot(browser, "oci-version-top", height=1180)  # docs/img/ui-version.png in the README
    finally:
        served.stop()


# --- the static search's PEP 440 port against packaging ----------------------------------------------


@pytest.fixture(scope="module")
def search_page(registry, tmp_path_factory, browser_session) -> str:
    tmp = tmp_path_factory.mktemp("search-js")
    return export(registry, tmp, tmp / "site") + "search.html"


cases = st.tuples(
    st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "~=", "==="]),
    st.one_of(pep440(), loose_versions, st.builds(lambda v: v.split("+")[0].rsplit(".", 1)[0] + ".*", pep440())),
    st.one_of(pep440(), loose_versions),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(batch=st.lists(cases, min_size=40, max_size=120))
def test_static_search_matches_like_packaging(browser, search_page, batch):
    if browser.current_url != search_page:
        browser.get(search_page)
    expected = [clause_matches(Clause(op, want), have) for op, want, have in batch]
    got = browser.execute_script(
        "return arguments[0].map(function (c) { return MlenvSearch.clauseMatches(c[0], c[1], c[2]); });",
        [list(c) for c in batch],
    )
    assert got == expected, [(c, g, e) for c, g, e in zip(batch, got, expected, strict=False) if g != e][:5]
    # and the Python side is packaging's wherever packaging applies
    for (op, want, have), result in zip(batch, expected, strict=False):
        try:
            spec, version = Specifier(f"{op}{want}"), Version(have)
        except (InvalidSpecifier, ValueError):
            continue
        if op != "===":
            assert result == spec.contains(version, prereleases=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    batch=st.lists(
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40), min_size=20, max_size=60
    )
)
def test_static_search_reads_queries_like_the_cli(browser, search_page, batch):
    from mlenv.ui.search import QueryError, parse_query

    if browser.current_url != search_page:
        browser.get(search_page)
    expected = []
    for text in batch:
        try:
            expected.append(str(parse_query(text)))
        except QueryError:
            expected.append(None)
    got = browser.execute_script(
        "return arguments[0].map(function (t) { try { return MlenvSearch.queryText(MlenvSearch.parseQuery(t)); }"
        " catch (e) { return null; } });",
        batch,
    )
    assert got == expected, [(t, g, e) for t, g, e in zip(batch, got, expected, strict=False) if g != e][:5]


# --- no credential reaches a page ---------------------------------------------------------------------

SECRET = "s3cr3t-" + uuid.uuid4().hex[:12]  # the value of $UI_TEST_TOKEN while the catalog runs


@pytest.fixture(scope="module")
def credential_registry(tmp_path_factory) -> str:
    """Versions written through the registry API by someone careless: a spec whose index URL
    carries `ci:${UI_TEST_TOKEN}@` (the form the spec allows), and every free field the
    registry accepts (the version's description, its image record, a variable, a package's
    index and URL in the lock) holding the token's value written out as `user:secret@`, with
    and without a scheme."""
    from mlenv.lockfile import loads_lock

    base = tmp_path_factory.mktemp("credentials")
    url = str(base / "registry")
    leaky = f"ci:{SECRET}@"
    for n in (1, 2):
        packages = [
            pkg("urllib3", f"2.2.{n}", index=f"https://{leaky}pypi.example.internal/simple"),
            pkg("idna", "3.7"),
        ]
        packages[1].url = f"https://{leaky}files.example.internal/idna-3.7-py3-none-any.whl"
        spec, lock_bytes, content_hash = make_rich_env(
            base / f"env{n}",
            "creds",
            packages,
            variables={"MIRROR": f"https://{leaky}mirror.example.internal/{n}"},
            pypi_index_url="https://ci:${UI_TEST_TOKEN}@pypi.example.internal/simple",
            description=f"mirror https://{leaky}mirror.example.internal",
        )
        lock = loads_lock(lock_bytes.decode())
        with open_registry(url) as reg:
            reg.register("creds", spec, lock_bytes, lock.content_hash,
                         description=f"pull with {leaky}registry.example.internal or https://{leaky}x.example")  # fmt: skip
            reg.update("creds", n, image=f"{leaky}registry.example.internal/creds:{n}",
                       image_digest="sha256:" + "ab" * 32)  # fmt: skip
    return url


def crawl(root: str) -> dict[str, bytes]:
    """Every page the server links (href and src, same site), from index.html, and the searches a user runs."""
    from html.parser import HTMLParser
    from urllib.parse import urljoin, urlsplit

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.found += [v for k, v in attrs if k in ("href", "src", "action") and v]

    todo = [root + "index.html", root + "search.html?q=urllib3", root + "search.html?q=idna%3D%3D3.7", root]
    seen: dict[str, bytes] = {}
    while todo:
        url = urljoin(todo.pop(), "").split("#")[0]
        if url in seen or not url.startswith(root):
            continue
        status, _, body = request(url)
        # The compare form's action answers 400 without its fields; every link leads to a page
        # (a curated entry links only the packages some registered version holds).
        expected = 400 if url == root + "compare.html" else 200
        assert status in (200, expected), (url, status)
        seen[url] = body
        if urlsplit(url).path.endswith((".html", "/")):
            parser = Links()
            parser.feed(body.decode("utf-8"))
            todo += [urljoin(url, link) for link in parser.found]
    return seen


def assert_no_credential(where: str, body: bytes) -> None:
    text = body.decode("utf-8", "replace")
    assert SECRET not in text, (where, text[max(0, text.find(SECRET) - 200) : text.find(SECRET) + 50])
    assert "ci:" + SECRET not in text and "ci%3A" not in text, where


def test_no_credential_reaches_any_page(credential_registry, tmp_path, monkeypatch):
    """With the token in the catalog's environment, no page, search result or data file of
    the served catalog or of the static export holds the token or `user:token`, while the
    record's other content is shown (the credential is removed, not the field)."""
    monkeypatch.setenv("UI_TEST_TOKEN", SECRET)
    served = Served(credential_registry, tmp_path / "serve")
    try:
        pages = crawl(served.url)
    finally:
        served.stop()
    names = {u[len(served.url) :] for u in pages}
    assert {"index.html", "env/creds/v1.html", "env/creds/v2.html", "env/creds/diff-1-2.html"} <= names, names
    assert {"packages/urllib3.html", "packages/idna.html"} <= names, names
    for url, body in pages.items():
        assert_no_credential(url, body)
    v1 = pages[served.url + "env/creds/v1.html"].decode()
    assert "registry.example.internal/creds:1" in v1 and "mirror.example.internal/1" in v1
    assert "ci:${UI_TEST_TOKEN}@pypi.example.internal" in v1  # the spec as written: a reference is not a secret

    site = tmp_path / "site"
    export(credential_registry, tmp_path, site)
    files = [p for p in site.rglob("*") if p.is_file()]
    assert {"index.html", "search-data.js", "env/creds/v2.html"} <= {p.relative_to(site).as_posix() for p in files}
    for path in files:
        assert_no_credential(str(path), path.read_bytes())

    proc = mlenv("search", "urllib3", "--json", "--registry", credential_registry, cwd=tmp_path,
                 env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, check=True)  # fmt: skip
    assert "urllib3" in proc.stdout
    assert_no_credential("mlenv search --json", proc.stdout.encode())
