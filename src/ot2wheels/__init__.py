"""ot2wheels: cross-built wheels for 32-bit ARM Linux, tested under qemu-arm, served as a static index."""

__version__ = "0.1.0"
