from ._npdemo import compiled_sizes, total
