"""Images of a lock: the engines that build them (daemonless OCI writer, BuildKit,
classic Docker builder), their shared build plan, and reuse by content hash.

The daemonless builder (docs/build.md, "The daemonless builder"):
- daemonless.py   build(spec, lock, platform, ...) -> BuildResult: the entry point
- materialize.py  the lock's env for a target platform on the host (rattler, installer, .pyc)
- layering.py     which packages share a layer (the layer rule)
- basefacts.py    what is read off a base image's files (Python, glibc, os-release)
- rebasable.py    the rebase contract: labels, glibc floor, checks (recorded at build)
- rebase.py       rebase_image(): a new base under the same environment layers
- transport.py    the seam to mlenv.oci (pull, push, layout, load)
"""
