"""`python -m ot2wheels.index`: see cli.py."""

import gc
import sys

# Before the imports, not only around the build (cli.main): importing the index code makes tens of
# thousands of objects and few cycles, and the collector's passes over them cost ~3 ms of an
# add-one's ~100 ms of CPU. The process is short-lived.
gc.disable()

from .cli import main  # noqa: E402

code = main()
# The interpreter's exit runs one last collection over every object left, which after publishing
# one wheel into an index of 10,000 took ~7 ms (a tenth of the run): frozen objects are skipped.
gc.freeze()
sys.exit(code)
