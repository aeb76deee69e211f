#!/usr/bin/env python
"""Train in stages with optimisers, schedules, resume and logs (see leafseg/train.py):
python scripts/train.py --help"""
import sys

from leafseg.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
