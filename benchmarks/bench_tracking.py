"""Leaf tracking on drawn time-lapses (leafseg.synth.timelapse): the tracker of
leafseg.measure.tracking fed the true masks (perfect segmentation), and with --weights a model's
leaves, scored against the true leaf ids.

    python benchmarks/bench_tracking.py                          # 12 plants x 15 days, true masks
    python benchmarks/bench_tracking.py --weights leaf-small     # and leaf-small's leaves
    python benchmarks/bench_tracking.py --plants 4 --days 8 --style random --max-gap 1

Plant ``p`` is ``generate_time_lapse(SeedSequence([seed, 27, p]), ...)``, the plant that
``leafseg synth --time-lapse DAYS --seed SEED`` writes as ``plantPPP/`` (``--style`` classic;
``both``, the default here, alternates classic and random by plant). For each input (truth, and
each model) it prints, pooled over the plants:

    track SBD        mean over plants of the Symmetric Best Dice between whole tracks
    switches / 100   id switches per 100 leaf-frame transitions (all plants' switches over all
                     their transitions; definitions in leafseg.measure.tracking)
    frame SBD        mean over plants and frames of each frame's SBD
    matched          share of true leaf-frames matched to a track with IoU > 0.5

and the same without tracking, ids given per frame as ``leafseg predict`` gives them (by
descending score; the truth's by descending area), to show what the linking adds. ``--min-frames
N`` drops the tracks seen in fewer than N frames (``drop_short_tracks``) before scoring. ``--out
FILE.json`` also writes the per-plant figures.

``--command DIR`` also runs each model through the command itself: the plants are written as
``leafseg synth --time-lapse`` writes them (``DIR/lapses/plantPPP/``), ``leafseg track`` segments and
tracks them into ``DIR/<model>/`` (its defaults, or ``--max-gap`` / ``--min-frames``), and its
track-id labels are scored the same way (row ``<model> command``); a rerun reuses the frames it
segmented before.

    python benchmarks/bench_tracking.py --weights leaf-small --plants 4 --command /tmp/bench_track
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leafseg.measure.tracking import LeafTracker, drop_short_tracks, track_label, tracking_scores  # noqa: E402
from leafseg.synth.timelapse import generate_time_lapse  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plants", type=int, default=12, help="time-lapses drawn (default 12)")
    parser.add_argument("--days", type=int, default=15, help="frames per time-lapse (default 15)")
    parser.add_argument("--size", type=int, default=500, help="image side in pixels (default 500)")
    parser.add_argument("--style", choices=("both", "classic", "random"), default="both",
                        help="drawing style; both alternates classic and random by plant (default)")
    parser.add_argument("--seed", type=int, default=0, help="the time-lapses' seed (default 0)")
    parser.add_argument("--weights", default=None,
                        help="comma-separated models (zoo names, weights files or folders) whose leaves are "
                             "tracked too")
    parser.add_argument("--min-score", type=float, default=None, help="the models' cut-off (default: their own)")
    parser.add_argument("--max-gap", type=int, default=None, help="the tracker's max_gap (default: its own)")
    parser.add_argument("--min-frames", type=int, default=1,
                        help="drop tracks seen in fewer frames (drop_short_tracks; default 1: keep all)")
    parser.add_argument("--out", default=None, help="write the per-plant figures to this JSON file")
    parser.add_argument("--command", default=None, metavar="DIR",
                        help="also run each model through leafseg track into DIR and score its labels")
    return parser.parse_args(argv)


def draw(args):
    lapses = []
    for plant in range(args.plants):
        style = args.style if args.style != "both" else ("classic", "random")[plant % 2]
        lapses.append((style, generate_time_lapse(np.random.SeedSequence([args.seed, 27, plant]), args.days,
                                                  args.size, style=style)))
    return lapses


def truth_frames(lapse):
    """Per frame, (masks in descending area order, areas as scores): the truth as a model would
    hand it over, its own ids hidden."""
    frames = []
    for t in range(lapse.days):
        masks, _ = lapse.masks(t)
        areas = masks.reshape(-1, masks.shape[2]).sum(axis=0).astype(np.float64)
        order = np.argsort(-areas, kind="stable")
        frames.append((masks[..., order], areas[order]))
    return frames


def model_frames(model, lapse):
    """Per frame, (visible masks, scores) of the model's leaves, as ``leafseg predict`` keeps them."""
    from leafseg.inference.predict import visible_leaves

    frames = []
    for image in lapse.images:
        _, visible, details = visible_leaves(model.detect([image], verbose=0)[0])
        frames.append((visible, details["scores"]))
    return frames


def score(frames, lapse, max_gap, min_frames):
    """(tracked figures, untracked figures, tracker seconds per frame) of one plant."""
    tracker = LeafTracker() if max_gap is None else LeafTracker(max_gap=max_gap)
    tracked, plain, seconds = [], [], 0.0
    for masks, scores in frames:
        start = time.perf_counter()
        ids = tracker.update(masks, scores)
        seconds += time.perf_counter() - start
        tracked.append(track_label(masks, ids, scores))
        plain.append(track_label(masks, np.arange(1, masks.shape[2] + 1), scores))
    if min_frames > 1:
        tracked = drop_short_tracks(tracked, min_frames)
    return (tracking_scores(tracked, lapse.ids), tracking_scores(plain, lapse.ids),
            seconds / max(1, len(frames)))


def command_rows(args, lapses, weights):
    """The figures of ``leafseg track`` run on the drawn plants written to ``args.command``."""
    from leafseg.cli.track import main as track_main
    from leafseg.data.masks import read_label
    from leafseg.synth.timelapse import write_time_lapses

    root = Path(args.command)
    for plant, (style, _) in enumerate(lapses):
        write_time_lapses(root / "lapses", args.days, count=1, seed=args.seed, size=args.size, style=style,
                          start=plant, progress=False)
    out = root / weights.replace("/", "_")
    argv = [str(root / "lapses"), "--out", str(out), "--weights", weights, "--quiet", "--no-overlays",
            "--min-frames", str(args.min_frames)]
    argv += ["--max-gap", str(args.max_gap)] if args.max_gap is not None else []
    argv += ["--min-score", str(args.min_score)] if args.min_score is not None else []
    if track_main(argv) != 0:
        raise SystemExit(f"leafseg track {' '.join(argv)} failed")
    rows = []
    for plant, (style, lapse) in enumerate(lapses):
        labels = [read_label(p) for p in sorted((out / f"plant{plant:03d}" / "labels").glob("*_label.png"))]
        rows.append({"style": style, **tracking_scores(labels, lapse.ids)})
    return rows


def summary(rows):
    switches = sum(r["switches"] for r in rows)
    transitions = sum(r["transitions"] for r in rows)
    return {"track_sbd": float(np.mean([r["track_sbd"] for r in rows])),
            "switches_per_100": 100.0 * switches / transitions if transitions else 0.0,
            "frame_sbd": float(np.mean([r["frame_sbd"] for r in rows])),
            "matched": float(np.mean([r["matched"] for r in rows])),
            "switches": switches, "transitions": transitions}


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    lapses = draw(args)
    print(f"{args.plants} time-lapses of {args.days} days at {args.size} px ({args.style}, seed {args.seed}), "
          f"drawn in {time.perf_counter() - start:.1f} s; tracker max_gap {args.max_gap or LeafTracker().max_gap}, "
          f"tracks of fewer than {args.min_frames} frames dropped")
    sources = [("truth", lambda lapse: truth_frames(lapse))]
    for weights in filter(None, (args.weights or "").split(",")):
        from leafseg.models.loading import load_inference_model

        model, _, _ = load_inference_model(weights, min_score=args.min_score)
        sources.append((weights, lambda lapse, model=model: model_frames(model, lapse)))
    results = {}
    header = f"{'input':<14} {'linking':<9} {'track SBD':>9} {'sw/100':>7} {'frame SBD':>9} {'matched':>7}  switches"
    print(header)
    print("-" * len(header))
    for name, frames_of in sources:
        tracked_rows, plain_rows, per_frame = [], [], []
        segment_start = time.perf_counter()
        for style, lapse in lapses:
            tracked, plain, seconds = score(frames_of(lapse), lapse, args.max_gap, args.min_frames)
            tracked_rows.append({"style": style, **tracked})
            plain_rows.append({"style": style, **plain})
            per_frame.append(seconds)
        for linking, rows in (("tracked", tracked_rows), ("per frame", plain_rows)):
            s = summary(rows)
            print(f"{name:<14} {linking:<9} {s['track_sbd']:9.3f} {s['switches_per_100']:7.2f} {s['frame_sbd']:9.3f} "
                  f"{s['matched']:7.3f}  {s['switches']}/{s['transitions']}")
            results[f"{name} {linking}"] = {"summary": s, "plants": rows}
        print(f"{'':<14} tracker {1000 * float(np.mean(per_frame)):.1f} ms a frame; "
              f"{time.perf_counter() - segment_start:.0f} s in all")
    for weights in filter(None, (args.weights or "").split(",")) if args.command else []:
        start = time.perf_counter()
        rows = command_rows(args, lapses, weights)
        s = summary(rows)
        print(f"{weights:<14} {'command':<9} {s['track_sbd']:9.3f} {s['switches_per_100']:7.2f} {s['frame_sbd']:9.3f} "
              f"{s['matched']:7.3f}  {s['switches']}/{s['transitions']}")
        print(f"{'':<14} leafseg track: {time.perf_counter() - start:.0f} s in all")
        results[f"{weights} command"] = {"summary": s, "plants": rows}
    for name, frames_of in sources[:1]:
        worst = min(results[f"{name} tracked"]["plants"], key=lambda r: r["track_sbd"])
        print(f"worst plant on {name}: track SBD {worst['track_sbd']:.3f}, {worst['switches']} switches "
              f"({worst['style']})")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"per-plant figures: {args.out}")


if __name__ == "__main__":
    main()
