from ._pbdemo import crc, facts

__all__ = ["crc", "facts"]
