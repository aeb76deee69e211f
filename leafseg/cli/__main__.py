"""``python -m leafseg.cli COMMAND ...``: the ``leafseg`` command."""
import sys

from leafseg.cli import main

sys.exit(main())
