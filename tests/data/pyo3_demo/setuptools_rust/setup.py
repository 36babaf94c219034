from setuptools import setup
from setuptools_rust import Binding, RustExtension

setup(rust_extensions=[RustExtension("pyo3_demo", binding=Binding.PyO3)], zip_safe=False)
