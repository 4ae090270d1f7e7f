"""mlenv.runtime.fetch: an interrupted download leaves no partial file in the cache."""

from __future__ import annotations

import signal

import pytest

from mlenv.runtime.fetch import fetch_artifacts
from mlenv.runtime.plan import Artifact


def test_ctrl_c_as_the_partial_file_is_created_removes_it(tmp_path, signal_after_mkstemp):
    # the interruption lands before any request: nothing listens on this port, and nothing is asked
    art = Artifact("pypi", "fixalpha", "1.1.0", "http://127.0.0.1:9/fixalpha-1.1.0-py3-none-any.whl", "a" * 64)
    signal_after_mkstemp(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fetch_artifacts([art], cache=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_ctrl_c_while_a_local_file_is_linked_into_the_cache_removes_the_partial_file(tmp_path, monkeypatch):
    import hashlib

    from mlenv.runtime import fetch

    local = tmp_path / "fixalpha-1.1.0-py3-none-any.whl"
    local.write_bytes(b"a wheel")
    art = Artifact("pypi", "fixalpha", "1.1.0", local.as_uri(), hashlib.sha256(b"a wheel").hexdigest())
    real = fetch.link_or_copy

    def then_interrupted(src, dest):
        real(src, dest)
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "link_or_copy", then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch_artifacts([art], cache=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.fixture
def one_file_server():
    """An HTTP server on 127.0.0.1 serving b"a wheel" at any path."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"a wheel")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("when", ["as it is renamed", "after a hash mismatch"])
def test_an_interrupted_or_refused_download_leaves_no_partial_file(tmp_path, monkeypatch, one_file_server, when):
    import hashlib
    import os

    from mlenv.runtime.errors import InstallError

    url = f"{one_file_server}/fixalpha-1.1.0-py3-none-any.whl"
    if when == "as it is renamed":  # complete and verified, then Ctrl-C before the rename
        art = Artifact("pypi", "fixalpha", "1.1.0", url, hashlib.sha256(b"a wheel").hexdigest())

        def replace(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", replace)
        expected: type[BaseException] = KeyboardInterrupt
    else:
        art = Artifact("pypi", "fixalpha", "1.1.0", url, "b" * 64)
        expected = InstallError
    with pytest.raises(expected):
        fetch_artifacts([art], cache=tmp_path / "cache")
    monkeypatch.undo()
    assert list((tmp_path / "cache").iterdir()) == []
