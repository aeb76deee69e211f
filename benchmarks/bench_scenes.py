"""Whole scenes, measured: leaf-small on synthetic trays and dishes, whole versus plants first.

    python benchmarks/bench_scenes.py                       # 6 trays (random), 6 (classic), 6 dishes
    python benchmarks/bench_scenes.py --count 3 --out /tmp/scenes --modes auto,one

Scoring a 3-megapixel scene of 180 leaves takes about 40 s (the metrics, not the model): the
default run takes about half an hour on 2 cores.

For each scene set (drawn by ``leafseg.synth.trays.write_scenes`` with their exact leaf and
plant labels, seeds the model never trained on) and each way of sending a photograph to the
model, it runs ``leafseg.measure.evaluate.evaluate_dataset`` and prints SBD, |DiC|, mask AP50 and
the per-plant figures (plants found, invented, missed, |DiC| and SBD per plant), and the time
of the model (detection only, scoring left out) per photograph, per plant found and per
megapixel, against one pot photograph (a 500 px
rosette) through the same model. The ways:

* ``one``: the whole photograph, shrunk to the model's size (leafseg before plants first);
* ``auto``: plants first, the plants found by the model's own leaves over tiles (the default);
* ``vegetation``: plants first, the plants found by the excess-green index;
* ``tiles``: the leaves of the tiles that ``auto`` uses to find plants, merged (SAHI-style
  sliced inference: each tile at most 2x shrunk; a leaf cut by a seam is kept from the tile in
  which it lies furthest from the edge) - the alternative design to plant crops.

Results go to OUT/results.json and a markdown table on stdout (docs/SCENES.md keeps them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = {  # name: (scene, style, seed, the ways measured by default)
    "trays (random style)": ("tray", "random", 9101, "one,auto,vegetation,tiles"),
    "trays (classic style)": ("tray", "classic", 9102, "one,auto"),
    "dishes": ("dish", None, 9103, "one,auto,vegetation"),
}


class TiledModel:
    """SAHI-style sliced inference over leafseg.inference.plants.search_tiles:
    every tile's leaves, a leaf cut by a seam kept once (from the tile whose centre is nearest
    the leaf's centre)."""

    def __init__(self, model):
        self.model, self.config = model, model.config

    def detect(self, images, verbose=0):
        from leafseg.inference.plants import CROPS_PER_CALL, search_tiles

        results = []
        for image in images:
            height, width = image.shape[:2]
            boxes = search_tiles(image.shape, self.config.IMAGE_MAX_DIM)
            centres = np.array([((y1 + y2) / 2, (x1 + x2) / 2) for y1, x1, y2, x2 in boxes])
            kept = []
            for start in range(0, len(boxes), CROPS_PER_CALL):
                chunk = boxes[start:start + CROPS_PER_CALL]
                for index, ((y1, x1, y2, x2), result) in enumerate(
                        zip(chunk, self.model.detect([image[y1:y2, x1:x2] for y1, x1, y2, x2 in chunk]))):
                    for k in range(len(result["scores"])):
                        ys, xs = np.nonzero(result["masks"][..., k])
                        if not len(ys):
                            continue
                        centre = np.array([ys.mean() + y1, xs.mean() + x1])
                        if np.argmin(((centres - centre) ** 2).sum(axis=1)) != start + index:
                            continue  # another tile sees this leaf nearer its middle
                        kept.append((float(result["scores"][k]), int(result["class_ids"][k]),
                                     np.asarray(result["rois"][k]) + [y1, x1, y1, x1], (y1, x1, y2, x2),
                                     result["masks"][..., k]))
            masks = np.zeros((height, width, len(kept)), bool)
            for k, (_, _, _, (y1, x1, y2, x2), mask) in enumerate(kept):
                masks[y1:y2, x1:x2, k] = mask
            results.append({"rois": np.array([leaf[2] for leaf in kept], np.int32).reshape(-1, 4),
                            "class_ids": np.array([leaf[1] for leaf in kept], np.int32),
                            "scores": np.array([leaf[0] for leaf in kept], np.float32), "masks": masks})
        return results


class Timed:
    """A detector's ``detect`` with its seconds added up (the scoring's time is not the model's)."""

    def __init__(self, detector):
        self.detector, self.config, self.seconds = detector, detector.config, 0.0

    def detect(self, images, verbose=0):
        started = time.perf_counter()
        try:
            return self.detector.detect(images)
        finally:
            self.seconds += time.perf_counter() - started


def wrapped(model, mode):
    from leafseg.inference.plants import PlantsFirst

    if mode == "tiles":
        return Timed(TiledModel(model))
    if mode == "vegetation":
        return Timed(PlantsFirst(model, "auto", finder="vegetation"))
    return Timed(PlantsFirst(model, mode))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench-scenes", help="working folder (default: runs/bench-scenes)")
    parser.add_argument("--count", type=int, default=6, help="scenes per set (default 6)")
    parser.add_argument("--modes", help="ways to compare, comma-separated (default: each set's own)")
    parser.add_argument("--sets", default=",".join(SETS), help="scene sets, comma-separated")
    parser.add_argument("--weights", default="leaf-small")
    parser.add_argument("--time-only", action="store_true",
                        help="time the model on the scenes (3 runs each, the fastest) without scoring them")
    args = parser.parse_args(argv)

    from leafseg.cli.options import quiet_tensorflow

    quiet_tensorflow()
    from leafseg.data.dataset import LeafDataset
    from leafseg.measure.evaluate import evaluate_dataset
    from leafseg.models.loading import load_inference_model
    from leafseg.synth.rosettes import generate_rosette
    from leafseg.synth.trays import write_scenes

    out = Path(args.out)
    model, _, _ = load_inference_model(args.weights)
    pot = generate_rosette(1, 500, style="random").image
    model.detect([pot])  # warm-up
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        model.detect([pot])
        runs.append(time.perf_counter() - started)
    pot_seconds = min(runs)
    print(f"one pot photograph (500 x 500 px, 0.25 MP): {pot_seconds:.2f} s", flush=True)
    records = {"pot_seconds": pot_seconds, "sets": {}}
    for set_name in args.sets.split(","):
        scene, style, seed, modes = SETS[set_name]
        folder = out / "data" / set_name.split()[0] / (style or "default")
        write_scenes(folder, args.count, seed=seed, scene=scene, style=style, progress=False)
        dataset = LeafDataset()
        dataset.load_color_masks(folder)
        dataset.prepare()
        for mode in (args.modes or modes).split(","):
            detector = wrapped(model, mode)
            if args.time_only:
                images = [dataset.load_image(i) for i in dataset.image_ids]
                best = []
                for image in images:
                    runs = []
                    for _ in range(3):
                        detector.seconds = 0.0
                        found = len(detector.detect([image])[0].get("plants") or [1])
                        runs.append(detector.seconds)
                    best.append((min(runs), found, image.shape[0] * image.shape[1] / 1e6))
                seconds, plants, megapixels = (float(np.mean(column)) for column in zip(*best))
                record = {"seconds_per_image": seconds, "plants_per_image": plants, "megapixels": megapixels,
                          "seconds_per_plant": seconds / plants, "seconds_per_megapixel": seconds / megapixels,
                          "vs_one_pot": seconds / pot_seconds}
                records["sets"].setdefault(set_name, {})[mode] = record
                print(json.dumps({"set": set_name, "mode": mode, **{k: round(v, 3) for k, v in record.items()}}),
                      flush=True)
                continue
            per_image, summary, _ = evaluate_dataset(detector, dataset, out / "eval" / folder.name / mode, gallery=0,
                                                     progress=False)
            seconds = detector.seconds / len(per_image)
            megapixels = np.mean([np.prod(dataset.load_image(i).shape[:2]) for i in dataset.image_ids]) / 1e6
            found = summary.get("plants_found_mean") or 0
            invented = summary.get("plants_invented_mean") or 0
            record = {"sbd": summary["sbd_mean"], "abs_dic": summary["abs_dic_mean"], "ap50": summary.get("pooled_ap50"),
                      "plants_true": summary.get("plants_true_mean"), "plants_found": found,
                      "plants_invented": invented, "plants_missed": summary.get("plants_missed_mean"),
                      "plant_abs_dic": summary.get("plant_abs_dic_mean"), "plant_sbd": summary.get("plant_sbd_mean"),
                      "seconds_per_image": seconds, "megapixels": megapixels,
                      "seconds_per_megapixel": seconds / megapixels,
                      "seconds_per_plant": seconds / max(found + invented, 1),
                      "vs_one_pot": seconds / pot_seconds}
            records["sets"].setdefault(set_name, {})[mode] = record
            print(json.dumps({"set": set_name, "mode": mode, **{k: round(v, 3) if isinstance(v, float) else v
                                                                 for k, v in record.items()}}), flush=True)
    (out / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    if args.time_only:
        return 0
    print("\n| scenes | way | SBD | abs DiC | AP50 | plants found / invented / missed | plant abs DiC | plant SBD "
          "| s / image | s / plant | s / MP | x one pot |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for set_name, modes in records["sets"].items():
        for mode, r in modes.items():
            print(f"| {set_name} | {mode} | {fmt(r['sbd'])} | {fmt(r['abs_dic'], 1)} | {fmt(r['ap50'])} | "
                  f"{fmt(r['plants_found'], 1)} / {fmt(r['plants_invented'], 1)} / {fmt(r['plants_missed'], 1)} | "
                  f"{fmt(r['plant_abs_dic'], 2)} | {fmt(r['plant_sbd'])} | {r['seconds_per_image']:.1f} | "
                  f"{r['seconds_per_plant']:.2f} | {r['seconds_per_megapixel']:.1f} | {r['vs_one_pot']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
