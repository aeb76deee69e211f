"""The ``leafseg track`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.inference.track`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leafseg.cli.options import (add_model_arguments, add_plants_arguments, add_runtime_argument, add_tta_argument,
                                 add_verbose_argument, format_set, parse_overrides, positive_float, positive_int, setup_command_logging)
from leafseg.data.prepare import DEFAULT_LABEL_SUFFIX
from leafseg.models.loading import load_inference_model
from leafseg.precision import PRECISIONS


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg track", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Segment the photographs of a time-lapse (the same plants day after day) as predict does, "
                    "put them in time order and link the leaves from frame to frame: a leaf keeps its id.",
        epilog="Outputs: order.csv (the frames in time order and how they were ordered), tracks.csv (a row per "
               "leaf and frame: the track id and predict's leaf traits), growth.csv (leaf count, rosette area and "
               "relative growth rate per plant and frame), growth.png, and per plant <plant>/labels/<image>"
               "_label.png (values = track ids), <plant>/overlays/, <plant>/leaf_area.png and report.html. "
               "Details: python -c "
               "'import leafseg.inference.track; help(leafseg.inference.track)'.")
    parser.add_argument("inputs", nargs="*", metavar="FOLDER",
                        help="one plant's photographs, a folder of such folders, or a flat folder of several "
                             "plants (split by the dates in the names or by --group-by)")
    add_model_arguments(parser, "keep detections scoring at least this")
    parser.add_argument("--out", default="tracks", help="output folder (created if missing; default: tracks)")
    parser.add_argument("--group-by", metavar="REGEX",
                        help="split a flat folder by plant: the regex's group 'plant' (or its first group, or the "
                             "whole match) names a photograph's plant (default: the name without its date, when "
                             "every name has one; else the folder is one plant)")
    parser.add_argument("--order", choices=("auto", "date", "exif", "name"), default="auto",
                        help="time order: the date (or day number) in the file name, the EXIF DateTimeOriginal, "
                             "or natural order of the names (default auto: date, else EXIF, else name); the order "
                             "used is written to order.csv")
    parser.add_argument("--max-gap", type=non_negative_int, default=3, metavar="N",
                        help="frames a leaf may be missed and still get its id back (default 3)")
    parser.add_argument("--min-frames", type=positive_int, default=1, metavar="N",
                        help="drop the tracks seen in fewer than N frames, except those starting in the last N - 1 "
                             "frames (default 1: keep every leaf found)")
    parser.add_argument("--mm-per-pixel", type=positive_float, help="pixel size: lengths in mm and areas in mm² "
                                                                     "(default: pixels)")
    parser.add_argument("--label-suffix", default=DEFAULT_LABEL_SUFFIX,
                        help="label images end with this (default %(default)s): input files named so are skipped, "
                             "track labels are named <image>SUFFIX")
    parser.add_argument("--no-overlays", dest="overlays", action="store_false",
                        help="do not write <plant>/overlays/ (faster on long series)")
    parser.add_argument("--no-report", dest="page", action="store_false",
                        help="do not write report.html (overlay thumbnails, the growth table, plots, outliers; "
                             "leafseg report OUT_DIR writes it later)")
    parser.add_argument("--overwrite", action="store_true",
                        help="segment every photograph again; by default a rerun into the same --out segments only "
                             "the photographs not done yet (with the same weights and options) and tracks again")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="images per model call (default: 4 on a GPU, 1 on a CPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="what the model computes in (default: float32)")
    add_runtime_argument(parser)
    add_plants_arguments(parser)
    add_tta_argument(parser, inputs=True)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    add_verbose_argument(parser)
    return parser


def run(args) -> int:
    setup_command_logging(args.verbose)
    inputs = [*args.tta_inputs, *args.inputs]
    if not inputs:
        print("track: error: no FOLDER given (one plant's photographs, or a folder of plants)", file=sys.stderr)
        return 2
    if not args.label_suffix.lower().endswith(".png"):
        print(f"track: error: --label-suffix must end with .png (labels are written as PNG), got "
              f"{args.label_suffix!r}", file=sys.stderr)
        return 2
    from leafseg.inference.results import SettingsMismatch, file_fingerprint
    from leafseg.inference.track import find_plants, order_frames, track_images

    try:  # the inputs and their order, checked before the model is loaded
        for plant, paths in find_plants(inputs, args.group_by, args.label_suffix).items():
            order_frames(paths, args.order, plant)
    except ValueError as err:
        print(f"track: error: {err}", file=sys.stderr)
        return 2
    try:
        overrides = parse_overrides(args.set)
        model, config_source, weights = load_inference_model(args.weights, args.config, args.min_score,
                                                             model_dir=args.out, precision=args.precision,
                                                             overrides=overrides, runtime=args.runtime)
    except (OSError, ValueError) as err:
        print(f"track: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"weights {weights}, config {config_source}{format_set(args.set)}, min score "
              f"{model.config.DETECTION_MIN_CONFIDENCE:g}" + (f", TTA {args.tta} views" if args.tta else ""),
              file=sys.stderr)
        from leafseg.models.runtime import runtime_line

        print(runtime_line(model), file=sys.stderr)
    if args.batch_size is None:
        from leafseg.inference.predict import default_batch_size

        args.batch_size = default_batch_size()
    try:
        report = track_images(model, inputs, args.out, group_by=args.group_by, order=args.order,
                              mm_per_pixel=args.mm_per_pixel, label_suffix=args.label_suffix,
                              overwrite=args.overwrite, batch_size=args.batch_size,
                              weights_id=file_fingerprint(weights) if Path(str(weights)).is_file() else None,
                              plants=args.plants, grid=args.grid, tta=args.tta, max_gap=args.max_gap,
                              min_frames=args.min_frames, overlays=args.overlays, page=args.page,
                              progress=not args.quiet)
    except (SettingsMismatch, ValueError) as err:
        print(f"track: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report.summary())
    if not report.plants:
        print("track: no photograph could be segmented", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """``leafseg track`` / ``scripts/track.py``: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
