"""`python -m ot2wheels.index`: see cli.py."""

import sys

from .cli import main

sys.exit(main())
