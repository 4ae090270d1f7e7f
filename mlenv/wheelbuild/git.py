"""What mlenv asks git: which commit a ref names (`git ls-remote`), and a checkout of
one commit to build a wheel from (`git fetch --depth 1 URL COMMIT`).

uv resolves git requirements (and pins their commit in its pylock output); it has
no command that only reads a ref or only checks out a commit, and its cache layout
is its own business, so these two steps call git directly.

Credentials never reach a process argument, the lock or a message: the URL given
to git has no userinfo; a `${VAR}` userinfo (expanded in memory) travels as an
`http.extraHeader` in git's environment (GIT_CONFIG_COUNT/KEY/VALUE), and git's own
~/.netrc support and credential helpers (osxkeychain, libsecret, Git Credential
Manager: the keyring) work as they do for any git command. git never prompts
(GIT_TERMINAL_PROMPT=0). Output is scrubbed before it is shown.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

from ..errors import SolveError
from .refs import COMMIT as _COMMIT
from .refs import RefState, resolve_ref

TIMEOUT = 60
__all__ = ["LsRemote", "RefState", "check_ref", "checkout", "git_env", "ls_remote", "resolve_ref"]


def _split(url: str) -> tuple[str, str | None]:
    """(URL without userinfo, 'user:password' or None)."""
    m = re.match(r"\A([a-z][a-z0-9+.-]*://)([^/?#]*)(.*)\Z", url, re.I | re.S)
    if not m or "@" not in m.group(2):
        return url, None
    userinfo, _, host = m.group(2).rpartition("@")
    return m.group(1) + host + m.group(3), userinfo


def git_env(url: str, *, ca_bundle: str | None = None) -> tuple[str, dict[str, str], list[str]]:
    """(plain URL, environment for git, secrets to scrub from its output)."""
    plain, userinfo = _split(url)
    env = dict(os.environ)
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    secrets: list[str] = []
    if userinfo:
        import base64

        user, _, password = userinfo.partition(":")
        raw = f"{unquote(user)}:{unquote(password)}"
        token = base64.b64encode(raw.encode()).decode()
        n = int(env.get("GIT_CONFIG_COUNT") or 0)
        env.update({"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": "http.extraHeader",
                    f"GIT_CONFIG_VALUE_{n}": f"Authorization: Basic {token}"})  # fmt: skip
        secrets += [s for s in (token, unquote(password), password, userinfo) if s]
        if not password:
            secrets.append(unquote(user))
    if ca_bundle:
        env["GIT_SSL_CAINFO"] = ca_bundle
    return plain, env, secrets


def _scrub(text: str, secrets: list[str]) -> str:
    from ..runtime.secrets import scrub

    return scrub(text, secrets)


def _run(args: list[str], url: str, *, cwd: str | None = None, ca_bundle: str | None = None,
         timeout: int = TIMEOUT) -> tuple[int, str, str]:  # fmt: skip
    plain, env, secrets = git_env(url, ca_bundle=ca_bundle)
    cmd = ["git", *[plain if a == "{URL}" else a for a in args]]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False)  # fmt: skip
    except FileNotFoundError:
        raise SolveError("git is not installed; mlenv needs it to lock git dependencies",
                         hint="install git (apt-get install git)") from None  # fmt: skip
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {timeout} s"
    return proc.returncode, proc.stdout, _scrub(proc.stderr, secrets)


def _reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("hint:")]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    line = (fatal or lines or ["no answer"])[-1]
    return re.sub(r"^(fatal|error):\s*", "", line)[:300]


class LsRemote:
    """`git ls-remote URL` started in the background (the no-op lock reads refs while it
    hashes local trees); result() waits."""

    def __init__(self, url: str, *, ca_bundle: str | None = None, timeout: int = TIMEOUT):
        plain, env, self.secrets = git_env(url, ca_bundle=ca_bundle)
        self.url, self.timeout = url, timeout
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                ["git", "ls-remote", "--", plain], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, text=True)  # fmt: skip
        except FileNotFoundError:
            self.proc = None

    def result(self) -> dict[str, str]:
        if self.proc is None:
            raise SolveError("git is not installed; mlenv needs it for git dependencies", hint="install git")
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
            code = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            out, err, code = "", f"no answer within {self.timeout} s", 124
        return _refs(self.url, code, out, _scrub(err, self.secrets))


def ls_remote(url: str, *, ca_bundle: str | None = None) -> dict[str, str]:
    """ref name -> commit of every branch, tag (peeled) and HEAD of the repository."""
    code, out, err = _run(["ls-remote", "--", "{URL}"], url, ca_bundle=ca_bundle)
    return _refs(url, code, out, err)


def _refs(url: str, code: int, out: str, err: str) -> dict[str, str]:
    from ..runtime.secrets import strip_credentials

    if code != 0:
        raise SolveError(f"cannot reach git repository {strip_credentials(url)}: {_reason(err)}",
                         hint="check the URL, the network, and credentials (${VAR} in the URL, ~/.netrc or "
                              "a git credential helper)")  # fmt: skip
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if _COMMIT.match(sha) and name:
            refs[name] = sha
    return refs


def check_ref(url: str, ref: str | None, *, ca_bundle: str | None = None) -> RefState:
    """The commit `ref` names now; SolveError for an unreachable repository or an unknown ref.
    A 40-hex commit id is returned as is (ls-remote lists refs, not commits)."""
    from ..runtime.secrets import strip_credentials

    refs = ls_remote(url, ca_bundle=ca_bundle)
    if ref and _COMMIT.match(ref):
        return RefState("commit", ref)
    found = resolve_ref(refs, ref)
    if not found:
        if ref and re.fullmatch(r"[0-9a-f]{7,39}", ref):
            return RefState("commit", ref)  # an abbreviated commit: uv resolves it
        what = f"branch or tag {ref!r}" if ref else "default branch (HEAD)"
        raise SolveError(f"git repository {strip_credentials(url)} has no {what}",
                         hint="check the ref after '@' in the requirement (`git ls-remote URL` lists them)")  # fmt: skip
    return found[0]


def checkout(url: str, commit: str, dest: Path, *, ca_bundle: str | None = None) -> Path:
    """A work tree of `commit` at dest (a new directory), submodules included."""
    from ..runtime.secrets import strip_credentials

    dest.mkdir(parents=True)
    where = str(dest)
    code, _, err = _run(["init", "-q", where], url)
    if code == 0:
        code, _, err = _run(["-C", where, "fetch", "-q", "--depth", "1", "--no-tags", "{URL}", commit], url,
                            ca_bundle=ca_bundle)  # fmt: skip
    if code != 0:
        # servers that refuse a commit id in `want` (protocol v0 without allowReachableSHA1InWant)
        code, _, err = _run(["-C", where, "fetch", "-q", "--no-tags", "{URL}", "+refs/heads/*:refs/remotes/origin/*",
                             "+refs/tags/*:refs/tags/*"], url, ca_bundle=ca_bundle)  # fmt: skip
    if code != 0:
        raise SolveError(
            f"cannot fetch commit {commit[:12]} of git repository {strip_credentials(url)}: {_reason(err)}",
            hint="was the history rewritten? `mlenv lock --upgrade-package NAME`",
        )
    target = "FETCH_HEAD" if _rev(where, "FETCH_HEAD") == commit else commit
    code, _, err = _run(["-C", where, "-c", "advice.detachedHead=false", "checkout", "-q", target], url)
    if code != 0:
        raise SolveError(f"commit {commit[:12]} is not in git repository {strip_credentials(url)}: {_reason(err)}",
                         hint="was the history rewritten? `mlenv lock --upgrade-package NAME` re-reads the ref")  # fmt: skip
    if (dest / ".gitmodules").is_file():
        code, _, err = _run(["-C", where, "submodule", "update", "--init", "--recursive", "--depth", "1"], url,
                            ca_bundle=ca_bundle)  # fmt: skip
        if code != 0:
            raise SolveError(f"cannot fetch the submodules of {strip_credentials(url)}@{commit[:12]}: {_reason(err)}")
    return dest


def _rev(where: str, name: str) -> str:
    proc = subprocess.run(["git", "-C", where, "rev-parse", "--verify", "-q", name + "^{commit}"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return proc.stdout.strip()
