# The C extension hook (cffi_modules) is added with the C backend; until then the
# package is pure Python plus numba kernels.
from setuptools import setup

setup()
