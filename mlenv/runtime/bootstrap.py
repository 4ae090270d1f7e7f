"""The first thing an image install step runs, with the base image's own Python.

An install step cannot import mlenv (nothing of it is in the base image), so its
RUN line carries this file's text (`python3 -c "<this file>" ARGS`; the Dockerfile
renderer reads the file, mlenv.image.dockerfile). It imports only the standard
library. It fetches from mlenv's build-time artifact server on the build host, each
by the sha256 that the RUN line names and checks: the tool tars (this package and
uv, and py-rattler for conda) or the target's uv / py-rattler wheels, and the step's
install plan. Then it runs `python -m mlenv.runtime install` in a scratch directory
(/tmp/mlenv-build, with TMPDIR inside it, so what uv or a build backend leaves
behind goes with it) and removes the scratch directory, restoring /tmp's mtime: no
byte of the tooling reaches a layer.

ARGS: server URL, tools (comma-separated: a tar sha256, or `whl=<sha256>` for a
wheel served at /a/<sha256>, unzipped), plan sha256, network ("-": none; "net":
PyPI for an sdist's build backend; "net+ca": with the CA bundle the host serves at
/net.pem for this step's process only), then the installer's own arguments.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile

WORK = "/tmp/mlenv-build"


def fetch(opener, url: str, sha: str | None = None) -> bytes:
    with opener.open(url, timeout=600) as resp:
        data = resp.read()
    if sha and hashlib.sha256(data).hexdigest() != sha:
        sys.exit(f"mlenv: sha256 mismatch for {url}")
    return data


def main(argv: list[str]) -> int:
    url, tools, plan, net, *args = argv
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never a proxy
    st = os.stat("/tmp")
    os.makedirs(WORK + "/lib")
    os.makedirs(WORK + "/tmp")
    try:
        env = dict(os.environ, PYTHONPATH=WORK + "/lib", UV_NO_CONFIG="1", PYTHONDONTWRITEBYTECODE="1",
                   no_proxy="127.0.0.1", NO_PROXY="127.0.0.1", TMPDIR=WORK + "/tmp")  # fmt: skip
        extra = []
        if net == "net+ca":
            with open(WORK + "/net.pem", "wb") as fh:
                fh.write(fetch(opener, url + "/net.pem"))
            extra += ["--ca-bundle", WORK + "/net.pem"]
        for tool in tools.split(","):
            if tool.startswith("whl="):
                zipfile.ZipFile(io.BytesIO(fetch(opener, url + "/a/" + tool[4:], tool[4:]))).extractall(WORK + "/lib")
            else:
                tarfile.open(fileobj=io.BytesIO(fetch(opener, url + "/tools/" + tool, tool))).extractall(WORK)
        for script in glob.glob(WORK + "/lib/uv-*.data/scripts/uv"):  # the uv wheel's binary
            os.makedirs(WORK + "/bin", exist_ok=True)
            os.replace(script, WORK + "/bin/uv")
            os.chmod(WORK + "/bin/uv", 0o755)
        env["MLENV_UV"] = WORK + "/bin/uv"
        with open(WORK + "/plan.json", "wb") as fh:
            fh.write(fetch(opener, url + "/plan/" + plan, plan))
        cmd = [sys.executable, "-m", "mlenv.runtime", "install", "--plan", WORK + "/plan.json",
               "--artifact-url", url + "/a/", "--work-dir", WORK + "/work", *extra, *args]  # fmt: skip
        return subprocess.run(cmd, env=env).returncode
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
        os.utime("/tmp", ns=(st.st_atime_ns, st.st_mtime_ns))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
