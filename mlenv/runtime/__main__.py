"""`python -m mlenv.runtime install|inventory ...`: the installer's command line, as
image build steps run it (mlenv.runtime.bootstrap) and as anyone can run it by hand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from .errors import MlenvError

    parser = argparse.ArgumentParser(prog="python -m mlenv.runtime")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install", help="install an install plan into a prefix")
    p.add_argument("--plan", required=True, help="the plan's JSON file (mlenv.runtime.plan)")
    p.add_argument("--prefix", required=True)
    p.add_argument("--pypi-prefix")
    p.add_argument("--pypi-groups", action="store_true", help="PyPI packages live in PYPI_PREFIX/<group>/")
    p.add_argument("--python", help="base interpreter for the venv")
    p.add_argument("--files-dir", help="a directory holding the artifacts by file name")
    p.add_argument("--cache-dir")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--offline", action="store_true", help="never download")
    p.add_argument("--artifact-url", metavar="URL", help="fetch artifacts from URL<sha256> (image build step)")
    p.add_argument("--ca-bundle", metavar="FILE", help="CA bundle for downloads")
    p.add_argument("--work-dir", metavar="DIR", help="fixed scratch directory (must not exist)")
    p.add_argument("--fixed-mtime", type=int, metavar="EPOCH", help="stamp everything written with EPOCH")
    p.add_argument("--step", metavar="NAME", help="this install step's name, for its messages")
    q = sub.add_parser("inventory", help="print what a prefix holds, as JSON")
    q.add_argument("prefix")
    q.add_argument("pypi_prefix", nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "inventory":
            from .inventory import inventory

            print(json.dumps(inventory(args.prefix, args.pypi_prefix)))
            return 0
        from .install import install
        from .plan import loads

        plan_path = Path(args.plan)
        try:
            text = plan_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MlenvError(f"{plan_path}: cannot read the install plan ({exc})") from None
        tag = f"mlenv-install[{args.step}]" if args.step else "mlenv-install"
        res = install(loads(text, str(plan_path)), args.prefix, python=args.python, pypi_prefix=args.pypi_prefix,
                      pypi_groups=args.pypi_groups, files_dir=args.files_dir, cache_dir=args.cache_dir,
                      no_cache=args.no_cache, offline=args.offline, artifact_url=args.artifact_url,
                      ca_bundle=args.ca_bundle, work_dir=args.work_dir, fixed_mtime=args.fixed_mtime,
                      progress=lambda m: print(f"{tag}: {m}", file=sys.stderr, flush=True))  # fmt: skip
        print(f"{tag}: installed {res.conda} conda + {res.pypi} PyPI packages into {res.prefix}",
              file=sys.stderr)  # fmt: skip
        return 0
    except MlenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
