# The classic mistake: headers taken from beside the host numpy module, not from get_include().
import os

import numpy
from setuptools import Extension, setup

HOST = os.path.join(os.path.dirname(numpy.__file__), "core", "include")
setup(ext_modules=[Extension("npdemo._npdemo", ["npdemo/_npdemo.c"], include_dirs=[HOST])])
