"""mlenv.runtime.digest: the start-up paths' sha256 is sha256."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from mlenv.runtime.digest import sha256


@given(st.lists(st.binary(max_size=300), max_size=5))
def test_same_digest_as_hashlib_fed_in_pieces(pieces):
    ours, theirs = sha256(), hashlib.sha256()
    for piece in pieces:
        ours.update(piece)
        theirs.update(piece)
    assert ours.hexdigest() == theirs.hexdigest()
    assert sha256(b"".join(pieces)).hexdigest() == theirs.hexdigest()
