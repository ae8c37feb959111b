"""
Build the cffi extension ``dataplane._native`` (out-of-line API mode).

setuptools runs this file through ``cffi_modules=["native/build.py:ffibuilder"]``
in setup.py, with the project root as the working directory, so the source
paths below are relative to it.  Build only through pip (``pip install -e .``
or ``pip install .``); running this file by hand writes build products
relative to the current directory.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "flowhash.cdef.h").read_text(encoding="utf-8"))
ffibuilder.set_source(
    "dataplane._native",
    '#include "flowhash.h"',
    sources=["native/flowhash.c"],
    include_dirs=["native"],
    depends=["native/flowhash.h"],
    extra_compile_args=["-O2", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir="build/cffi", verbose=True)
