#!/usr/bin/env python
"""The built-in end-to-end job (see leafseg/demo.py): python scripts/demo.py --help"""
import sys

from leafseg.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
