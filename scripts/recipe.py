#!/usr/bin/env python
"""Rebuild a shipped model, or measure generalisation (see leafseg/recipe.py):
python scripts/recipe.py leaf-small"""
import sys

from leafseg.cli.recipe import main

if __name__ == "__main__":
    sys.exit(main())
