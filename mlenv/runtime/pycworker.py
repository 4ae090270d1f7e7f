"""The .pyc compiler worker of the daemonless builder (mlenv.image.pyc.CompilePool).

It runs as `python -I -S -c "<this file's text>"` under the CPython that the image
will run (this host's interpreter or pythonX.Y on PATH, any 3.x), so it imports
only the standard library and nothing of mlenv. Batches come on stdin, each a
pickled list of (key, source bytes, dfile) behind an 8-byte big-endian length; the
answer for each batch is a pickled list of (key, pyc bytes or None when the source
does not compile) framed the same way. It stops when stdin closes.

A pyc is written as `py_compile` with CHECKED_HASH does: the magic number, flags 3
(hash-based, checked), the source's siphash (importlib.util.source_hash) and the
code object marshalled with version 2 (no reference flags, so the bytes do not
depend on object identity). Warnings are off: nothing reads stderr until the
process fails, and they do not change a pyc.
"""

import importlib.util
import marshal
import pickle
import struct
import sys
import warnings


def main() -> None:
    warnings.simplefilter("ignore")
    read, write = sys.stdin.buffer, sys.stdout.buffer
    head = importlib.util.MAGIC_NUMBER + b"\x03\x00\x00\x00"
    while True:
        size = read.read(8)
        if len(size) < 8:
            break
        out: list[tuple[object, bytes | None]] = []
        for key, data, dfile in pickle.loads(read.read(struct.unpack(">Q", size)[0])):
            try:
                code = compile(data, dfile, "exec", dont_inherit=True, optimize=0)
            except (SyntaxError, ValueError):
                out.append((key, None))
                continue
            out.append((key, head + importlib.util.source_hash(data) + marshal.dumps(code, 2)))
        answer = pickle.dumps(out, protocol=4)
        write.write(struct.pack(">Q", len(answer)) + answer)
        write.flush()


if __name__ == "__main__":
    main()
