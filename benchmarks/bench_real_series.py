"""Models on real time-lapse photographs without labels: how smoothly each one's leaf counts and
areas follow a plant from day to day (leafseg.measure.series), side by side.

    python benchmarks/bench_real_series.py --photos PHOTOS --weights leaf-small,runs/adapt/ --out /tmp/series
    python benchmarks/bench_real_series.py --photos PHOTOS --weights leaf-small --tta 4 --every 2

PHOTOS is a folder (searched recursively) of photographs of the same plants day after day, the
date in each file's name (``..._2016_10_01_...``); the plant is the name without its date
(``leafseg.measure.series.plant_key``) or ``--plant REGEX``'s group ``plant``. By default only the
held-out plants are used (``series.held_out_plants``: a quarter of the plants, chosen by a hash of
their name): a model adapted on the others' photographs (``leafseg adapt``) is judged on plants
it never saw. ``--all-plants`` uses every plant.

For each model it prints the series figures (count_jitter, count_falls, area_jitter: lower is
smoother), the mean leaf count on the first, middle and last days, and the seconds per
photograph; it writes OUT/rows.csv (one row per photograph and model), OUT/results.json,
OUT/growth.png (leaf count and rosette area against day, per model) and OUT/sheet.png (the same
few plants on three days, one column per model) to judge by eye.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", required=True, help="folder of time-lapse photographs (recursive)")
    parser.add_argument("--weights", default="leaf-small",
                        help="comma-separated models: zoo names, weights files or folders (default: leaf-small)")
    parser.add_argument("--plant", default=None, help="regular expression whose group 'plant' names a photograph's plant")
    parser.add_argument("--all-plants", action="store_true", help="use every plant, not only the held-out quarter")
    parser.add_argument("--every", type=int, default=1, help="every Nth day of each plant (default: 1, every day)")
    parser.add_argument("--max-plants", type=int, default=0, help="at most this many plants (0: all)")
    parser.add_argument("--tta", type=int, default=1, help="test-time augmentation views (default 1: none)")
    parser.add_argument("--min-score", type=float, default=None, help="the models' cut-off (default: their own)")
    parser.add_argument("--out", default="/tmp/leafseg_real_series", help="output folder")
    return parser.parse_args(argv)


def photographs(folder, pattern, all_plants, every, max_plants):
    """{plant: [(time, path), ...]} of the plants measured, in time order."""
    from leafseg.measure.series import group_series, held_out_plants

    paths = {path.stem: path for path in sorted(Path(folder).rglob("*"))
             if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff")}
    series = group_series(paths, pattern)
    keep = set(series) if all_plants else held_out_plants(series)
    chosen = sorted(keep)[:max_plants or None]
    return {key: [(when, paths[name]) for when, name in series[key][::every]] for key in chosen}


def run_model(weights, plants, tta, min_score):
    """One row per photograph: plant, time, day (index in its series), leaves, area; and seconds
    per photograph (the model only)."""
    from leafseg.inference.predict import read_image, visible_leaves
    from leafseg.models.loading import load_inference_model

    model, _, path = load_inference_model(weights, min_score=min_score)
    if tta > 1:
        from leafseg.inference.tta import TTAModel
        model = TTAModel(model, views=tta)
    rows, seconds, results = [], 0.0, {}
    for plant, items in plants.items():
        for day, (when, photo) in enumerate(items):
            image = read_image(photo)
            start = time.perf_counter()
            result = model.detect([image], verbose=0)[0]
            seconds += time.perf_counter() - start
            label, visible, _ = visible_leaves(result)
            rows.append({"model": str(weights), "plant": plant, "time": when.isoformat(), "day": day,
                         "photo": photo.name, "leaves": int(visible.shape[-1]), "area": int((label > 0).sum())})
            results[(plant, day)] = (image, visible)
    return rows, seconds / max(1, len(rows)), path, results


def growth_picture(rows_by_model, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, (model, rows) in enumerate(rows_by_model.items()):
        days = max(row["day"] for row in rows) + 1
        counts = np.full((len({r["plant"] for r in rows}), days), np.nan)
        areas = counts.copy()
        index = {plant: i for i, plant in enumerate(sorted({r["plant"] for r in rows}))}
        for row in rows:
            counts[index[row["plant"]], row["day"]] = row["leaves"]
            areas[index[row["plant"]], row["day"]] = row["area"]
        colour = f"C{k}"
        for series, ax in ((counts, axes[0]), (areas, axes[1])):
            for line in series[:8]:
                ax.plot(line, color=colour, alpha=0.25, lw=0.8)
            ax.plot(np.nanmean(series, axis=0), color=colour, lw=2, label=model)
    axes[0].set(xlabel="photograph (day order)", ylabel="leaves", title="leaf count (8 plants; mean bold)")
    axes[1].set(xlabel="photograph (day order)", ylabel="pixels", title="rosette area", yscale="log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def contact_sheet(results_by_model, plants, out, columns_per_plant=3, count=4):
    import cv2

    from mrcnn import visualize
    from leafseg.inference.predict import leaf_palette

    rows = []
    for plant in list(plants)[:count]:
        n = len(plants[plant])
        for day in sorted({0, n // 2, n - 1})[:columns_per_plant]:
            tiles = []
            for results in results_by_model.values():
                image, visible = results[(plant, day)]
                colors = leaf_palette(255)[np.arange(visible.shape[-1]) % 255]
                tile = visualize.draw_instances(image, visible, labels=[str(i + 1) for i in range(visible.shape[-1])],
                                                colors=colors)
                tiles.append(cv2.resize(np.hstack([image, tile]), (480, 240)))
            rows.append(np.hstack(tiles))
    visualize.save_image(np.vstack(rows), out)


def main(argv=None):
    args = parse_args(argv)
    from leafseg.measure.series import SERIES_FIGURES, series_roughness

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plants = photographs(args.photos, args.plant, args.all_plants, args.every, args.max_plants)
    total = sum(len(v) for v in plants.values())
    print(f"{len(plants)} plants, {total} photographs ({'all' if args.all_plants else 'held-out'} plants)")
    rows_by_model, results_by_model, summary = {}, {}, {}
    for weights in [w for w in args.weights.split(",") if w]:
        rows, per_photo, path, results = run_model(weights, plants, args.tta, args.min_score)
        figures = series_roughness(rows)
        days = max(row["day"] for row in rows) + 1
        mean_at = {d: float(np.mean([r["leaves"] for r in rows if r["day"] == d])) for d in (0, days // 2, days - 1)}
        summary[weights] = {"weights": str(path), "seconds_per_photo": per_photo, "tta": args.tta,
                            "mean_leaves": mean_at, **{k: figures[k] for k in ("plants", "photographs", *SERIES_FIGURES)}}
        rows_by_model[weights], results_by_model[weights] = rows, results
        print(f"  {weights}: {per_photo:.3f} s per photograph", flush=True)
    print("\n| model | plants | photographs | count_jitter | count_falls | area_jitter | leaves day 1 / mid / last | s per photo |")
    print("|---|---|---|---|---|---|---|---|")
    for weights, s in summary.items():
        means = " / ".join(f"{v:.1f}" for v in s["mean_leaves"].values())
        print(f"| {weights} | {s['plants']} | {s['photographs']} | {s['count_jitter']:.3f} | {s['count_falls']:.3f} "
              f"| {s['area_jitter']:.3f} | {means} | {s['seconds_per_photo']:.3f} |")
    with open(out / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(next(iter(rows_by_model.values()))[0]))
        writer.writeheader()
        for rows in rows_by_model.values():
            writer.writerows(rows)
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    growth_picture(rows_by_model, out / "growth.png")
    contact_sheet(results_by_model, plants, out / "sheet.png")
    print(f"\nwrote {out}/rows.csv, results.json, growth.png, sheet.png")


if __name__ == "__main__":
    main()
