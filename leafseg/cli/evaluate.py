"""The ``leafseg evaluate`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.measure.evaluate`."""
from __future__ import annotations

import argparse
import json
import sys

from leafseg.cli.options import (add_model_arguments, add_plants_arguments, add_runtime_argument, add_tta_argument,
                                 add_verbose_argument,
                                 counted, format_set, parse_overrides, positive_int, setup_command_logging)
from leafseg.inference.plants import PlantsFirst
from leafseg.models.runtime import runtime_line, runtime_setting
from leafseg.inference.tta import TTAModel
from leafseg.config import class_names
from leafseg.measure.evaluate import (SUBSET_CHOICES, evaluate_dataset, format_ap50_comparison, format_class_table,
                                      format_coco_table, format_definitions, load_eval_dataset, resolve_subset)
from leafseg.measure.metrics import format_summary
from leafseg.models.loading import describe_weights, load_inference_model


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score a trained model on images with known leaves: CVPPP SBD / FBD / DiC, mask AP50, "
                    "COCO AP for masks and boxes.",
        epilog="Outputs: metrics.json, per_image.csv, summary.csv, pr_curve.png, gallery.png; for scenes whose "
               "raw folder has <sample>_plants.png beside <sample>_label.png, per-plant columns and per_plant.csv; "
               "for a data set of several classes (classes.json), per_class.csv and a table per class. "
               "Definitions: python -c 'import leafseg.measure.evaluate; help(leafseg.measure.evaluate)'.")
    add_model_arguments(parser, "keep detections scoring at least this")
    parser.add_argument("--dataset", required=True, help="prepared folder (DIR/<subset>/<id>/...) or raw image + "
                                                         "label folder")
    parser.add_argument("--subset", default="auto", choices=SUBSET_CHOICES,
                        help="auto (default): val of a prepared layout, every image of a raw folder; train / val "
                             "of a raw folder: the part leafseg prepare would put there; all: every image")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    parser.add_argument("--gallery", type=int, default=6, help="images in gallery.png, 0 for none (default 6)")
    add_runtime_argument(parser)
    add_plants_arguments(parser)
    add_tta_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_verbose_argument(parser)
    return parser


def run(args) -> int:
    setup_command_logging(args.verbose)
    try:
        overrides = parse_overrides(args.set)
        dataset = load_eval_dataset(args.dataset, args.subset)
        model, config_source, weights = load_inference_model(args.weights, args.config, args.min_score,
                                                             model_dir=args.out, overrides=overrides,
                                                             runtime=args.runtime)
    except (OSError, ValueError) as err:
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 2
    config = getattr(model, "config", None)  # (None: a stand-in that only detects)
    model_classes, data_classes = class_names(config) if config else None, list(dataset.class_names)[1:]
    if model_classes is not None and model_classes != data_classes:
        print(f"evaluate: error: the model's classes {model_classes} (ids 1.. in this order, from {config_source}) "
              f"are not those of {args.dataset}: {data_classes}", file=sys.stderr)
        return 2
    image_ids = list(dataset.image_ids)[:args.limit] if args.limit else list(dataset.image_ids)
    if not args.quiet:
        chosen = describe_weights(args.weights, weights)
        if chosen:
            print(chosen, file=sys.stderr)
        subset = resolve_subset(args.dataset, args.subset)
        shown = subset + (" (auto)" if args.subset == "auto" else "")
        print(f"evaluating {counted(len(image_ids), 'image')} of {args.dataset} (subset {shown}) with {weights}, "
              f"config {config_source}{format_set(args.set)}"
              + (f", TTA {counted(args.tta, 'view')}" if args.tta else ""),
              file=sys.stderr)
        print(runtime_line(model), file=sys.stderr)
    settings = {"weights": str(weights), "config": config_source, "overrides": overrides, "min_score": args.min_score,
                "plants": args.plants, "grid": list(args.grid) if args.grid else None,
                "runtime": runtime_setting(model)}
    if args.tta:  # (recorded only when on: the settings of a run without it are as before)
        settings["tta"] = args.tta
        model = TTAModel(model, args.tta)
    model = PlantsFirst(model, args.plants, args.grid)
    _, summary, outputs = evaluate_dataset(model, dataset, args.out, image_ids, gallery=args.gallery,
                                           progress=not args.quiet, settings=settings)
    print(format_summary(summary))
    print()
    print(format_ap50_comparison(summary))
    print()
    print(format_coco_table(summary))
    print()
    per_class = json.loads(outputs["metrics.json"].read_text(encoding="utf-8")).get("per_class")
    if per_class:  # a data set of several classes: each class alone
        print(format_class_table(per_class))
        print()
    print(format_definitions())
    print()
    for name, path in outputs.items():
        print(f"  {name:14} {path}")
    return 0


def main(argv=None) -> int:
    """``leafseg evaluate`` / ``scripts/evaluate.py``: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
