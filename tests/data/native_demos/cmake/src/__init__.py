from ._cdemo import crc, facts
