from ._mdemo import crc, facts
