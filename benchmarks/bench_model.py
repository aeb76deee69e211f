#!/usr/bin/env python
"""Mean training-step time, inference time and peak memory of a config, on this machine.

    python benchmarks/bench_model.py                   # leaf ResNet101, 512x512, batch 1, 12 leaves
    python benchmarks/bench_model.py --set BACKBONE=resnet50 --steps 10 --peer-json peer.txt

Not a test: it prints figures (and a ``json:`` line). Options: ``--help``; what is measured
and how: ``leafseg.benchmark``. Compare with ``benchmarks/peer_torchvision.py`` run in
the same session.
"""
import sys

from leafseg.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
