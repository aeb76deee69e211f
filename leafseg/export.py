"""Export trained leaf weights as a TensorFlow SavedModel for serving, and check it.

    leafseg export --weights run/mask_rcnn_leaf_0040.weights.h5 --out exported/leaf
    python scripts/export.py ...          # the same command

The SavedModel takes one uint8 RGB image [H, W, 3] of any size and returns the detections in
that image's pixels, exactly what ``MaskRCNN.detect`` returns (rois, class_ids, scores, masks
bool [H, W, N]); see ``mrcnn.export`` for what happens inside. Load it with TensorFlow alone::

    served = tf.saved_model.load("exported/leaf")
    r = served.serve(tf.constant(image))            # or served.signatures["serving_default"](image=...)

Only uint8 images are taken: a float image is refused with an error naming its dtype and saying
how to convert it (``np.clip(image, 0, 255).astype(np.uint8)``, after ``* 255`` for values in
[0, 1]), never silently rescaled.

After writing, the command reloads the SavedModel and compares its detections with the Keras
model's on check images (``--check-image``, default: two generated rosettes, one square and one
not, so the resizing is exercised); the exit status is 1 when they differ, 2 on a usage or
model error. ``--min-score`` is baked into the export (the DETECTION_MIN_CONFIDENCE of the
graph). Weights and config are found as for ``leafseg predict``.
"""
from __future__ import annotations

import argparse
import sys

from leafseg.cliargs import add_model_arguments, add_verbose_argument, setup_command_logging
from leafseg.loading import load_inference_model

__all__ = ["check_images", "build_parser", "run", "main"]


def check_images(config, paths=()):
    """The images the export is checked on: ``paths`` read as RGB, or two generated rosettes."""
    from leafseg.predict import read_image
    from leafseg.synthetic import generate_rosette

    if paths:
        return [read_image(path) for path in paths]
    side = int(config.IMAGE_MAX_DIM or config.IMAGE_MIN_DIM or 256)
    return [generate_rosette(0, side).image, generate_rosette(1, (side * 3 // 4 + 1, side)).image]


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg export", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a model as a TensorFlow SavedModel (uint8 image in, detections out) and check that "
                    "it reloads and detects what the Keras model detects.",
        epilog="Details: python -c 'import mrcnn.export; help(mrcnn.export)'.")
    add_model_arguments(parser, "detection score cut-off to bake in")
    parser.add_argument("--out", required=True, help="the SavedModel folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--check-image", action="append", default=[], metavar="PATH",
                        help="an image to compare the SavedModel and the Keras model on (repeatable; "
                             "default: two generated rosettes)")
    parser.add_argument("--no-check", action="store_true", help="skip the reload-and-compare check")
    add_verbose_argument(parser)
    return parser


def run(args) -> int:
    setup_command_logging(args.verbose)
    from mrcnn.export import check_saved_model, export_saved_model

    try:
        model, config_source, weights = load_inference_model(args.weights, args.config, args.min_score,
                                                             model_dir=args.out)
        images = [] if args.no_check else check_images(model.config, args.check_image)
        path = export_saved_model(model, args.out, overwrite=args.overwrite)
    except (OSError, ValueError) as err:  # ImageReadError is an OSError
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (weights {weights}, config {config_source})")
    if args.no_check:
        return 0
    report = check_saved_model(model, path, images)
    for i, problems in enumerate(report):
        name = args.check_image[i] if args.check_image else f"generated rosette {i}"
        shape = "x".join(str(v) for v in images[i].shape[:2])
        print(f"check {name} ({shape}): " + ("same detections" if not problems else "; ".join(problems)))
    if any(report):
        print("export: the SavedModel's detections differ from the Keras model's (an untrained model's "
              "near-degenerate boxes can be that sensitive to float32 rounding; check on real images with "
              "--check-image)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """``leafseg export`` / ``scripts/export.py``: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
