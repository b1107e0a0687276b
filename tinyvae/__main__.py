"""python -m tinyvae: the same as the ``tinyvae`` command."""
import sys

from .cli import main

sys.exit(main())
