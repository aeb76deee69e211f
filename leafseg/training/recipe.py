"""Recipes that rebuild the models of :mod:`leafseg.models.zoo` from nothing, with one command.

    leafseg recipe leaf-small                      # data, training, held-out scores, the file
    leafseg recipe leaf-small --epochs 2 --steps-per-epoch 5 --images 40 --out /tmp/try   # a quick look
    leafseg recipe leave-one-style-out             # generalisation to style families never seen
    leafseg recipe small-data                      # "I labelled 20 images": fine-tuning leaf-small vs from scratch

Every step is kept in ``--out`` and skipped when it is already done, so a recipe that was
interrupted (Ctrl-C, a crash, a machine that went away) continues where it stopped when run
again with the same arguments: the rosettes and the prepared folder are completed, and
training resumes from its newest checkpoint with its optimiser state (``leafseg train
--resume``).

``leaf-small`` (see docs/MODEL_CARD_leaf_small.md):

1. ``--images`` domain-randomised rosettes at 500 px (``leafseg synth --style random``), and
   as many of other seeds (``--seed`` + 10), half of them with unlabelled clutter (``--clutter
   0.5``: moss on the soil, leaves of neighbouring plants at the frame's edge);
2. the 80/20 split of each into per-leaf masks (``leafseg prepare``);
3. training from random weights with ``configs/leaf_small.yaml`` (the ``leaf_small`` preset),
   Adam and the ``domain`` augmentation, in stages of 200-step epochs (``leafseg train``) on the
   first set: to epoch 36 with a cosine rate from 0.001 after a 200-step warmup, then warm
   restarts to epochs 48, 72, 104 and 128, each a fresh Adam with a cosine rate from 0.0003,
   0.0002, 0.00015 and 0.0001; its best checkpoint by validation loss is
   ``OUT/leaf_small_base.weights.h5``;
4. fine-tuning that model on the second (cluttered) set for 24 epochs, a cosine rate from
   0.0001 (``--epochs N``: one stage of N, then a fine-tuning of N // 4);
5. the fine-tuning's last checkpoint (its rate has decayed to zero; the validation loss on 20
   images an epoch moves too much between its epochs to choose by), copied to
   ``OUT/leaf_small.weights.h5``,
   with the detection settings that maximise SBD - 0.05 |DiC| on 60 (cluttered) validation
   rosettes and 40 classic-style tuning rosettes stored in its config: the box NMS threshold
   (0.3, 0.5, 0.7), the mask-overlap threshold (none, 0.3, 0.5) and the cut-off (0.5 to 0.9);
6. scores on held-out sets it never trained on: random-style, classic-style and cluttered
   random-style rosettes of other seeds (``OUT/evaluation/<set>/``, a table in
   ``OUT/evaluation/summary.md``), and a picture of its predictions on the first of them
   (``OUT/evaluation/predictions.png``).

Copy the file to ``leafseg/models/`` (or point ``$LEAFSEG_ZOO_DIR`` at its folder) to use it
as ``leaf-small``.

``small-data`` (docs/TRAINING.md, "I labelled 20 images") stands in for a user's own small set
with classic-style rosettes, a look leaf-small never trained on: 20 training and 5 validation
images, and 50 held-out images of another seed. It trains each way of SMALL_DATA_PLANS (from
leaf-small: the heads, the heads then all layers, all layers; from random weights) for the same
wall-clock budget (``--minutes``), keeping a checkpoint per 20-step epoch, and scores the
checkpoint each one had after 1, 2, 4, ... minutes on the held-out images (``OUT/summary.md``,
``OUT/sbd_vs_minutes.png``). A plan interrupted while training is trained again from its start,
so that its minutes stay one uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import numpy as np

from leafseg.models.runs import copy_weights as _copy_atomic
from leafseg.models.runs import newest_run, read_checkpoint_index
from leafseg.models.runs import run_position as _where
from leafseg.models.runs import store_config_values as set_detection_settings
from leafseg.synth.realism import PHOTO_MIX
from leafseg.training.train import print_step
from mrcnn.fileio import atomic_path, write_text_atomic

__all__ = ["RECIPES", "leaf_small", "leave_one_style_out", "small_data", "print_step"]

logger = logging.getLogger(__name__)

# Held-out evaluation sets of leaf-small: (name, style, seed offset from --seed, count, clutter).
# Their seeds differ from the training data's, so no rosette is shared.
# realism: the options of leafseg.synth.realism (None: off).
HELD_OUT = (("random", "random", 1, 100, 0.0, None), ("classic", "classic", 2, 100, 0.0, None),
            ("cluttered", "random", 4, 100, 1.0, None),
            ("realism", "random", 7, 100, 0.5, dict(PHOTO_MIX)))
# The picture of leaf-small at work (docs/images/leaf_small_predictions.png): the first images of
# held-out sets, {set name: count}.
SHEET = {"random": 4, "cluttered": 2, "classic": 2}


def make_data(folder, images, seed, style="random", families=None, workers=2, clutter=0.0, realism=None):
    """Rosettes in ``folder/rosettes`` and their 80/20 training layout in ``folder/prepared``
    (both completed, never redone); returns the prepared folder."""
    from leafseg.data.prepare import prepare_dataset
    from leafseg.synth.rosettes import write_dataset

    folder = Path(folder)
    write_dataset(folder / "rosettes", images, seed=seed, size=500, style=style, families=families, workers=workers,
                  clutter=clutter, realism=realism)
    result = prepare_dataset(folder / "rosettes", folder / "prepared", seed=seed, workers=workers)
    print(result.summary())
    return folder / "prepared"


# leaf-small's training stages: (end epoch, learning rate, warmup steps). A cosine decay from
# 0.001 after a warmup, then four warm restarts: a fresh Adam and a cosine decay from 0.0003,
# then from 0.0002, 0.00015 and 0.0001 (the training loss was still falling at each restart).
LEAF_SMALL_STAGES = ((36, 0.001, 200), (48, 0.0003, 0), (72, 0.0002, 0), (104, 0.00015, 0), (128, 0.0001, 0))
# Then a fine-tuning run from that model on rosettes of other seeds, this share of them with
# unlabelled clutter (moss, neighbouring plants' leaves at the edge): (epochs, rate, warmup),
# a cosine rate, and the clutter share; its data and seed are --seed + CLUTTER_SEED_OFFSET.
LEAF_SMALL_CLUTTER_STAGE = (24, 0.0001, 0)
LEAF_SMALL_CLUTTER = 0.5
CLUTTER_SEED_OFFSET = 10
# Then a second fine-tuning (leaf-small v2) on rosettes drawn with the realism options that real
# photographs asked for (leafseg.synth.realism: moss and algae, petioles as wide as real ones,
# tiny seedlings in small crops, seedlings on agar or paper, young leaves at the centre), half of
# them with clutter; seed --seed + REALISM_SEED_OFFSET.
LEAF_SMALL_REALISM = dict(PHOTO_MIX)
LEAF_SMALL_REALISM_STAGE = (20, 0.0001, 0)
REALISM_SEED_OFFSET = 20


# leaf-small's self-training on real photographs (recipe ``--photos``): leafseg adapt's options
# (docs/ADAPT.md), the held-out plants left out; a budget no run reaches, so that the steps, not
# the machine's speed, decide what is trained.
ADAPT_STEPS = {"rounds": 2, "photos_per_round": 200, "steps": 600, "minutes": 600.0, "hold_out_plants": True}
ADAPT_SEED_OFFSET = 30


def adapt_on_photos(weights, photos, out, seed, workers):
    """``leafseg adapt`` of ``weights`` on ``photos`` (ADAPT_STEPS) in ``out``, continued when
    run before; the result copied to ``leaf_small.weights.h5`` beside ``weights``. Returns
    (that file, the adapted file)."""
    from leafseg.training.adapt import AdaptOptions, adapt

    adapt(AdaptOptions(photos=[str(photos)], out=str(out), weights=str(weights), seed=seed, workers=workers,
                       **ADAPT_STEPS))
    adapted = Path(out) / "adapted.weights.h5"
    return _copy_atomic(adapted, Path(weights).parent / "leaf_small.weights.h5"), str(adapted)


def resolve_start(start_from):
    """``--start-from``: a weights file, or a zoo name."""
    from leafseg.models.loading import resolve_weights

    return resolve_weights(start_from)


def one_stage(epochs, steps_per_epoch=None):
    """A single stage of ``epochs`` epochs at 0.001, warming up over 200 steps or a tenth of a
    shorter run."""
    from leafseg.config import LeafSmallConfig

    return ((epochs, 0.001, min(200, max(1, epochs * (steps_per_epoch or LeafSmallConfig.STEPS_PER_EPOCH) // 10))),)


def train_argv(prepared, logs, stage, seed, start, steps_per_epoch=None):
    """``leafseg train`` arguments of the recipes for ``stage`` = (end epoch, rate, warmup): the
    leaf_small preset, all layers, Adam (the preset's), a cosine rate and the domain
    augmentation. start: "none" (random weights), "last" (a new stage from the newest
    checkpoint) or "resume" (the newest checkpoint's own stage, with its optimiser state)."""
    end, rate, warmup = stage
    argv = ["--config", "leaf_small", "--dataset", str(prepared), "--logs", str(logs), "--seed", str(seed),
            "--verbose", "2", "--epochs", str(end)]
    if steps_per_epoch:
        argv += ["--steps-per-epoch", str(steps_per_epoch)]
    if start == "resume":
        return argv + ["--resume"]
    return argv + ["--weights", start, "--stage", "all", "--augment", "domain", "--schedule", "cosine",
                   "--lr", str(rate), "--warmup-steps", str(warmup)]


def train_model(prepared, logs, target, stages, seed, steps_per_epoch=None, initial="none", pick="best"):
    """Train (or continue) through ``stages`` and copy the run's best checkpoint by validation
    loss (``pick="best"``) or its last one (``"last"``) to ``target``; returns (target, the
    checkpoint copied, training minutes of this call). initial: the first stage's start, "none"
    (random weights) or a weights file."""
    from leafseg.training.train import run as train
    from mrcnn.weights import checkpoints_in

    started = time.monotonic()
    result = None
    for stage in stages:
        run_dir, epoch, stage_end = _where(logs)
        if epoch >= stage[0]:
            continue
        start = str(initial) if run_dir is None else "resume" if stage_end == stage[0] else "last"
        print(f"stage to epoch {stage[0]}: " + {"none": "from random weights", "resume": f"resuming {run_dir}",
                                                "last": f"a new stage after epoch {epoch}"}.get(start, f"from {start}"),
              flush=True)
        result = train(train_argv(prepared, logs, stage, seed, start, steps_per_epoch))
    minutes = (time.monotonic() - started) / 60
    run_dir = Path(result.run_dir) if result is not None else _where(logs)[0]
    best = (read_checkpoint_index(run_dir).get("best") if pick == "best" else None) or {}
    source = best.get("path") or str(checkpoints_in(run_dir)[-1])
    return _copy_atomic(source, target), source, minutes


def score(weights, sets, out, gallery=6):
    """Evaluate ``weights`` on {name: image + label folder}; writes ``out/<name>/`` and returns
    {name: summary}."""
    from leafseg.measure.evaluate import evaluate_dataset, load_eval_dataset
    from leafseg.models.loading import load_inference_model
    from leafseg.measure.metrics import format_summary

    model, _, _ = load_inference_model(weights, model_dir=Path(out) / "logs")
    summaries = {}
    for name, folder in sets.items():
        _, summary, _ = evaluate_dataset(model, load_eval_dataset(folder, "all"), Path(out) / name, gallery=gallery)
        summaries[name] = summary
        print(f"{name} ({weights}):\n{format_summary(summary)}")
    return summaries


def prediction_figure(weights, sets, path):
    """photograph | prediction | ground truth for the first ``count`` images of each {name:
    (image + label folder, count)}, in ``path``; returns the path, or None without sets."""
    from leafseg.measure.evaluate import load_eval_dataset, prediction_sheet
    from leafseg.models.loading import load_inference_model

    if not sets:
        return None
    model, _, _ = load_inference_model(weights, model_dir=Path(path).parent / "logs")
    rows = [(name, load_eval_dataset(folder, "all"), count) for name, (folder, count) in sets.items()]
    return prediction_sheet(model, rows, path, title=f"{Path(weights).name} on held-out images")


# The detection settings tried, and the trade between the two targets. For each box NMS
# threshold (DETECTION_NMS_THRESHOLD), mask-overlap threshold (DETECTION_MASK_OVERLAP_THRESHOLD,
# None: off) and cut-off (DETECTION_MIN_CONFIDENCE), the mean over the tuning sets of mean SBD -
# DIC_PENALTY * mean |DiC| (a leaf miscounted costs 0.05 SBD); the best is stored in the file.
MIN_SCORES = (0.5, 0.6, 0.7, 0.8, 0.9)
NMS_THRESHOLDS = (0.3, 0.5, 0.7)
MASK_OVERLAPS = (None, 0.3, 0.5)
DIC_PENALTY = 0.05


def settings_name(nms, overlap):
    return f"nms {nms}, mask overlap {overlap}"


def choose_detection_settings(weights, tuning, thresholds=MIN_SCORES, nms_thresholds=NMS_THRESHOLDS,
                              mask_overlaps=MASK_OVERLAPS):
    """The detection settings that score best on ``tuning``, {name: (dataset, image ids)}, written
    into the config stored in ``weights``: one detection pass per box NMS threshold, the
    mask-overlap thresholds and cut-offs applied to its detections (leafseg.measure.evaluate.detection_sweep).
    Returns ({config name: value}, {settings_name: {set name: {cut-off: means}}})."""
    from leafseg.measure.evaluate import detection_sweep
    from leafseg.models.loading import load_inference_model

    sweeps = {}
    for nms in nms_thresholds:
        model, _, _ = load_inference_model(weights, min_score=min(thresholds), model_dir=Path(weights).parent / "logs",
                                           overrides={"DETECTION_NMS_THRESHOLD": nms,
                                                      "DETECTION_MASK_OVERLAP_THRESHOLD": None})
        found = {name: detection_sweep(model, dataset, thresholds, mask_overlaps, ids) for name, (dataset, ids)
                 in tuning.items()}
        for overlap in mask_overlaps:
            sweeps[settings_name(nms, overlap)] = {name: {t: sweep[overlap, t] for t in sorted(thresholds)}
                                                   for name, sweep in found.items()}
    candidates = [(nms, overlap, t) for nms in nms_thresholds for overlap in mask_overlaps for t in sorted(thresholds)]

    def objective(candidate):
        nms, overlap, t = candidate
        return float(np.mean([means[t]["sbd_mean"] - DIC_PENALTY * means[t]["abs_dic_mean"]
                              for means in sweeps[settings_name(nms, overlap)].values()]))

    nms, overlap, t = max(candidates, key=objective)
    best = {"DETECTION_NMS_THRESHOLD": nms, "DETECTION_MASK_OVERLAP_THRESHOLD": overlap, "DETECTION_MIN_CONFIDENCE": t}
    set_detection_settings(weights, **best)
    return best, sweeps


def _row(name, summary):
    return f"| {name} | {summary['n_images']} | {summary['sbd_mean']:.3f} | {summary['abs_dic_mean']:.2f} | " \
           f"{summary['ap50_mean']:.3f} |"


def leaf_small(out="runs/leaf-small", images=3000, epochs=None, seed=2026, workers=2, held_out=HELD_OUT,
               steps_per_epoch=None, start_from=None, photos=None):
    """Rebuild ``leaf-small`` in ``out`` (steps of the module docstring); returns {set: summary}.

    epochs: None for the shipped model's stages (LEAF_SMALL_STAGES), else one stage of that many.
    start_from: a weights file of the first leaf-small (the clutter fine-tuning's result, steps 1
        to 3): it is copied to ``OUT/leaf_small_v1.weights.h5`` and those steps are skipped.
    photos: a folder of unlabelled real photographs of time-lapsed plants (the Deep Phenotyping
        set: docs/MODEL_CARD_leaf_small.md): self-training (``leafseg adapt``, ADAPT_STEPS) on the
        photographs of all but the held-out plants follows the drawn fine-tuning; None: none.
    """
    stages = LEAF_SMALL_STAGES if epochs is None else one_stage(epochs, steps_per_epoch)
    fine_tune = LEAF_SMALL_CLUTTER_STAGE if epochs is None else one_stage(max(1, epochs // 4), steps_per_epoch)[0]
    realism_stage = LEAF_SMALL_REALISM_STAGE if epochs is None else one_stage(max(1, epochs // 4), steps_per_epoch)[0]
    from leafseg.synth.rosettes import write_dataset

    out = Path(out)
    started = time.monotonic()
    total = 6 if photos is None else 7
    v1 = out / "leaf_small_v1.weights.h5"
    train_minutes, base_source = 0.0, None
    if start_from is not None:
        if not v1.exists():
            _copy_atomic(resolve_start(start_from), v1)
        print_step(1, total, f"Steps 1 to 3 skipped: starting from {v1} (a copy of {start_from})")
    else:
        print_step(1, total, f"{images} random-style rosettes (500 px) in {out / 'rosettes'}, prepared in "
                             f"{out / 'prepared'}; {images} more of other seeds, {LEAF_SMALL_CLUTTER:.0%} with clutter, "
                             f"in {out / 'cluttered'}")
        prepared = make_data(out, images, seed, workers=workers)
        cluttered = make_data(out / "cluttered", images, seed + CLUTTER_SEED_OFFSET, workers=workers,
                              clutter=LEAF_SMALL_CLUTTER)

        print_step(2, total, f"Training leaf_small to epoch {stages[-1][0]}")
        base, base_source, train_minutes = train_model(prepared, out / "logs", out / "leaf_small_base.weights.h5",
                                                       stages, seed, steps_per_epoch)
        print_step(3, total, f"Fine-tuning {base} ({base_source}) for {fine_tune[0]} epochs on the cluttered rosettes")
        v1, _, minutes = train_model(cluttered, out / "cluttered" / "logs", v1, (fine_tune,),
                                     seed + CLUTTER_SEED_OFFSET, steps_per_epoch, initial=base, pick="last")
        train_minutes += minutes
    print_step(4, total, f"Fine-tuning {v1} for {realism_stage[0]} epochs on {images} rosettes drawn with the "
                         f"realism options {LEAF_SMALL_REALISM} and {LEAF_SMALL_CLUTTER:.0%} clutter, in {out / 'realism'}")
    realistic = make_data(out / "realism", images, seed + REALISM_SEED_OFFSET, workers=workers,
                          clutter=LEAF_SMALL_CLUTTER, realism=LEAF_SMALL_REALISM)
    drawn_target = out / ("leaf_small.weights.h5" if photos is None else "leaf_small_drawn.weights.h5")
    weights, source, minutes = train_model(realistic, out / "realism" / "logs", drawn_target,
                                           (realism_stage,), seed + REALISM_SEED_OFFSET, steps_per_epoch,
                                           initial=v1, pick="last")
    train_minutes += minutes
    print_step(5, total, f"{weights} ({weights.stat().st_size / 1e6:.1f} MB) from {source}; its detection settings, "
                    "chosen on the realism set's validation rosettes and classic tuning rosettes")
    from leafseg.measure.evaluate import load_eval_dataset

    validation = load_eval_dataset(realistic, "val")
    write_dataset(out / "tuning" / "classic", 40, seed=seed + 3, size=500, style="classic", workers=workers,
                  progress=False)
    classic = load_eval_dataset(out / "tuning" / "classic", "all")
    settings, sweeps = choose_detection_settings(weights, {"validation": (validation, list(validation.image_ids)[:60]),
                                                           "classic": (classic, None)})
    chosen = (settings_name(settings["DETECTION_NMS_THRESHOLD"], settings["DETECTION_MASK_OVERLAP_THRESHOLD"]),
              settings["DETECTION_MIN_CONFIDENCE"])
    for name, by_set in sweeps.items():
        for t in MIN_SCORES:
            print(f"  {name}, cut-off {t:.1f}: " + "; ".join(f"{set_name} SBD {means[t]['sbd_mean']:.3f} |DiC| "
                                                             f"{means[t]['abs_dic_mean']:.2f}"
                                                             for set_name, means in by_set.items())
                  + ("   <- chosen" if (name, t) == chosen else ""))

    if photos is not None:
        print_step(6, total, f"Self-training on the photographs of {photos} but its held-out plants: leafseg adapt "
                             f"{ADAPT_STEPS}")
        weights, source = adapt_on_photos(weights, photos, out / "adapt", seed + ADAPT_SEED_OFFSET, workers)
    print_step(total, total, "Scores on held-out rosettes of other seeds")
    sets = {}
    for name, style, offset, count, clutter, realism in held_out:
        sets[name] = out / "held_out" / name
        write_dataset(sets[name], count, seed=seed + offset, size=500, style=style, workers=workers, progress=False,
                      clutter=clutter, realism=realism)
    summaries = score(weights, sets, out / "evaluation")
    sheet = prediction_figure(weights, {name: (sets[name], count) for name, count in SHEET.items() if name in sets},
                              out / "evaluation" / "predictions.png")
    lines = ["| held-out set | images | SBD | abs DiC | mask AP50 |", "|---|---|---|---|---|"]
    lines += [_row(name, s) for name, s in summaries.items()]
    write_text_atomic(out / "evaluation" / "summary.md", "\n".join(lines) + "\n")
    record = {"weights": str(weights), "size_bytes": weights.stat().st_size, "checkpoint": source,
              "detection_settings": settings, "detection_sweeps": sweeps,
              "stages": [list(stage) for stage in stages], "base_checkpoint": base_source,
              "fine_tune": {"stage": list(fine_tune), "clutter": LEAF_SMALL_CLUTTER, "seed": seed + CLUTTER_SEED_OFFSET},
              "start_from": None if start_from is None else str(start_from),
              "photos": None if photos is None else {"folder": str(photos), "adapt": ADAPT_STEPS,
                                                     "seed": seed + ADAPT_SEED_OFFSET},
              "realism_fine_tune": {"stage": list(realism_stage), "clutter": LEAF_SMALL_CLUTTER,
                                    "realism": LEAF_SMALL_REALISM, "seed": seed + REALISM_SEED_OFFSET},
              "images": images, "seed": seed, "train_minutes_this_call": round(train_minutes, 1),
              "total_minutes_this_call": round((time.monotonic() - started) / 60, 1), "held_out": summaries}
    write_text_atomic(out / "recipe.json", json.dumps(record, indent=2) + "\n")
    print("\n" + "\n".join(lines))
    if sheet is not None:
        print(f"Predictions on the first held-out images: {sheet}")
    print(f"\nDone in {record['total_minutes_this_call']} minutes (training {record['train_minutes_this_call']}). "
          f"To use it as leaf-small: cp {weights} {Path(__file__).resolve().parents[1] / 'models'}/")
    return summaries


def leave_one_style_out(out="runs/leave-one-style-out", images=1000, epochs=10, seed=2027, workers=2,
                        families=None, test_images=60, steps_per_epoch=None):
    """How well a model does on a kind of image it never saw: for each style family F (see
    leafseg.synth.scenes.FAMILIES), a model trained on random-style rosettes without F is scored on
    rosettes of F alone and on rosettes without F (its own kind); a model trained on the classic
    style alone, with the same budget, is scored on the same sets. Writes ``out/summary.md``."""
    from leafseg.models import zoo
    from leafseg.synth.scenes import FAMILIES
    from leafseg.synth.rosettes import write_dataset

    out = Path(out)
    families = list(families or FAMILIES)
    rows, record = [], {}
    try:
        shipped = zoo.path("leaf-small")
    except FileNotFoundError:
        shipped = None
    classic = out / "classic_only"
    prepared = make_data(classic, images, seed, style="classic", workers=workers)
    stages = one_stage(epochs, steps_per_epoch)
    classic_weights, _, _ = train_model(prepared, classic / "logs", classic / "model.weights.h5", stages, seed,
                                        steps_per_epoch)
    for family in families:
        folder = out / f"without_{family}"
        print_step(families.index(family) + 1, len(families), f"Held-out family {family}: {FAMILIES[family]}")
        prepared = make_data(folder, images, seed, families={family: False}, workers=workers)
        weights, _, _ = train_model(prepared, folder / "logs", folder / "model.weights.h5", stages, seed,
                                    steps_per_epoch)
        sets = {f"only_{family}": out / "test" / f"only_{family}", f"without_{family}": out / "test" / f"without_{family}"}
        for offset, (name, member) in enumerate(((f"only_{family}", True), (f"without_{family}", False))):
            write_dataset(sets[name], test_images, seed=seed + 100 + offset, size=500, style="random",
                          families={family: member}, workers=workers, progress=False)
        mine = score(weights, sets, folder / "evaluation", gallery=0)
        only = {f"only_{family}": sets[f"only_{family}"]}
        record[family] = {"seen_kind": mine[f"without_{family}"], "held_out": mine[f"only_{family}"],
                          "classic_only_on_held_out": score(classic_weights, only, classic / "evaluation",
                                                            gallery=0)[f"only_{family}"]}
        if shipped is not None:
            record[family]["leaf_small_on_held_out"] = score(shipped, only, out / "leaf_small", gallery=0)[
                f"only_{family}"]
        rows.append("| " + " | ".join([family] + [f"{s['sbd_mean']:.3f} / {s['abs_dic_mean']:.2f}"
                                                  for s in record[family].values()]) + " |")
    columns = ["held-out family F", "trained without F, on its own kind", "trained without F, on F",
               "trained on the classic style, on F"] + (["leaf-small (saw every family), on F"] if shipped else [])
    lines = [f"Leave-one-style-out: {images} rosettes and {epochs} epochs per model, {test_images} test images per set; "
             "SBD / abs DiC", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows]
    write_text_atomic(out / "summary.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "summary.json", json.dumps(record, indent=2) + "\n")
    print("\n" + "\n".join(lines))
    return record


# "I labelled 20 images": the ways of training on them that ``small-data`` compares, each
# (weights to start from, stages); a stage is (layers, its share of the time budget, learning
# rate, warmup steps). Adam (the leaf_small preset's), a constant rate, the "strong" augmentation.
SMALL_DATA_PLANS = {
    "leaf-small, heads then all": ("leaf-small", (("heads", 0.25, 0.001, 0), ("all", 0.75, 0.0001, 0))),
    "leaf-small, heads only": ("leaf-small", (("heads", 1.0, 0.001, 0),)),
    "leaf-small, all layers": ("leaf-small", (("all", 1.0, 0.0001, 0),)),
    "from scratch, all layers": ("none", (("all", 1.0, 0.001, 50),)),
}
SMALL_DATA_STEPS = 20      # steps of 2 images per epoch: a checkpoint every 40 images (two passes over 20)
SMALL_DATA_VALIDATION = 2  # validation steps per epoch (4 of the 5 validation images)


def _slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def minute_marks(minutes):
    """The times (minutes) at which ``small-data`` scores each plan: 1, 2, 4, ... below the budget, and the budget."""
    marks, mark = [], 1
    while mark < minutes:
        marks.append(mark)
        mark *= 2
    return marks + [minutes]


def checkpoint_at(elapsed, mark, last=False):
    """The newest epoch whose checkpoint was written within ``mark`` minutes, from {epoch: seconds
    since the plan started}; ``last``: the newest epoch (the budget is only passed by the step
    that crosses it). None if no epoch ended in time."""
    done = [epoch for epoch, seconds in elapsed.items() if last or seconds <= mark * 60]
    return max(done) if done else None


def small_data_argv(prepared, logs, stage, seed, start, config=None, steps_per_epoch=SMALL_DATA_STEPS):
    """``leafseg train`` arguments of one stage of a small-data plan: (layers, share, rate, warmup)
    until the time budget stops it, a checkpoint kept every epoch."""
    layers, _, rate, warmup = stage
    argv = ["--dataset", str(prepared), "--logs", str(logs), "--seed", str(seed), "--verbose", "2",
            "--weights", start, "--stage", layers, "--epochs", "100000", "--steps-per-epoch", str(steps_per_epoch),
            "--validation-steps", str(SMALL_DATA_VALIDATION), "--augment", "strong", "--lr", str(rate),
            "--warmup-steps", str(warmup), "--keep-checkpoints", "0"]
    return (["--config", config] if config else []) + argv


def _train_plan(plan, prepared, folder, minutes, seed, steps_per_epoch):
    """Train one plan for ``minutes`` in ``folder/logs``; returns {epoch: seconds since it started}."""
    import keras

    from leafseg.training.train import run as train
    from mrcnn.callbacks import TimeBudget

    weights, stages = plan
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted plan starts again: its minutes are one run
    elapsed, share = {}, 0.0
    started = time.monotonic()
    for index, stage in enumerate(stages):
        share += stage[1]
        budget = started + share * minutes * 60 - time.monotonic()
        clock = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: elapsed.__setitem__(epoch + 1, round(time.monotonic() - started, 1)))
        start = weights if index == 0 else "last"
        config = "leaf_small" if start == "none" else None
        print(f"  {stage[0]}: {budget / 60:.1f} minutes from {start}", flush=True)
        train(small_data_argv(prepared, folder / "logs", stage, seed, start, config, steps_per_epoch),
              callbacks=[clock, TimeBudget(max(budget, 1.0))])
    return elapsed


def _plot_small_data(results, baseline, images, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, scores in results.items():
        start = [(0, baseline)] if name.startswith("leaf-small") else []  # fine-tuning starts from leaf-small
        points = start + [(s["minutes"], s) for s in scores]
        xs = [x for x, _ in points]
        sbd = [s["sbd_mean"] for _, s in points]
        dic = [s["abs_dic_mean"] for _, s in points]
        left.plot(xs, sbd, marker="o", label=name)
        right.plot(xs, dic, marker="o", label=name)
    left.set(xlabel="training minutes (2 CPU cores)", ylabel="SBD (held-out)", ylim=(0, 1))
    right.set(xlabel="training minutes (2 CPU cores)", ylabel="|DiC| (held-out)")
    left.legend(fontsize=8)
    fig.suptitle(f"Training on {images} labelled images, scored on held-out ones")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def small_data(out="runs/small-data", images=20, minutes=8, seed=2030, workers=2, test_images=50,
               steps_per_epoch=SMALL_DATA_STEPS, plans=None):
    """"I labelled 20 images": train each way of ``plans`` (default SMALL_DATA_PLANS) on the same
    ``images`` classic-style rosettes for ``minutes`` of wall-clock time, and score the checkpoint
    each had at every minute mark on the same ``test_images`` held-out rosettes. Writes
    ``out/summary.md``, ``out/summary.json`` and ``out/sbd_vs_minutes.png``; returns the record."""
    from leafseg.models import zoo
    from leafseg.data.prepare import prepare_dataset
    from leafseg.synth.rosettes import write_dataset
    from mrcnn.weights import checkpoints_in

    plans = plans or SMALL_DATA_PLANS
    out = Path(out)
    val = max(2, images // 4)
    total = len(plans) + 2
    print_step(1, total, f"{images} training and {val} validation classic-style rosettes, {test_images} held-out ones")
    write_dataset(out / "rosettes", images + val, seed=seed, size=500, style="classic", workers=workers)
    result = prepare_dataset(out / "rosettes", out / "prepared", seed=seed, workers=workers,
                             val_ids=[f"plant{i:05d}" for i in range(images, images + val)])
    print(result.summary())
    prepared = out / "prepared"
    held_out = out / "held_out"
    write_dataset(held_out, test_images, seed=seed + 1, size=500, style="classic", workers=workers, progress=False)
    sets = {"held_out": held_out}

    print_step(2, total, "leaf-small as shipped, without training")
    baseline = score(zoo.path("leaf-small"), sets, out / "leaf_small_as_shipped", gallery=0)["held_out"]
    marks = minute_marks(minutes)
    results = {}
    for number, (name, plan) in enumerate(plans.items(), start=3):
        folder = out / "plans" / _slug(name)
        record = folder / "plan.json"
        print_step(number, total, f"{name}: {minutes} minutes")
        if record.is_file():
            elapsed = {int(k): v for k, v in json.loads(record.read_text())["elapsed"].items()}
        else:
            elapsed = _train_plan(plan, prepared, folder, minutes, seed, steps_per_epoch)
            write_text_atomic(record, json.dumps({"plan": [plan[0], [list(s) for s in plan[1]]], "minutes": minutes,
                                                  "elapsed": elapsed}, indent=1) + "\n")
        run_dir = newest_run(folder / "logs")
        paths = {int(re.search(r"(\d+)\.weights\.h5$", p.name).group(1)): p for p in checkpoints_in(run_dir)}
        results[name] = []
        for mark in marks:
            epoch = checkpoint_at(elapsed, mark, last=mark == marks[-1])
            if epoch is None:
                continue
            summary = score(paths[epoch], sets, folder / f"after_{mark}_min", gallery=0)["held_out"]
            results[name].append(dict(summary, minutes=mark, epoch=epoch, seconds=elapsed[epoch]))

    columns = ["0 min"] + [f"{m} min" for m in marks]
    lines = [f"{images} training images (classic style, seed {seed}), {test_images} held-out; SBD / abs DiC after "
             "N minutes of training on this machine", "",
             "| start, layers trained | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
             f"| leaf-small as shipped, no training | {baseline['sbd_mean']:.3f} / {baseline['abs_dic_mean']:.2f} |"
             + " |" * len(marks)]
    for name, scores in results.items():
        cells = {s["minutes"]: f"{s['sbd_mean']:.3f} / {s['abs_dic_mean']:.2f}" for s in scores}
        first = "-"
        if plans[name][0] == "leaf-small":
            first = f"{baseline['sbd_mean']:.3f} / {baseline['abs_dic_mean']:.2f}"
        lines.append(f"| {name} | {first} | " + " | ".join(cells.get(m, "-") for m in marks) + " |")
    write_text_atomic(out / "summary.md", "\n".join(lines) + "\n")
    record = {"images": images, "validation_images": val, "test_images": test_images, "minutes": minutes,
              "seed": seed, "baseline": baseline, "plans": results}
    write_text_atomic(out / "summary.json", json.dumps(record, indent=2) + "\n")
    _plot_small_data(results, baseline, images, out / "sbd_vs_minutes.png")
    print("\n" + "\n".join(lines))
    return record


RECIPES = {"leaf-small": leaf_small, "leave-one-style-out": leave_one_style_out, "small-data": small_data}
