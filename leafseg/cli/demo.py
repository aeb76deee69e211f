"""The ``leafseg demo`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.demo`."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from leafseg import demo as _library
from leafseg.cli.options import add_verbose_argument, quiet_tensorflow

LIBRARY_DOC = _library.__doc__  # the command's help is the library's description


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(prog="leafseg demo", description=LIBRARY_DOC.split("\n\n")[0])
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--images", type=int, default=100, help="rosettes to generate (default: 100)")
    parser.add_argument("--size", type=int, default=256, help="rosette image size in pixels (default: 256)")
    parser.add_argument("--minutes", type=float, default=8.0, help="training time budget (default: 8)")
    parser.add_argument("--config", default="quickstart_cpu", help="preset name or YAML file (default: quickstart_cpu)")
    parser.add_argument("--eval-images", type=int, default=20, help="held-out images to evaluate (default: 20)")
    parser.add_argument("--predict", type=int, default=4, help="new rosettes to predict on (default: 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    add_verbose_argument(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # TensorFlow's C++ notes (graph cost estimates, CPU features) would drown the progress display.
    quiet_tensorflow(args.verbose)
    _library.run_demo(out=args.out, images=args.images, size=args.size, minutes=args.minutes, seed=args.seed,
                      workers=args.workers, config=args.config, eval_images=args.eval_images, predict=args.predict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
