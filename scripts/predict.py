#!/usr/bin/env python
"""Segment and measure the leaves of images: overlays, CVPPP label PNGs, leaves.csv, plants.csv.

    python scripts/predict.py --weights run/mask_rcnn_leaf_0040.weights.h5 --out results/ photos/

The same command as ``leafseg predict``; options: ``--help``, rules: ``leafseg.inference.predict``.
"""
import sys

from leafseg.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
