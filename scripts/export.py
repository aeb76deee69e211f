#!/usr/bin/env python
"""Write a model as a TensorFlow SavedModel (uint8 image in, detections out) and check it.

    python scripts/export.py --weights run/mask_rcnn_leaf_0040.weights.h5 --out exported/leaf

The same command as ``leafseg export``; options: ``--help``, rules: ``leafseg.inference.export``.
"""
import sys

from leafseg.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
