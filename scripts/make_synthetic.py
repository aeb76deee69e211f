#!/usr/bin/env python
"""Write procedural Arabidopsis rosettes: plantNNNNN_rgb.png + plantNNNNN_label.png pairs.

    python scripts/make_synthetic.py --out data/synthetic --count 1000 --seed 0 --size 500 \
        --workers 2 --contact-sheet data/synthetic_sheet.png

Reruns skip finished images; the same seed gives the same bytes with any number of workers.
Options: ``--help``; the generator and its rules: ``leafseg.synth.rosettes``.
"""
import sys

from leafseg.cli.synth import main

if __name__ == "__main__":
    sys.exit(main())
