"""sha256 for the start-up paths, without OpenSSL.

`import hashlib` loads OpenSSL's libcrypto first: about 3 ms, a tenth of `mlenv build`'s
cache hit (mlenv.image.hit) and a few percent of the no-op `mlenv lock`, which hash only a
spec, a lock and a few small files. CPython's own sha256 (a C module) needs no library. It
is slower per byte than OpenSSL's, so artifacts, layers and blobs keep using hashlib.
"""

from __future__ import annotations

# not typing's TYPE_CHECKING: importing typing would cost the cache hit milliseconds
TYPE_CHECKING = False

if TYPE_CHECKING:  # what type checkers see: the same constructor and hash object as hashlib's
    from hashlib import sha256
else:
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:  # pragma: no cover - depends on the interpreter
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:  # an interpreter built without them
            from hashlib import sha256

__all__ = ["sha256"]
