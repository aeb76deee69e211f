#!/usr/bin/env python
"""Track the leaves of time-lapses: order.csv, tracks.csv, growth.csv, growth plots, track-id labels.

    python scripts/track.py --out tracks/ photos/plant07/

The same command as ``leafseg track``; options: ``--help``, rules: ``leafseg.inference.track``.
"""
import sys

from leafseg.cli.track import main

if __name__ == "__main__":
    sys.exit(main())
