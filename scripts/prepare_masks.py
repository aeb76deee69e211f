#!/usr/bin/env python
"""Colour leaf masks -> one binary mask per leaf, in the data-science-bowl-2018 training layout.

    python scripts/prepare_masks.py --input synthetic/ --output data/leaves --workers 4

The same command as ``leafseg prepare``; options and rules: ``--help`` and ``leafseg.data.prepare``.
"""
import sys

from leafseg.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
