#!/usr/bin/env python
"""Self-training on unlabelled photographs (see leafseg/training/adapt.py):
python scripts/adapt.py PHOTOS... --weights leaf-small --out DIR"""
import sys

from leafseg.cli.adapt import main

if __name__ == "__main__":
    sys.exit(main())
