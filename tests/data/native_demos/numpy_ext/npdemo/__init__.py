from ._npdemo import compiled_sizes, total

__all__ = ["compiled_sizes", "total"]
