"""The ``leafseg prepare`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.data.prepare`."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from leafseg.cli.options import add_verbose_argument, setup_command_logging
from leafseg.data.masks import DEFAULT_MIN_AREA
from leafseg.data.prepare import (DEFAULT_IMAGE_GLOB, DEFAULT_LABEL_SUFFIX, DEFAULT_MAX_LEAVES, SIZE_MISMATCH_RULES,
                                  coco_files, default_images_folder, prepare_dataset, read_id_list)

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _id_list(text: str) -> list[str]:
    try:
        return read_id_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _class_list(text: str) -> list[str] | str:
    if text.strip() == "all":
        return "all"
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"expected category names, each once, comma-separated, or 'all'; got {text!r}")
    return names


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Options of the prepare command; pass a subparser to reuse them in a larger CLI."""
    parser = parser or argparse.ArgumentParser(
        prog="leafseg prepare",
        description="Split colour (or indexed) leaf label images, or COCO / LabelMe annotations (--coco, "
                    "--labelme), into one binary mask per leaf, in the data-science-bowl-2018 layout: "
                    "OUT/{train,val}/<id>/images/<id>.<ext> (the image file's bytes kept) and "
                    "OUT/{train,val}/<id>/masks/<id>_<k>.png, plus "
                    "OUT/manifest.csv. Reruns skip finished samples. Rules: python -c 'import leafseg.data.prepare; help(leafseg.data.prepare)'.")
    parser.add_argument("--input", help="folder searched recursively for image/label pairs; with --coco, the images "
                                         "folder, its subfolders searched too (default with --coco: images/ beside "
                                         "the JSON or beside its folder, else the JSON's folder)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--coco", metavar="ANNOTATIONS.json|EXPORT_FOLDER", action="append",
                        help="read leaves from a COCO instances file (polygons or RLE) instead of label images; "
                             "repeatable; a folder: its split folders' *.json (Roboflow's train/, valid/, test/), "
                             "whose split is kept (train -> train; valid, val, test -> val)")
    source.add_argument("--labelme", metavar="FOLDER",
                        help="read leaves from the LabelMe JSON files in FOLDER (polygon, rectangle, circle "
                             "and mask shapes) instead of --input")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--category", action="append", metavar="NAME",
                        help="with --coco / --labelme: a category (label) name that is a leaf; repeatable "
                             "(default: every category); one class, leaf")
    chosen.add_argument("--classes", type=_class_list, metavar="NAME,NAME|all",
                        help="with --coco / --labelme: keep these categories as classes, ids 1..N in this order "
                             "(others ignored), or 'all' (every annotated category: COCO's by id, LabelMe's by "
                             "name); writes OUT/classes.json and each mask's class in sample.json")
    parser.add_argument("--output", required=True, help="output folder (created if missing)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float,
                       help="share of samples for val, chosen by a hash of --seed and the id (default 0.2); "
                            "not for COCO files whose export gives their split")
    split.add_argument("--val-ids", type=_id_list, metavar="ID,ID|@FILE",
                       help="the val samples by id (comma-separated, or @FILE / a file of one id per line); "
                            "every other sample goes to train")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--strict", action="store_true", help="exit with 1 when any input was bad")
    parser.add_argument("--overwrite", action="store_true", help="redo samples that are already prepared")
    parser.add_argument("--size-mismatch", choices=SIZE_MISMATCH_RULES, default="resize",
                        help="label and image sizes differ: resize the label (nearest neighbour, default), "
                             "centre-crop/pad it, or report the sample as bad")
    parser.add_argument("--image-glob", default=DEFAULT_IMAGE_GLOB,
                        help=f"file-name pattern of the images (default {DEFAULT_IMAGE_GLOB!r})")
    parser.add_argument("--label-suffix", default=DEFAULT_LABEL_SUFFIX,
                        help="the label of DIR/BASE.EXT or DIR/BASE_rgb.EXT is DIR/BASE + this "
                             f"(default {DEFAULT_LABEL_SUFFIX!r})")
    parser.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA,
                        help=f"drop label colours covering fewer pixels (default {DEFAULT_MIN_AREA})")
    parser.add_argument("--max-leaves", type=int, default=DEFAULT_MAX_LEAVES,
                        help=f"a label with more leaves is reported as bad (default {DEFAULT_MAX_LEAVES})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    add_verbose_argument(parser, uses_tensorflow=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the prepare command on parsed arguments; returns the exit status."""
    setup_command_logging(args.verbose, tensorflow=False)
    files = []
    if args.coco is not None:
        try:
            files = coco_files(args.coco, args.input)
        except OSError as err:
            print(f"prepare: error: {err}", file=sys.stderr)
            return 2
        if args.input is None:
            where = ", ".join(f"{file.path} in {file.images}" for file in files)
            print(f"prepare: --input not given: the images of {where} are looked for there (and in its subfolders)"
                  if len(files) == 1 else f"prepare: --input not given: the images of each COCO file are looked "
                  f"for beside it, and in subfolders: {where}", file=sys.stderr)
    elif (args.input is None) == (args.labelme is None):
        print("prepare: error: give exactly one of --input (label images, or the images of --coco) and "
              "--labelme FOLDER", file=sys.stderr)
        return 2
    if {"train", "val"} <= {file.subset for file in files} and all(file.subset for file in files):
        if args.val_fraction is not None:
            print("prepare: --val-fraction ignored: the export's own train / val split is kept", file=sys.stderr)
    val_fraction = 0.2 if args.val_fraction is None else args.val_fraction
    for name, value in (("--category", args.category), ("--classes", args.classes)):
        if value and args.coco is None and args.labelme is None:
            print(f"prepare: error: {name} needs --coco or --labelme", file=sys.stderr)
            return 2
    source = args.input or args.labelme
    try:
        result = prepare_dataset(
            source, args.output, coco=args.coco, labelme=args.labelme is not None, categories=args.category,
            classes=args.classes,
            val_fraction=val_fraction, seed=args.seed, workers=args.workers,
            val_ids=args.val_ids, overwrite=args.overwrite, size_mismatch=args.size_mismatch,
            image_glob=args.image_glob, label_suffix=args.label_suffix, min_area=args.min_area,
            max_leaves=args.max_leaves, progress=False if args.quiet else None)
    except (OSError, ValueError) as err:
        print(f"prepare: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(result.summary())
    if not result.finished:
        annotations = ", ".join(args.coco) if args.coco else args.labelme
        what = (f"the annotations of {annotations}" if annotations else
                f"{args.input} (images matching {args.image_glob!r}, labels ending with {args.label_suffix!r})")
        print(f"prepare: nothing could be prepared from {what}", file=sys.stderr)
        return 1
    if args.strict and result.problems:
        print(f"prepare: {len(result.problems)} bad inputs (--strict)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``prepare_masks`` / ``leafseg prepare`` entry point: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))
