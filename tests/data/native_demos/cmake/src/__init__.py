from ._cdemo import crc, facts

__all__ = ["crc", "facts"]
