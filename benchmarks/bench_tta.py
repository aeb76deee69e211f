"""Test-time augmentation, measured: a model's SBD, |DiC|, mask AP50 and time per image with 1, 2
and 4 views (8 on request), as ``leafseg evaluate --tta N`` detects.

    python benchmarks/bench_tta.py                                  # leaf-small, 20 held-out rosettes per set
    python benchmarks/bench_tta.py --views 1,2,4,8 --images 50
    python benchmarks/bench_tta.py --dataset data/leaves --weights RUN   # a labelled folder of your own
    python benchmarks/bench_tta.py --images 3 --sets classic        # a quick look

The data: ``--dataset`` (a prepared layout, its val images, or a raw image + label folder, every
image: ``leafseg.measure.evaluate.load_eval_dataset`` with ``--subset``), or by default held-out
rosettes of 500 px that ``leafseg.synth.rosettes.write_dataset`` draws into a temporary folder
(``--data`` keeps them): the sets and seeds of leaf-small's card (``leafseg.training.recipe``'s
HELD_OUT from the recipe's seed 2026: random, classic, cluttered), which the model never trained
on.

For each view count the model goes through ``leafseg.inference.plants.PlantsFirst`` as the commands
send it (1 view: the model itself, ``leafseg evaluate`` without ``--tta``; N: ``PlantsFirst(TTAModel(
model, N))``), detects once untimed (tracing), then every image is detected (timed call by call)
and scored as evaluate scores it (``leafseg.measure.evaluate.evaluate_model``): SBD, |DiC| and
mask AP50 (the mean of per-image AP). Also the detections per image. TTA should cost N times
the time of one view; what it buys is the SBD and |DiC| change. Prints a Markdown table per set,
then one JSON line (prefix ``json:``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE_SEED = 2026  # leafseg.training.recipe.leaf_small's seed; HELD_OUT's offsets are added to it
SIZE = 500


class Timed:
    """A detector whose ``detect`` is timed call by call (evaluate_model calls it once per image)."""

    def __init__(self, detector):
        self.detector, self.config = detector, detector.config
        self.seconds = []

    def detect(self, images, verbose=0):
        started = time.perf_counter()
        try:
            return self.detector.detect(images)
        finally:
            self.seconds.append(time.perf_counter() - started)


def held_out_sets(names, count, folder):
    """{set name: evaluation dataset} of leaf-small's held-out rosettes, drawn into ``folder``."""
    from leafseg.measure.evaluate import load_eval_dataset
    from leafseg.synth.rosettes import write_dataset
    from leafseg.training.recipe import HELD_OUT

    known = {name: (style, offset, clutter) for name, style, offset, _, clutter in HELD_OUT}
    sets = {}
    for name in names:
        if name not in known:
            raise SystemExit(f"--sets: {name!r} is not one of {', '.join(known)}")
        style, offset, clutter = known[name]
        write_dataset(folder / name, count, seed=RECIPE_SEED + offset, size=SIZE, style=style, clutter=clutter,
                      progress=False)
        sets[name] = load_eval_dataset(folder / name, "all")
    return sets


def detector(model, views):
    from leafseg.inference.plants import PlantsFirst
    from leafseg.inference.tta import TTAModel

    return PlantsFirst(TTAModel(model, views) if views > 1 else model)


def bench(model, views, dataset, image_ids):
    """The figures of ``model`` with ``views`` views on ``image_ids`` of ``dataset``."""
    from leafseg.measure.evaluate import evaluate_model

    timed = Timed(detector(model, views))
    started = time.perf_counter()
    timed.detect([dataset.load_image(image_ids[0])])  # traces the graph(s)
    first = time.perf_counter() - started
    timed.seconds.clear()
    per_image, summary = evaluate_model(timed, dataset, image_ids, progress=False)
    return {"views": views, "images": len(image_ids), "s_per_image": float(np.mean(timed.seconds)),
            "min_s": float(np.min(timed.seconds)), "first_s": first, "sbd": summary["sbd_mean"],
            "abs_dic": summary["abs_dic_mean"], "dic": summary["dic_mean"], "ap50": summary["ap50_mean"],
            "detections": float(np.mean([row["pred_count"] for row in per_image]))}


def table(name, rows):
    """One set's figures as a Markdown table, each view count against one view."""
    base = rows[0]
    lines = [f"{name}:", ("| views | images | SBD | SBD change | abs DiC | DiC | mask AP50 | leaves / image "
                          "| s / image | x 1 view |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['views']} | {r['images']} | {r['sbd']:.4f} | {r['sbd'] - base['sbd']:+.4f} | "
                     f"{r['abs_dic']:.2f} | {r['dic']:+.2f} | {r['ap50']:.3f} | {r['detections']:.1f} | "
                     f"{r['s_per_image']:.2f} | {r['s_per_image'] / base['s_per_image']:.1f} |")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--weights", default="leaf-small", help="a zoo name, weights file or run folder "
                                                                "(default leaf-small)")
    parser.add_argument("--config", help="its config: preset, YAML file or run folder (default: the one stored "
                                         "in the weights)")
    parser.add_argument("--dataset", help="a prepared or raw image + label folder (default: held-out rosettes)")
    parser.add_argument("--subset", default="auto", help="of --dataset, as for leafseg evaluate (default auto)")
    parser.add_argument("--sets", default="random,classic,cluttered",
                        help="held-out rosette sets without --dataset, comma-separated (default all three)")
    parser.add_argument("--images", type=int, default=20, help="images per set (default 20)")
    parser.add_argument("--data", metavar="DIR", help="keep the drawn rosettes in DIR (default: a temporary folder)")
    parser.add_argument("--views", default="1,2,4", help="view counts, comma-separated, of 1, 2, 4, 8 (default "
                                                         "1,2,4); the first is the reference")
    parser.add_argument("--verbose", action="store_true", help="keep TensorFlow's log lines")
    return parser


def run(args):
    from leafseg.cli.options import quiet_tensorflow
    from leafseg.inference.tta import view_names

    views = [int(v) for v in args.views.split(",") if v.strip()]
    for count in views:
        try:
            view_names(count)
        except ValueError as err:
            raise SystemExit(f"--views {args.views}: {err}") from err
    if args.images < 1:
        raise SystemExit(f"--images must be at least 1, got {args.images}")
    quiet_tensorflow(args.verbose)
    from leafseg.measure.evaluate import load_eval_dataset
    from leafseg.models.loading import load_inference_model

    result = {"weights": args.weights, "config": args.config, "views": views, "cpus": os.cpu_count(),
              "load_avg_start": os.getloadavg()[0], "sets": {}}
    with tempfile.TemporaryDirectory() as scratch:
        model, _, _ = load_inference_model(args.weights, args.config, model_dir=scratch)
        if args.dataset:
            sets = {Path(args.dataset).name: load_eval_dataset(args.dataset, args.subset)}
        else:
            folder = Path(args.data) if args.data else Path(scratch) / "rosettes"
            sets = held_out_sets([s.strip() for s in args.sets.split(",") if s.strip()], args.images, folder)
        for name, dataset in sets.items():
            image_ids = list(dataset.image_ids)[:args.images]
            rows = []
            for count in views:
                rows.append(bench(model, count, dataset, image_ids))
                print(json.dumps({"set": name, **{k: round(v, 4) if isinstance(v, float) else v
                                                  for k, v in rows[-1].items()}}), flush=True)
            result["sets"][name] = rows
            print(table(name, rows), flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    print(f"(load average {result['load_avg_start']:.2f} at the start, {result['load_avg_end']:.2f} at the end)")
    print("json: " + json.dumps(result))
    return result


def main(argv=None):
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
