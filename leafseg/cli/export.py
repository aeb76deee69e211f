"""The ``leafseg export`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.inference.export`."""
from __future__ import annotations

import argparse
import sys

from leafseg.cli.options import (add_model_arguments, add_verbose_argument, format_set, parse_overrides,
                                 setup_command_logging)
from leafseg.inference.export import FORMATS, check_images
from leafseg.models.loading import describe_weights, load_inference_model


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg export", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a model as a TensorFlow SavedModel (uint8 image in, detections out) or as OpenVINO "
                    "IR (the network; load it with mrcnn.openvino.load_openvino) and check that it reloads and "
                    "detects what the Keras model detects.",
        epilog="Details: python -c 'import mrcnn.export; help(mrcnn.export)' (SavedModel), "
               "python -c 'import mrcnn.openvino; help(mrcnn.openvino)' (OpenVINO).")
    add_model_arguments(parser, "detection score cut-off to bake in")
    parser.add_argument("--out", required=True, help="the folder to write (SavedModel, or OpenVINO model.xml, "
                        "classifier.xml, mask.xml, weights and config.yaml)")
    parser.add_argument("--format", choices=FORMATS, default="savedmodel",
                        help="savedmodel (default): TensorFlow SavedModel, image in, detections out; openvino: "
                             "OpenVINO IR of the network, molding and unmolding in numpy (needs pip install "
                             "'leafseg[openvino]')")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--check-image", action="append", default=[], metavar="PATH",
                        help="an image to compare the export and the Keras model on (repeatable; "
                             "default: two generated rosettes)")
    parser.add_argument("--no-check", action="store_true", help="skip the reload-and-compare check")
    add_verbose_argument(parser)
    return parser


def run(args) -> int:
    setup_command_logging(args.verbose)
    from leafseg.inference.export import check_export, write_export

    try:
        overrides = parse_overrides(args.set)
        model, config_source, weights = load_inference_model(args.weights, args.config, args.min_score,
                                                             model_dir=args.out, overrides=overrides)
        images = [] if args.no_check else check_images(model.config, args.check_image)
        path = write_export(model, args.out, args.format, overwrite=args.overwrite)
    except (OSError, ValueError, ImportError) as err:  # ImageReadError is an OSError; ImportError: no openvino
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    chosen = describe_weights(args.weights, weights)
    if chosen:
        print(chosen)
    print(f"wrote {path} (weights {weights}, config {config_source}{format_set(args.set)})")
    if args.no_check:
        return 0
    report = check_export(model, path, images, args.format)
    for i, problems in enumerate(report):
        name = args.check_image[i] if args.check_image else f"generated rosette {i}"
        shape = "x".join(str(v) for v in images[i].shape[:2])
        print(f"check {name} ({shape}): " + ("same detections" if not problems else "; ".join(problems)))
    if any(report):
        kind = "SavedModel" if args.format == "savedmodel" else "OpenVINO model"
        print(f"export: the {kind}'s detections differ from the Keras model's (an untrained model's "
              "near-degenerate boxes can be that sensitive to float32 rounding; check on real images with "
              "--check-image)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """``leafseg export`` / ``scripts/export.py``: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
