"""
Build the cffi extension ``dataplane._native`` (out-of-line API mode).

setuptools runs this file through ``cffi_modules=["native/build.py:ffibuilder"]``
in setup.py, with the project root as the working directory, so the source
paths below are relative to it.  Build only through pip (``pip install -e .``
or ``pip install .``); running this file by hand writes build products
relative to the current directory.

``make_builder`` takes extra compiler and linker flags: CI's sanitizer step
(``.ci/sanitize``) builds the same sources with ``-fsanitize=address,undefined``
into a temporary folder, away from the editable build.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
COMPILE_ARGS = ["-O2", "-std=gnu11"]


def make_builder(extra_compile_args=(), extra_link_args=(), absolute_paths=False) -> FFI:
    """The extension's builder; ``absolute_paths`` for ``FFI.compile``, which compiles in its own folder."""
    native = str(HERE) if absolute_paths else "native"
    builder = FFI()
    builder.cdef((HERE / "flowhash.cdef.h").read_text(encoding="utf-8"))
    builder.set_source(
        "dataplane._native",
        '#include "flowhash.h"',
        sources=[f"{native}/flowhash.c"],
        include_dirs=[native],
        depends=[f"{native}/flowhash.h"],
        extra_compile_args=COMPILE_ARGS + list(extra_compile_args),
        extra_link_args=list(extra_link_args),
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    ffibuilder.compile(tmpdir="build/cffi", verbose=True)
