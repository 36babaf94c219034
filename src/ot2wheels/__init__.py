"""ot2wheels: cross-built wheels for ARM Linux (armv7l, aarch64), tested under qemu-user, served as a static index."""

__version__ = "0.1.0"
