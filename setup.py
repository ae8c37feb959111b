# Everything else is in pyproject.toml; this is the one thing it cannot express.
from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
