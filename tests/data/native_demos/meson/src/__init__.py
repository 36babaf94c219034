from ._mdemo import crc, facts

__all__ = ["crc", "facts"]
