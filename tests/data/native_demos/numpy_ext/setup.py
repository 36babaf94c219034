# As pandas 1.5 does: the host runs setup.py with `import numpy`, numpy.get_include() names the headers.
import numpy
from setuptools import Extension, setup

setup(ext_modules=[Extension("npdemo._npdemo", ["npdemo/_npdemo.c"], include_dirs=[numpy.get_include()])])
