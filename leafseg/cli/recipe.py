"""The ``leafseg recipe`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.training.recipe`."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from leafseg.cli.options import add_verbose_argument, quiet_tensorflow
from leafseg.training import recipe as _library
from leafseg.training.recipe import RECIPES

LIBRARY_DOC = _library.__doc__  # the command's help is the library's description


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg recipe", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rebuild a pretrained model of leafseg.models.zoo from nothing, or measure generalisation "
                    "(leave-one-style-out) and small-data fine-tuning (small-data); run again with the same "
                    "arguments to continue.",
        epilog=LIBRARY_DOC.split("\n\n", 1)[1])
    parser.add_argument("recipe", choices=list(RECIPES), help="leaf-small: the shipped model; leave-one-style-out: "
                                                              "the generalisation table of its model card; "
                                                              "small-data: fine-tuning on 20 labelled images")
    parser.add_argument("--out", help="working folder (default: runs/RECIPE)")
    parser.add_argument("--images", type=int, help="rosettes to generate per model (default: 3000; "
                                                   "leave-one-style-out 1000; small-data 20 training images)")
    parser.add_argument("--epochs", type=int, help="epochs per model, in one stage (default: leaf-small's stages, "
                                                   "to epochs 36, 48, 72, 104 and 128, then 24 on cluttered "
                                                   "rosettes; leaf-small N: N, then N // 4; leave-one-style-out 10)")
    parser.add_argument("--minutes", type=float, help="small-data: the training time of each way compared "
                                                      "(default: 8)")
    parser.add_argument("--steps-per-epoch", type=int, help="steps per epoch (default: the preset's, 200; "
                                                            "small-data 20)")
    parser.add_argument("--seed", type=int, help="seed of the data and the training (default: 2026; "
                                                 "leave-one-style-out 2027; small-data 2030)")
    parser.add_argument("--family", action="append", metavar="FAMILY",
                        help="leave-one-style-out: the families to hold out (default: all of leafseg.synth.scenes.FAMILIES)")
    parser.add_argument("--start-from", metavar="WEIGHTS",
                        help="leaf-small: skip steps 1 to 3 and fine-tune this weights file of the first leaf-small "
                             "(the shipped model before v2; its model card gives the commit) on the realism rosettes")
    parser.add_argument("--photos", metavar="DIR",
                        help="leaf-small: unlabelled real time-lapse photographs (the Deep Phenotyping set, see the "
                             "model card) to self-train on after the drawn fine-tuning (leafseg adapt), their "
                             "held-out plants left out")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes that draw and prepare the rosettes (default: 2)")
    add_verbose_argument(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_tensorflow(args.verbose)
    given = {name: getattr(args, name) for name in ("images", "epochs", "minutes", "seed", "steps_per_epoch")
             if getattr(args, name) is not None}
    for option in ("start_from", "photos"):
        if getattr(args, option) is not None:
            given[option] = getattr(args, option)
    only = {"family": "leave-one-style-out", "minutes": "small-data", "start_from": "leaf-small", "photos": "leaf-small"}
    for option, recipe in only.items():
        if getattr(args, option) is not None and args.recipe != recipe:
            print(f"recipe: error: --{option.replace('_', '-')} is for {recipe}", file=sys.stderr)
            return 2
    if args.recipe == "small-data" and args.epochs is not None:
        print("recipe: error: small-data trains for --minutes, not --epochs", file=sys.stderr)
        return 2
    if args.family:
        given["families"] = args.family
    RECIPES[args.recipe](out=args.out or f"runs/{args.recipe}", workers=args.workers, **given)
    return 0


if __name__ == "__main__":
    sys.exit(main())
