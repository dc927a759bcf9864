"""cffi builder of the C backend: ``fastsample._ckernels`` (out-of-line API mode).

setup.py names ``ffibuilder`` in ``cffi_modules``. Every ``csrc/*.c`` is compiled;
the declarations given to ``ffibuilder.cdef`` are the part of each ``csrc/*.h``
between the markers ``FS_CDEF_BEGIN`` and ``FS_CDEF_END`` (plain declarations that
cffi's parser understands; the rest of the header may use the preprocessor).
Portable flags only: no host-specific architecture flag and no fast-math flag
(runtime dispatch picks the vector width; IEEE semantics keep the -inf mask checks exact).
"""

import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = sorted(glob.glob(os.path.join(HERE, "*.h")))
SOURCES = sorted(glob.glob(os.path.join(HERE, "*.c")))
CFLAGS = ["-std=c99", "-O3", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra"]
_CDEF = re.compile(r"FS_CDEF_BEGIN\s*\*/(.*?)/\*\s*FS_CDEF_END", re.DOTALL)


def cdef_text():
    """The declarations cffi sees: the marked section of every header."""
    parts = []
    for path in HEADERS:
        with open(path) as fh:
            parts.extend(_CDEF.findall(fh.read()))
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "fastsample._ckernels",
    "".join(f'#include "{os.path.basename(h)}"\n' for h in HEADERS),
    sources=[os.path.relpath(s, os.path.dirname(HERE)) for s in SOURCES],
    include_dirs=[os.path.relpath(HERE, os.path.dirname(HERE))],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
