"""What a git ref names, from `git ls-remote` output: pure functions (no git, no
subprocess), shared by the solve (mlenv.wheelbuild.git) and the no-op lock's check of
moved tags (mlenv.solve.moved)."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMIT = re.compile(r"[0-9a-f]{40}\Z")


@dataclass(frozen=True)
class RefState:
    """What a ref names in the repository now."""

    kind: str  # "tag" | "branch" | "head" | "commit" | "ref"
    commit: str


def resolve_ref(refs: dict[str, str], ref: str | None) -> list[RefState]:
    """What `ref` names in `refs` (from ls_remote): a tag (annotated tags peeled), a
    branch, HEAD (no ref), or nothing (an unknown ref, or a commit id, which ls-remote
    cannot confirm). Tags before branches (git's own order)."""
    if ref is None:
        return [RefState("head", refs["HEAD"])] if "HEAD" in refs else []
    out = []
    for kind, full in (("tag", f"refs/tags/{ref}"), ("branch", f"refs/heads/{ref}"), ("ref", ref)):
        sha = refs.get(full + "^{}") or refs.get(full)
        if sha:
            out.append(RefState("tag" if full.startswith("refs/tags/") else kind, sha))
    return out
