#!/usr/bin/env python
"""Score a trained model on images with known leaves: CVPPP metrics, mask AP50, COCO AP.

    python scripts/evaluate.py --weights run/mask_rcnn_leaf_0040.weights.h5 --dataset data/leaves --out eval/

The same command as ``leafseg evaluate``; options: ``--help``, rules: ``leafseg.measure.evaluate``.
"""
import sys

from leafseg.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
