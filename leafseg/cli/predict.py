"""The ``leafseg predict`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.inference.predict`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from leafseg.cli.options import (add_model_arguments, add_plants_arguments, add_runtime_argument, add_tta_argument,
                                 add_verbose_argument,
                                 counted, format_set, parse_overrides, positive_float, positive_int,
                                 setup_command_logging)
from leafseg.data.prepare import DEFAULT_LABEL_SUFFIX
from leafseg.models.runtime import choose_runtime, runtime_line
from leafseg.inference.predict import (COCO_FORMATS, default_batch_size, find_inputs, images_in_subfolders,
                                       predict_images)
from leafseg.models.loading import describe_weights, load_inference_model
from leafseg.precision import PRECISIONS

logger = logging.getLogger("leafseg.predict")


class _CocoJsonAction(argparse.Action):
    """``--coco-json [rle|polygons]``. A value that is neither is an input, as before the option
    took a value: ``--coco-json photos/`` is ``--coco-json rle photos/``."""

    def __call__(self, parser, namespace, value, option_string=None):
        if value not in COCO_FORMATS:
            namespace.coco_json_inputs = [value]
            value = self.const
        setattr(namespace, self.dest, value)


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg predict", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Segment and measure the leaves of images with a trained model.",
        epilog="Outputs: overlays/<name>_overlay.png, labels/<name>_label.png (CVPPP palette PNGs, named "
               "as leafseg prepare pairs them with <name>_rgb.png), plants/<name>_plants.png (value = plant "
               "id), leaves.csv (a row per leaf, with its plant), plants.csv (a row per plant) and, with "
               "--coco-json, predictions_coco.json. Details: python -c 'import leafseg.inference.predict; "
               "help(leafseg.inference.predict)'.")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or glob patterns")
    add_model_arguments(parser, "keep detections scoring at least this")
    parser.add_argument("--out", default="predictions", help="output folder (created if missing; default: predictions)")
    parser.add_argument("--mm-per-pixel", type=positive_float, help="pixel size: lengths in mm and areas in mm² "
                                                               "(default: pixels)")
    parser.add_argument("--coco-json", nargs="?", const="rle", action=_CocoJsonAction, metavar="{rle,polygons}",
                        help="also write predictions_coco.json, masks as compressed RLE (the default; exact, "
                             "CVAT) or polygons (Label Studio; holes filled); any other value is an input")
    parser.set_defaults(coco_json_inputs=[])
    parser.add_argument("--label-suffix", default=DEFAULT_LABEL_SUFFIX,
                        help="label images end with this (as for leafseg prepare; default %(default)s): input "
                             "files named so are skipped, predicted labels are named <name>SUFFIX")
    parser.add_argument("--include-labels", action="store_true",
                        help="also predict input files that look like label images (*SUFFIX, CVPPP *_fg.png, "
                             "*_centers.png), skipped by default")
    parser.add_argument("--recursive", action="store_true",
                        help="also predict the images in the input folders' subfolders; their outputs keep the "
                             "subfolder (overlays/SUB/<name>_overlay.png, SUB/<name> in the CSVs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="predict every image again; by default a rerun into the same --out predicts only the "
                             "images not done yet (with the same weights and options)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="images per model call (default: 4 on a GPU, 1 on a CPU, where more is not faster)")
    parser.add_argument("--cluster", metavar="local:N|tcp://HOST:PORT|FILE.yaml",
                        help="predict on a Dask cluster: N local worker processes, a running scheduler, or a "
                             "SLURM / HTCondor / PBS cluster file (needs pip install 'leafseg[cluster]'; see "
                             "python -c 'import leafseg.inference.cluster; help(leafseg.inference.cluster)')")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="what the model computes in (default: float32); bfloat16 is faster on GPUs from "
                             "Ampere on and CPUs with bfloat16 units (avx512_bf16, amx_bf16), float16 on GPUs")
    add_runtime_argument(parser)
    add_plants_arguments(parser)
    add_tta_argument(parser, inputs=True)
    parser.add_argument("--no-report", action="store_true",
                        help="do not write report.html (one page: outliers, growth curves, the sortable plant table, "
                             "overlay thumbnails; leafseg report OUT_DIR writes it later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    add_verbose_argument(parser)
    return parser



def run(args) -> int:
    setup_command_logging(args.verbose)
    inputs = [*args.coco_json_inputs, *args.tta_inputs, *args.inputs]
    if not inputs:
        print("predict: error: no INPUT given (image files, folders or glob patterns)", file=sys.stderr)
        return 2
    if not args.label_suffix.lower().endswith(".png"):
        print(f"predict: error: --label-suffix must end with .png (labels are written as PNG), got "
              f"{args.label_suffix!r}", file=sys.stderr)
        return 2
    if not args.recursive:  # photographs kept in subfolders: say so before the model is loaded
        nested = images_in_subfolders(inputs, exclude=args.out,
                                      label_suffix=None if args.include_labels else args.label_suffix)
        if nested and not find_inputs(inputs, exclude=args.out,
                                      label_suffix=None if args.include_labels else args.label_suffix)[0]:
            for folder, subfolders in nested:
                shown = ", ".join(f"{sub.name}/ ({counted(count, 'image')})" for sub, count in subfolders)
                print(f"predict: error: {folder} holds no image itself, but its subfolders do: {shown}; pass "
                      "--recursive to predict them (their outputs keep the subfolder)", file=sys.stderr)
            return 2
        for folder, subfolders in nested:
            logger.warning("%s holds no image itself, only its subfolders (%s): pass --recursive to predict them",
                           folder, ", ".join(f"{sub.name}/" for sub, _ in subfolders))
    from leafseg.inference.cluster import ClusterError, ModelSpec, check_cluster
    from leafseg.inference.results import SettingsMismatch, file_fingerprint

    try:
        overrides = parse_overrides(args.set)
        if args.cluster:  # (each worker picks its default batch size for its own device)
            check_cluster(args.cluster)
            # (the runtime is chosen here, where the run's settings are written: every worker then runs it)
            runtime = choose_runtime(args.runtime, args.precision)
            model = ModelSpec(args.weights, args.config, args.min_score, args.batch_size, args.precision, overrides,
                              runtime=str(runtime))
            config = model.config_object()
            weights, config_source = model.weights_path(), args.config or "the weights file"
        else:
            model, config_source, weights = load_inference_model(args.weights, args.config, args.min_score,
                                                                 model_dir=args.out, precision=args.precision,
                                                                 overrides=overrides, runtime=args.runtime)
            config, runtime = model.config, None
    except (OSError, ValueError) as err:
        print(f"predict: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        chosen = describe_weights(args.weights, weights)
        if chosen:
            print(chosen, file=sys.stderr)
        overlap = config.DETECTION_MASK_OVERLAP_THRESHOLD
        print(f"weights {weights}, config {config_source}{format_set(args.set)}, "
              f"min score {config.DETECTION_MIN_CONFIDENCE:g}"
              + (f", mask overlap {overlap:g}" if overlap is not None else "")
              + (f", TTA {counted(args.tta, 'view')}" if args.tta else "")
              + (f", cluster {args.cluster}" if args.cluster else ""), file=sys.stderr)
        print(runtime_line(model, runtime), file=sys.stderr)
    try:
        report = predict_images(model, inputs, args.out, mm_per_pixel=args.mm_per_pixel, coco_json=args.coco_json,
                                progress=not args.quiet, label_suffix=args.label_suffix,
                                include_labels=args.include_labels, overwrite=args.overwrite,
                                batch_size=args.batch_size or (None if args.cluster else default_batch_size()),
                                weights_id=file_fingerprint(weights) if Path(weights).is_file() else None,
                                cluster=args.cluster, plants=args.plants, grid=args.grid, tta=args.tta,
                                recursive=args.recursive)
    except (SettingsMismatch, ClusterError) as err:
        print(f"predict: error: {err}", file=sys.stderr)
        return 2
    if report.predicted and not args.no_report:
        from leafseg.inference.report import report_from_predict_output

        try:
            report.outputs["report.html"] = report_from_predict_output(args.out)
        except (OSError, ValueError) as err:  # (the predictions stand; leafseg report OUT_DIR retries)
            print(f"predict: warning: report.html not written: {err}", file=sys.stderr)
    if not args.quiet:
        print(report.summary())
    if not report.predicted:
        print("predict: no image could be predicted", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    """``leafseg predict`` / ``scripts/predict.py``: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
