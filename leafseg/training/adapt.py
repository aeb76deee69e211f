"""Self-training on unlabelled photographs: ``leafseg adapt PHOTOS... --weights leaf-small --out DIR``.

Each round (docs/ADAPT.md):

1. the teacher (``--weights`` in round 1, the previous round's student after it) labels a seeded
   subset of the photographs (``--photos-per-round``) under test-time augmentation
   (:func:`leafseg.inference.tta.detect_views`, matched across views by
   :func:`leafseg.inference.tta.match_views`);
2. :func:`select_pseudo_labels` keeps the leaves it is sure of (score and agreement across
   views), stores the ones it is unsure of as ignore regions (class id -1: neither leaf nor
   background for the student) and drops the photographs that are mostly unsure;
3. a student starts from the teacher's weights and fine-tunes all layers (Adam, a cosine rate
   from ``--lr``, ``--augment domain``) on the kept photographs and as many drawn rosettes
   (``--synthetic``, the leaf_small recipe's random style with clutter and realism), validated on held-out
   drawn rosettes (their labels are exact);
4. the student is the next round's teacher.

The result is ``DIR/adapted.weights.h5`` (config and detection settings stored in it, so
``leafseg predict --weights DIR`` uses it), ``DIR/report.json``, ``DIR/report.md`` and a
picture of what each round learnt from, ``DIR/pseudo_labels_round<k>.png``.

Time: ``--minutes`` is the budget of the whole run, counted across calls (the time of a call
that was killed counts up to its last saved step). Round k must end by k / rounds of it;
labelling stops at half of what is left of the round, training gets the rest and stops at
the round's end with its checkpoint written. A run out of time still ends with the newest
student as ``adapted.weights.h5``.

Resume: ``DIR/state.json`` records each phase done (written atomically), each photograph's
pseudo-labels are a folder renamed into place, and training resumes from its newest epoch
checkpoint; the same command, after Ctrl-C or a kill, continues where the run stopped.
A folder holding a run with other arguments is refused (only ``--minutes`` may change).

Layout of DIR::

    state.json  report.json  report.md  adapted.weights.h5  pseudo_labels_round<k>.png
    synthetic/rosettes, synthetic/prepared      the drawn rosettes (--synthetic N), drawn once
    round<k>/labels/<id>/                       label.json, and for a kept photograph
                                                images/<id>.png, masks/*.png, ignore/*.png
    round<k>/dataset/train|val/                 links: the round's training set
    round<k>/logs/                              the student's training run folder
    round<k>/student.weights.h5                 the round's student
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from leafseg import counted
from leafseg.data.dataset import IGNORE_DIR
from leafseg.data.masks import DEFAULT_MIN_AREA, leaf_palette
from leafseg.models.runs import ADAPTED_WEIGHTS, LOG_FILE, newest_run
from leafseg.models.runs import copy_weights, run_position, store_config_values
from leafseg.training.train import print_step
from mrcnn.fileio import atomic_path, write_text_atomic

__all__ = ["AdaptError", "AdaptOptions", "Selection", "select_pseudo_labels", "write_pseudo_label", "adapt",
           "round_table"]

logger = logging.getLogger(__name__)

# Defaults (docs/ADAPT.md says why). A leaf is kept when its score, averaged over the views
# that found it, is KEEP_SCORE or more and MIN_AGREEMENT of the other views found it: with 4
# views (the identity and 3 flips) 0.75 means all three, as 2 of 3 is 0.67. Leaves found with a
# score from LOW_SCORE up that are not kept are ignored; below LOW_SCORE the teacher's
# detections are background. A photograph whose kept leaves cover less than MIN_KEPT_SHARE of
# the leaf area found is dropped whole.
KEEP_SCORE = 0.9
MIN_AGREEMENT = 0.75
LOW_SCORE = 0.5
MIN_KEPT_SHARE = 0.5
VIEWS = 4
MATCH_IOU = 0.5
ROUNDS = 2
MINUTES = 60.0
PHOTOS_PER_ROUND = 200
STEPS = 1000
SYNTHETIC = 200
LEARNING_RATE = 1e-4
AUGMENT = "domain"
# The rosettes drawn beside the photographs: the leaf_small recipe's style, size, clutter and realism.
SYNTHETIC_STYLE = "random"
SYNTHETIC_CLUTTER = 0.5  # (leafseg.training.recipe.LEAF_SMALL_CLUTTER)
SYNTHETIC_SIZE = 500
# A round's labelling stops when it has used this share of what was left of the round.
LABEL_SHARE = 0.5
# Steps per training epoch at most (--checkpoint-steps): an epoch ends with a checkpoint, so it
# is what a killed run loses at worst.
CHECKPOINT_STEPS = 50
# Validation: batches of drawn rosettes per epoch, at most.
MAX_VALIDATION_STEPS = 10
# Photographs shown in each round's picture.
SHOWN = 6

STATE_FILE = "state.json"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
LABEL_FILE = "label.json"
STUDENT_FILE = "student.weights.h5"
_TMP_PREFIX = ".tmp-"
# Arguments a run folder is bound to: a rerun with another value is refused (--minutes and
# --workers may change).
BOUND = ("photos", "weights", "rounds", "photos_per_round", "steps", "checkpoint_steps", "synthetic", "synthetic_dir",
         "seed", "keep_score", "min_agreement", "low_score", "min_kept_share", "views", "lr", "augment",
         "hold_out_plants")


class AdaptError(Exception):
    """Bad input found before anything runs (exit status 2); the message names the option or file."""


############################################################
#  Pseudo-labels
############################################################

@dataclasses.dataclass
class Selection:
    """What one photograph gives the student.

    keep_image: whether it is used; reason: why not (None when kept).
    kept: bool [H, W, K] the leaves it is sure of; ignored: bool [H, W, U] the regions of the
    leaves it is unsure of (class id -1 for the student).
    leaves: one record per detection of the identity view: index, score (mean over the views
    that found it), agreement, area, fate ("kept", "ignored", "dropped") and reasons ("score",
    "disagreement" for an ignored leaf; "low score", "small" for a dropped one).
    kept_share: kept leaf area / leaf area found (kept and ignored leaves), 0 when none.
    """
    keep_image: bool
    reason: str | None
    kept: np.ndarray
    ignored: np.ndarray
    leaves: list
    kept_share: float

    def counts(self):
        """{kept, ignored, dropped, and each reason: count}."""
        out = {"kept": 0, "ignored": 0, "dropped": 0, "ignored_score": 0, "ignored_disagreement": 0,
               "dropped_low_score": 0, "dropped_small": 0}
        for leaf in self.leaves:
            out[leaf["fate"]] += 1
            for reason in leaf["reasons"]:
                out[f"{leaf['fate']}_{reason.replace(' ', '_')}"] += 1
        return out


def select_pseudo_labels(view_results, keep_score=KEEP_SCORE, min_agreement=MIN_AGREEMENT, low_score=LOW_SCORE,
                         min_kept_share=MIN_KEPT_SHARE, iou=MATCH_IOU, min_area=DEFAULT_MIN_AREA, matches=None):
    """The pseudo-labels of one photograph from its test-time views.

    view_results: one Matterport result dict per view ({rois, class_ids, scores, masks bool
        [H, W, n]}), identity first, mapped back to the photograph
        (:func:`leafseg.inference.tta.detect_views` of one image).
    keep_score, min_agreement: a leaf is kept when its score (averaged over the views that found
        it) is keep_score or more and the share of the other views that found it (mask IoU >=
        ``iou``) is min_agreement or more.
    low_score: a detection scoring less is dropped (background for the student); one from
        low_score up that is not kept is ignored (class -1: neither leaf nor background).
    min_kept_share: a photograph whose kept leaves cover less than this share of the leaf area
        found (kept and ignored) is dropped whole: its plant is mostly unsure.
    min_area: masks of fewer pixels are dropped.
    matches: :func:`leafseg.inference.tta.match_views` of the views (computed when None).

    A kept leaf's mask is the views' majority (``mask_vote >= 0.5``, the identity's mask where
    the vote leaves fewer than min_area pixels): a flipped view errs at other edges than the
    identity does, so the majority is the steadier outline. An ignored region is wider: every
    pixel that any view gave the leaf, so that no part of an unsure leaf is taught as background.
    Returns a :class:`Selection`.
    """
    identity = view_results[0]
    masks = np.asarray(identity["masks"], dtype=bool)
    height, width = masks.shape[:2]
    scores = np.asarray(identity["scores"], dtype=np.float64).reshape(-1)
    if matches is None:
        from leafseg.inference.tta import match_views

        matches = match_views(view_results, iou=iou)
    by_index = {int(m["index"]): m for m in matches}
    leaves, kept, ignored, ignored_leaf = [], [], [], []
    for index in range(scores.shape[0]):
        match = by_index.get(index, {})
        own = masks[..., index]
        if match:
            # match_views' mean_score counts a view that missed the leaf as 0; the score here is
            # the mean over the views that found it, so that score and agreement judge apart.
            votes = int(match["votes"])
            score = float(match["mean_score"]) * len(view_results) / votes
        else:
            votes, score = 1, float(scores[index])
        agreement = float(match.get("agreement", 0.0))
        vote = match.get("mask_vote")
        leaf = {"index": index, "score": round(score, 4), "agreement": round(agreement, 4), "votes": votes,
                "area": int(own.sum())}
        if score < low_score or scores[index] < low_score:
            leaf.update(fate="dropped", reasons=["low score"])
        elif own.sum() < min_area:
            leaf.update(fate="dropped", reasons=["small"])
        else:
            reasons = ((["score"] if score < keep_score else [])
                       + (["disagreement"] if agreement < min_agreement else []))
            majority = own if vote is None else np.asarray(vote) >= 0.5
            if majority.sum() < min_area:
                majority = own
            if reasons:
                leaf.update(fate="ignored", reasons=reasons)
                ignored.append(own | (np.asarray(vote) > 0) if vote is not None else own)
                ignored_leaf.append(majority)
            else:
                leaf.update(fate="kept", reasons=[], area=int(majority.sum()))
                kept.append(majority)
        leaves.append(leaf)

    def stack(items):
        return np.stack(items, axis=-1) if items else np.zeros((height, width, 0), dtype=bool)

    kept_area = int(stack(kept).any(axis=-1).sum())
    found_area = int(stack(kept + ignored_leaf).any(axis=-1).sum())
    share = kept_area / found_area if found_area else 0.0
    reason = None
    if not found_area:
        reason = f"no leaf found (scores >= {low_score})"
    elif not kept:
        reason = "no sure leaf"
    elif share < min_kept_share:
        reason = f"mostly unsure: kept leaves cover {share:.0%} of the leaf area found (< {min_kept_share:.0%})"
    return Selection(keep_image=reason is None, reason=reason, kept=stack(kept), ignored=stack(ignored),
                     leaves=leaves, kept_share=round(share, 4))


def _png(mask_or_image):
    import cv2

    ok, data = cv2.imencode(".png", mask_or_image)
    if not ok:
        raise OSError("PNG encoding failed")
    return data.tobytes()


def write_pseudo_label(labels_dir, sample_id, image, selection, record):
    """Write one photograph's pseudo-labels as ``labels_dir/<sample_id>/``, atomically (a
    temporary folder renamed): ``label.json`` (``record`` with the selection's leaves and
    counts) and, for a kept photograph, the prepared layout that
    :class:`leafseg.data.dataset.LeafDataset` reads: ``images/<id>.png``, ``masks/<id>_<k>.png``
    and ``ignore/<id>_<k>.png`` (class id -1). Returns the folder."""
    labels_dir = Path(labels_dir)
    final = labels_dir / sample_id
    tmp = labels_dir / f"{_TMP_PREFIX}{sample_id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if selection.keep_image:
            (tmp / "images").mkdir()
            (tmp / "images" / f"{sample_id}.png").write_bytes(_png(np.ascontiguousarray(image[..., ::-1])))
            for folder, masks in (("masks", selection.kept), (IGNORE_DIR, selection.ignored)):
                if masks.shape[-1]:
                    (tmp / folder).mkdir()
                for k in range(masks.shape[-1]):
                    (tmp / folder / f"{sample_id}_{k}.png").write_bytes(_png(masks[..., k].astype(np.uint8) * 255))
        full = dict(record, id=sample_id, kept_image=selection.keep_image, reason=selection.reason,
                    kept_share=selection.kept_share, counts=selection.counts(), leaves=selection.leaves)
        (tmp / LABEL_FILE).write_text(json.dumps(full, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def sample_id(path):
    """A photograph's id in the pseudo-label folders: its name and a digest of its full path
    (photographs of different folders may share a name)."""
    path = Path(path)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)[:40] or "photo"
    return f"{stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"


def working_image(image, config):
    """The photograph at the size the model sees it: shrunk (area averaging) so that its long
    side is IMAGE_MAX_DIM when the config resizes to that ("square", "pad64"), else as it is.
    Detections and the stored pseudo-labels are at this size."""
    import cv2

    height, width = image.shape[:2]
    limit = config.IMAGE_MAX_DIM if config.IMAGE_RESIZE_MODE in ("square", "pad64") else None
    if not limit or max(height, width) <= limit:
        return image
    scale = limit / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


############################################################
#  Options and state
############################################################

@dataclasses.dataclass
class AdaptOptions:
    """The arguments of a run (``leafseg adapt``'s options; docs/ADAPT.md)."""
    photos: list
    out: str
    weights: str = "leaf-small"
    rounds: int = ROUNDS
    minutes: float = MINUTES
    photos_per_round: int = PHOTOS_PER_ROUND
    steps: int = STEPS
    checkpoint_steps: int = CHECKPOINT_STEPS
    synthetic: int = SYNTHETIC
    synthetic_dir: str | None = None
    seed: int = 0
    keep_score: float = KEEP_SCORE
    min_agreement: float = MIN_AGREEMENT
    low_score: float = LOW_SCORE
    min_kept_share: float = MIN_KEPT_SHARE
    views: int = VIEWS
    lr: float = LEARNING_RATE
    augment: str = AUGMENT
    # Leave out the photographs of leafseg.measure.series.held_out_plants, to judge the result on them.
    hold_out_plants: bool = False
    workers: int = 1
    # The drawn rosettes' side in pixels (tests draw small ones).
    synthetic_size: int = SYNTHETIC_SIZE

    def bound(self):
        """{argument: value} that the run folder is bound to (paths made absolute)."""
        values = {name: getattr(self, name) for name in BOUND}
        values["photos"] = [str(Path(p).absolute()) for p in self.photos]
        if self.synthetic_dir is not None:
            values["synthetic_dir"] = str(Path(self.synthetic_dir).absolute())
        return values


def check_options(options):
    """Checks that need no model; raises AdaptError naming the option."""
    if not options.photos:
        raise AdaptError("no photographs given")
    checks = (("--rounds", options.rounds >= 1), ("--minutes", options.minutes > 0),
              ("--photos-per-round", options.photos_per_round >= 1), ("--steps", options.steps >= 1),
              ("--checkpoint-steps", options.checkpoint_steps >= 1),
              ("--synthetic", options.synthetic >= 0), ("--lr", options.lr > 0))
    for option, ok in checks:
        if not ok:
            raise AdaptError(f"{option} {getattr(options, option[2:].replace('-', '_'))}: expected a positive value")
    from leafseg.inference.tta import VIEW_COUNTS

    if options.views not in VIEW_COUNTS:
        raise AdaptError(f"--views {options.views}: expected one of {', '.join(map(str, VIEW_COUNTS))}")
    for option in ("keep_score", "min_agreement", "low_score", "min_kept_share"):
        value = getattr(options, option)
        if not 0 <= value <= 1:
            raise AdaptError(f"--{option.replace('_', '-')} {value}: expected a number in [0, 1]")
    if options.low_score > options.keep_score:
        raise AdaptError(f"--low-score {options.low_score} is above --keep-score {options.keep_score}")
    if options.synthetic_dir is not None and not (Path(options.synthetic_dir) / "train").is_dir():
        raise AdaptError(f"--synthetic-dir {options.synthetic_dir}: not a prepared folder (no train/ in it; "
                         "leafseg prepare writes one)")


class RunState:
    """``DIR/state.json``: the run's arguments, the time spent and each phase done, saved
    atomically after every step that a rerun must not repeat."""

    def __init__(self, out, options):
        self.path = Path(out) / STATE_FILE
        self.data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else None
        bound = options.bound()
        if self.data is None:
            self.data = {"version": 1, "arguments": bound, "spent_seconds": 0.0, "calls": 0, "rounds": {},
                         "phase": "starting"}
        else:
            saved = self.data.get("arguments", {})
            differ = [name for name in BOUND if saved.get(name) != bound[name]]
            if differ:
                shown = "; ".join(f"--{name.replace('_', '-')} {_short(saved.get(name))} (now {_short(bound[name])})"
                                  for name in differ)
                raise AdaptError(f"{out} holds an adapt run with other arguments: {shown}. Run it with the same "
                                 "arguments to continue it (only --minutes may change), or use another --out")
        self.data["minutes"] = options.minutes
        self.data["calls"] = self.data.get("calls", 0) + 1

    def round(self, number):
        return self.data["rounds"].setdefault(str(number), {})

    def save(self, clock=None, **values):
        if clock is not None:
            self.data["spent_seconds"] = round(clock.spent(), 2)
        self.data.update(values)
        write_text_atomic(self.path, json.dumps(self.data, indent=1) + "\n")


def _short(value):
    if isinstance(value, list) and len(value) > 3:
        return f"[{', '.join(map(str, value[:3]))}, ... {len(value)} in all]"
    return json.dumps(value) if isinstance(value, list) else str(value)


class Clock:
    """Seconds of the budget spent, across calls: what earlier calls recorded plus this call's."""

    def __init__(self, minutes, spent_before=0.0):
        self.budget = float(minutes) * 60
        self.before = float(spent_before)
        self.started = time.monotonic()

    def spent(self):
        return self.before + time.monotonic() - self.started

    def round_end(self, number, rounds):
        """The spent seconds by which round ``number`` (from 1) ends: its share of the budget."""
        return self.budget * number / rounds


############################################################
#  Data
############################################################

def synthetic_data(options, out):
    """The prepared folder of drawn rosettes: ``--synthetic-dir``, or ``--synthetic`` rosettes
    drawn once into ``out/synthetic`` (the leaf_small recipe's random style, half of them with
    clutter, with the realism options of its second fine-tuning: petioles as wide as real ones,
    moss, seedling crops, agar); None for none."""
    if options.synthetic_dir is not None:
        return Path(options.synthetic_dir)
    if options.synthetic == 0:
        return None
    from leafseg.data.prepare import prepare_dataset
    from leafseg.synth.rosettes import write_dataset
    from leafseg.synth.realism import PHOTO_MIX

    folder = Path(out) / "synthetic"
    write_dataset(folder / "rosettes", options.synthetic, seed=options.seed, size=options.synthetic_size,
                  style=SYNTHETIC_STYLE, workers=options.workers, clutter=SYNTHETIC_CLUTTER,
                  realism=PHOTO_MIX, progress=False)
    prepare_dataset(folder / "rosettes", folder / "prepared", seed=options.seed, workers=options.workers,
                    progress=False)
    return folder / "prepared"


def _samples(folder):
    """The sample folders (holding images/<id>.*) of a prepared subset folder, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and any((p / "images").glob(f"{p.name}.*")))


def _link_sample(source, target_dir, name):
    """``target_dir/<name>/`` as a sample of the prepared layout whose files are links to the
    sample folder ``source`` (relative links: the run folder can move)."""
    image = next((source / "images").glob(f"{source.name}.*"))
    sample = target_dir / name
    (sample / "images").mkdir(parents=True)
    os.symlink(os.path.relpath(image, sample / "images"), sample / "images" / f"{name}{image.suffix}")
    for folder in ("masks", IGNORE_DIR):
        if (source / folder).is_dir():
            os.symlink(os.path.relpath(source / folder, sample), sample / folder)


def build_round_dataset(folder, kept, synthetic, seed):
    """The round's training folder (links, rebuilt each call): ``train/`` holds the kept
    photographs and as many drawn rosettes (a seeded choice, repeated when there are fewer), 1:1;
    ``val/`` the drawn rosettes' validation split. Returns (training images, validation images)."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "train").mkdir(parents=True)
    for sample in kept:
        _link_sample(sample, folder / "train", f"p-{sample.name}")
    drawn = _samples(Path(synthetic) / "train") if synthetic is not None else []
    if drawn and kept:
        rng = np.random.default_rng([seed, 7])
        order = [drawn[i] for i in rng.permutation(len(drawn))]
        for k in range(len(kept)):
            _link_sample(order[k % len(order)], folder / "train", f"s{k // len(order)}-{order[k % len(order)].name}")
    held = _samples(Path(synthetic) / "val") if synthetic is not None else []
    if held:
        (folder / "val").mkdir()
        for sample in held:
            _link_sample(sample, folder / "val", f"s-{sample.name}")
    return len(_samples(folder / "train")), len(held)


############################################################
#  One round
############################################################

def choose_photos(photos, number, per_round, seed):
    """Round ``number``'s photographs (from 1): consecutive slices of one seeded permutation, so
    that successive rounds see other photographs while there are more than a round's."""
    order = np.random.default_rng(seed).permutation(len(photos))
    take = min(per_round, len(photos))
    start = ((number - 1) * take) % len(photos)
    chosen = [order[(start + i) % len(photos)] for i in range(take)]
    return [str(photos[i]) for i in chosen]


def label_round(model, photos, labels_dir, options, clock, deadline, state, entry, detect=None):
    """Label ``photos`` with the teacher ``model`` into ``labels_dir`` (skipping those already
    written) until the spent seconds pass ``deadline``; returns how many this call labelled and
    whether every photograph is done."""
    from leafseg.inference.predict import ImageReadError, read_image

    if detect is None:
        from leafseg.inference.tta import detect_views as detect
    labels_dir = Path(labels_dir)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for leftover in labels_dir.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    done = 0
    for count, photo in enumerate(photos, start=1):
        sid = sample_id(photo)
        if (labels_dir / sid / LABEL_FILE).is_file() or (labels_dir / f"{sid}.unreadable").is_file():
            continue
        if clock.spent() > deadline:
            return done, False
        try:
            image = working_image(read_image(photo), model.config)
        except ImageReadError as err:
            logger.warning("%s", err)
            write_text_atomic(labels_dir / f"{sid}.unreadable", f"{err}\n")
            continue
        views = detect(model, [image], views=options.views)[0]
        selection = select_pseudo_labels(views, keep_score=options.keep_score, min_agreement=options.min_agreement,
                                         low_score=options.low_score, min_kept_share=options.min_kept_share)
        write_pseudo_label(labels_dir, sid, image, selection, {"photo": str(photo), "size": list(image.shape[:2])})
        done += 1
        entry["labelled_this_call"] = entry.get("labelled_this_call", 0) + 1
        entry["labelled_total"] = entry.get("labelled_total", 0) + 1
        state.save(clock)
        if count % 25 == 0:
            print(f"  labelled {count}/{len(photos)}", flush=True)
    return done, True


def round_summary(labels_dir):
    """Counts of a round's pseudo-labels from their label.json files: photographs labelled,
    kept and dropped (and why), leaves kept, ignored and dropped (and why), mean agreement."""
    records = [json.loads(p.read_text()) for p in sorted(Path(labels_dir).glob(f"*/{LABEL_FILE}"))]
    counts = {"kept": 0, "ignored": 0, "dropped": 0, "ignored_score": 0, "ignored_disagreement": 0,
              "dropped_low_score": 0, "dropped_small": 0}
    reasons = {}
    agreements = []
    for record in records:
        for key, value in record["counts"].items():
            counts[key] = counts.get(key, 0) + value
        if not record["kept_image"]:
            key = record["reason"].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        agreements += [leaf["agreement"] for leaf in record["leaves"] if leaf["fate"] != "dropped"]
    kept = sum(r["kept_image"] for r in records)
    unreadable = len(list(Path(labels_dir).glob("*.unreadable")))
    return {"photos_labelled": len(records), "unreadable": unreadable, "images_kept": kept,
            "images_dropped": len(records) - kept, "images_dropped_why": reasons,
            "leaves_kept": counts["kept"], "leaves_ignored": counts["ignored"], "leaves_dropped": counts["dropped"],
            "ignored_why": {"score": counts["ignored_score"], "disagreement": counts["ignored_disagreement"]},
            "dropped_why": {"low score": counts["dropped_low_score"], "small": counts["dropped_small"]},
            "mean_agreement": round(float(np.mean(agreements)), 4) if agreements else None}


def epoch_plan(steps, checkpoint_steps=CHECKPOINT_STEPS):
    """(epochs, steps per epoch) of ``steps`` training steps in epochs of at most
    ``checkpoint_steps`` (their product is ``steps`` or a little more)."""
    epochs = math.ceil(steps / checkpoint_steps)
    return epochs, math.ceil(steps / epochs)


def train_argv(dataset, logs, teacher, options, number, validation_images, batch, resume):
    """``leafseg train`` arguments of round ``number``'s student: all layers from the teacher's
    weights (and the config stored in them), Adam with a cosine rate from --lr, --augment."""
    epochs, per_epoch = epoch_plan(options.steps, options.checkpoint_steps)
    validation = min(MAX_VALIDATION_STEPS, math.ceil(validation_images / batch)) if validation_images else 0
    argv = ["--dataset", str(dataset), "--logs", str(logs), "--seed", str(options.seed + number), "--verbose", "2",
            "--epochs", str(epochs), "--steps-per-epoch", str(per_epoch), "--validation-steps", str(validation),
            "--keep-checkpoints", "2"]
    if resume:
        return argv + ["--resume"]
    return argv + ["--weights", str(teacher), "--stage", "all", "--optimizer", "adam", "--lr", str(options.lr),
                   "--schedule", "cosine", "--augment", options.augment]


def _progress_callback(state, clock, entry, per_epoch, number, rounds):
    """A Keras callback that records each finished epoch (the steps they hold, the seconds
    spent training) in the state and stops training after the step that passes the end of
    round ``number`` (the epoch's checkpoint is still written)."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps = 0
            self.started, self.seconds = clock.spent(), entry.get("seconds", 0.0)

        def on_train_batch_end(self, batch, logs=None):
            self.steps = batch + 1
            if clock.spent() > clock.round_end(number, rounds):
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            entry.update(epochs_done=epoch + 1, steps_done=epoch * per_epoch + self.steps,
                         seconds=self.seconds + clock.spent() - self.started)
            state.save(clock)

    return Progress()


def read_losses(logs):
    """(first epoch's loss, last epoch's loss, last val_loss or None, epochs) from the newest run's
    training_log.csv under ``logs``; Nones without one."""
    import csv

    run_dir = newest_run(logs)
    path = run_dir / LOG_FILE if run_dir is not None else None
    if path is None or not path.is_file():
        return None, None, None, 0
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None, None, None, 0

    def number(row, key):
        try:
            return round(float(row[key]), 4)
        except (KeyError, TypeError, ValueError):
            return None

    return number(rows[0], "loss"), number(rows[-1], "loss"), number(rows[-1], "val_loss"), len(rows)


############################################################
#  The picture and the report
############################################################

def hatch(shape, spacing=6, width=2):
    """bool [H, W]: diagonal stripes, ``width`` pixels of every ``spacing``."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy + xx) % spacing < width


def overlay_pseudo_labels(image, kept, ignored):
    """The photograph with kept leaves in leaf colours and ignored regions grey and hatched, uint8 [H, W, 3]."""
    out = image.astype(np.float32) * 0.55
    grey = ignored.any(axis=-1) if ignored.shape[-1] else np.zeros(image.shape[:2], bool)
    out[grey] = out[grey] * 0.4 + 0.6 * 150
    stripes = grey & hatch(image.shape[:2])
    out[stripes] = 60
    colours = leaf_palette(kept.shape[-1]).astype(np.float32)
    for k in range(kept.shape[-1]):
        leaf = kept[..., k]
        out[leaf] = image[leaf].astype(np.float32) * 0.4 + colours[k] * 0.6
    return np.clip(out, 0, 255).astype(np.uint8)


def plant_box(masks, margin=0.15):
    """(y1, x1, y2, x2) of the masks' union [H, W, N] widened by ``margin`` of its size on each
    side, within the image: the part of a photograph worth showing (the whole one without masks)."""
    height, width = masks.shape[:2]
    rows, cols = np.flatnonzero(masks.any(axis=(1, 2))), np.flatnonzero(masks.any(axis=(0, 2)))
    if not rows.size:
        return 0, 0, height, width
    pad_y, pad_x = round(margin * (rows[-1] + 1 - rows[0])), round(margin * (cols[-1] + 1 - cols[0]))
    return (max(0, rows[0] - pad_y), max(0, cols[0] - pad_x), min(height, rows[-1] + 1 + pad_y),
            min(width, cols[-1] + 1 + pad_x))


def draw_round(labels_dir, path, title, count=SHOWN):
    """``path``: the first ``count`` kept photographs of a round's pseudo-labels (cut to the
    plant, :func:`plant_box`), each above its kept leaves (colours) and ignored regions (grey,
    hatched). Returns the path, or None when no photograph was kept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leafseg.data.dataset import LeafDataset

    labels_dir = Path(labels_dir)
    if not _samples(labels_dir):
        return None
    dataset = LeafDataset()
    dataset.load_leaves(labels_dir.parent, labels_dir.name)
    dataset.prepare()
    shown = list(dataset.image_ids)[:count]
    fig, axes = plt.subplots(2, len(shown), figsize=(3 * len(shown), 7), squeeze=False)
    for column, image_id in enumerate(shown):
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        drawn = overlay_pseudo_labels(image, masks[..., class_ids > 0], masks[..., class_ids < 0])
        y1, x1, y2, x2 = plant_box(masks)
        axes[0, column].imshow(image[y1:y2, x1:x2])
        axes[1, column].imshow(drawn[y1:y2, x1:x2])
        axes[0, column].set_title(dataset.image_info[image_id]["id"][:24], fontsize=8)
        axes[1, column].set_title(f"{int((class_ids > 0).sum())} kept, {int((class_ids < 0).sum())} ignored",
                                  fontsize=8)
        for row in (0, 1):
            axes[row, column].axis("off")
    fig.suptitle(title + "\nkept leaves in colour; ignored (unsure) regions grey and hatched", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


ROUND_COLUMNS = ("round", "photos labelled", "images kept / dropped", "leaves kept", "ignored (score / disagreement)",
                 "dropped (low score / small)", "mean agreement", "steps", "loss first -> last", "val loss",
                 "minutes")


def _cell(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def round_table(rounds):
    """The markdown table of the rounds' records (report.json's "rounds")."""
    lines = ["| " + " | ".join(ROUND_COLUMNS) + " |", "|" + "---|" * len(ROUND_COLUMNS)]
    for r in rounds:
        train = r.get("training") or {}
        cells = [r["round"], r.get("photos_labelled"), f"{r.get('images_kept')} / {r.get('images_dropped')}",
                 r.get("leaves_kept"),
                 f"{r.get('leaves_ignored')} ({r['ignored_why']['score']} / {r['ignored_why']['disagreement']})"
                 if "ignored_why" in r else "-",
                 f"{r.get('leaves_dropped')} ({r['dropped_why']['low score']} / {r['dropped_why']['small']})"
                 if "dropped_why" in r else "-",
                 _cell(r.get("mean_agreement")), _cell(train.get("steps")),
                 f"{_cell(train.get('loss_first'))} -> {_cell(train.get('loss_last'))}",
                 _cell(train.get("val_loss_last")), _cell(r.get("minutes"), 1)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def write_report(out, state, options, outcome):
    """report.json and report.md of the run from the state and the rounds' pseudo-labels;
    returns the record."""
    out = Path(out)
    rounds = []
    for key in sorted(state.data["rounds"], key=int):
        entry = state.data["rounds"][key]
        if "labelled" not in entry and "labelled_total" not in entry:
            continue
        record = {"round": int(key), "teacher": entry.get("teacher"), "photos_chosen": len(entry.get("photos", [])),
                  **round_summary(out / f"round{key}" / "labels"),
                  "labelled_this_call": entry.get("labelled_this_call", 0),
                  "labelling_finished": bool(entry.get("labelled")),
                  "training": entry.get("trained"), "picture": entry.get("picture"),
                  "minutes": round((entry.get("label_seconds", 0.0) + (entry.get("trained") or {}).get("seconds", 0.0))
                                   / 60, 2)}
        rounds.append(record)
    report = {"weights": str(out / ADAPTED_WEIGHTS), "from": state.data["arguments"]["weights"], "outcome": outcome,
              "minutes_budget": options.minutes, "minutes_spent": round(state.data.get("spent_seconds", 0.0) / 60, 2),
              "calls": state.data.get("calls"), "photos_found": state.data.get("photos_found"),
              "photos_held_out": state.data.get("photos_held_out"), "arguments": state.data["arguments"],
              "rounds": rounds}
    write_text_atomic(out / REPORT_JSON, json.dumps(report, indent=1) + "\n")
    lines = [f"# leafseg adapt: {out}", "", f"From {report['from']} to {report['weights']}: {outcome}.",
             f"{report['minutes_spent']} of {options.minutes:g} minutes spent over {report['calls']} call(s).", "",
             round_table(rounds), "",
             "Kept: leaves scoring >= {keep_score} that >= {min_agreement} of the other views found; "
             "ignored (class -1, "
             "neither leaf nor background): leaves scoring >= {low_score} that are not kept; dropped (background): "
             "scores below {low_score}. Photographs whose kept leaves cover < {min_kept_share} of the leaf area found "
             "are dropped whole. See docs/ADAPT.md for how to judge the result without labels.".format(
                 **state.data["arguments"]), ""]
    lines += [f"![round {r['round']}]({Path(r['picture']).name})" for r in rounds if r.get("picture")]
    write_text_atomic(out / REPORT_MD, "\n".join(lines) + "\n")
    return report


############################################################
#  The run
############################################################

def find_photos(photos, out, hold_out_plants=False):
    """The photograph files of ``photos`` (files, folders with their subfolders, patterns; the
    output folder left out), and how many were held out: with ``hold_out_plants``, the photographs of the plants
    that :func:`leafseg.measure.series.held_out_plants` holds out (the plant of a photograph is
    :func:`leafseg.measure.series.plant_key` of its name without suffix, as
    benchmarks/bench_real_series.py names it), so that the adapted model can be judged on plants
    it never saw. Raises AdaptError when none is left."""
    from leafseg.inference.predict import find_inputs
    from leafseg.measure.series import held_out_plants, plant_key

    # A folder is searched with its subfolders (photographs kept by accession, tray or day).
    inputs, parents = [], set()
    for source in photos:
        inputs.append(source)
        if Path(source).is_dir():
            folders = sorted(path for path in Path(source).rglob("*") if path.is_dir())
            inputs += [str(path) for path in folders]
            parents.update(path.parent.resolve() for path in folders)
    files, problems, _, _ = find_inputs(inputs, exclude=out)
    for source, reason in problems:
        if Path(source).resolve() not in parents:  # a folder of folders holds no photograph itself
            logger.warning("%s: %s", source, reason)
    held = set()
    if hold_out_plants:
        held = held_out_plants({plant_key(path.stem) for path in files})
    kept = [path.absolute() for path in files if plant_key(path.stem) not in held]
    if not kept:
        raise AdaptError(f"no photographs found in {', '.join(map(str, photos))}"
                         + (f" ({len(files)} of held-out plants left out)" if files else ""))
    return kept, len(files) - len(kept)


def adapt(options, callbacks=None, detect=None):
    """Run (or continue) the self-training of ``options`` (:class:`AdaptOptions`); returns the
    report record (also in ``out/report.json``).

    callbacks: extra Keras callbacks for each student's training (tests hold a run with one).
    detect: the test-time views of a model, :func:`leafseg.inference.tta.detect_views` when None.
    Raises AdaptError for bad input, leafseg.training.train.SetupError when training cannot
    start, and whatever stops training.
    """
    from leafseg.models.loading import resolve_weights

    check_options(options)
    out = Path(options.out)
    try:
        teacher = resolve_weights(options.weights)
    except FileNotFoundError as err:
        raise AdaptError(f"--weights {options.weights}: {err}") from None
    options = dataclasses.replace(options, weights=str(teacher))
    photos, held = find_photos(options.photos, out, options.hold_out_plants)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState(out, options)
    clock = Clock(options.minutes, state.data.get("spent_seconds", 0.0))
    for entry in state.data["rounds"].values():
        entry["labelled_this_call"] = 0
    state.save(clock, phase="starting")
    print(f"leafseg adapt: {counted(len(photos), 'photograph')}"
          + (f" ({held} of held-out plants left out)" if options.hold_out_plants else "")
          + f", {counted(options.rounds, 'round')}, {options.minutes:g} minutes ({clock.spent() / 60:.1f} spent before), "
            f"teacher {teacher}", flush=True)
    state.save(clock, photos_found=len(photos), photos_held_out=held)

    synthetic = state.data.get("synthetic_prepared")
    if "synthetic_prepared" not in state.data:
        print(f"drawing {options.synthetic} rosettes in {out / 'synthetic'}" if options.synthetic_dir is None
              else f"drawn rosettes from {options.synthetic_dir}", flush=True)
        prepared = synthetic_data(options, out)
        synthetic = str(prepared) if prepared is not None else None
        state.save(clock, synthetic_prepared=synthetic)
    outcome = f"{counted(options.rounds, 'round')} done"
    for number in range(1, options.rounds + 1):
        entry = state.round(number)
        later = str(number + 1) in state.data["rounds"]
        if later or entry.get("trained", {}).get("status") == "completed":
            teacher = Path(entry["trained"]["student"]) if entry.get("trained", {}).get("student") else teacher
            continue
        stop = run_round(number, teacher, photos, synthetic, options, state, clock, entry, callbacks, detect)
        if entry.get("trained", {}).get("student"):
            teacher = Path(entry["trained"]["student"])
        if stop:
            outcome = stop
            break
    final = copy_weights(teacher, out / ADAPTED_WEIGHTS)
    if Path(teacher) != Path(options.weights):
        _restore_training_values(final, options.weights)
    state.save(clock, phase="done")
    report = write_report(out, state, options, outcome)
    print("\n" + round_table(report["rounds"]))
    what = "a student" if Path(teacher) != Path(options.weights) else "the teacher, untrained"
    print(f"\n{outcome}. {final} ({what}); "
          f"report {out / REPORT_MD}", flush=True)
    return report


def _restore_training_values(weights, original):
    """The steps per epoch and validation steps of the original model's config in the stored
    config of ``weights`` (adapt's own are of no use to a later ``leafseg train``)."""
    from leafseg.config import config_for_weights

    config, _ = config_for_weights(original)
    store_config_values(weights, STEPS_PER_EPOCH=config.STEPS_PER_EPOCH, VALIDATION_STEPS=config.VALIDATION_STEPS)


def run_round(number, teacher, photos, synthetic, options, state, clock, entry, callbacks, detect):
    """Round ``number``: label, select, train. Returns None to go on, else why the run stops."""
    from leafseg.models.loading import load_inference_model

    out = Path(options.out)
    folder = out / f"round{number}"
    end = clock.round_end(number, options.rounds)
    if not entry.get("labelled") and clock.spent() >= end:
        return f"out of time before round {number}"
    entry.setdefault("teacher", str(teacher))
    if "photos" not in entry:
        entry["photos"] = choose_photos(photos, number, options.photos_per_round, options.seed)
        state.save(clock)
    print_step(number, options.rounds, f"Round {number}, teacher {teacher}")
    if not entry.get("labelled"):
        print(f"  labelling {counted(len(entry['photos']), 'photograph')} ({counted(options.views, 'view')} each)",
              flush=True)
        started = clock.spent()
        deadline = started + LABEL_SHARE * max(end - started, 0.0)
        state.save(clock, phase=f"labelling round {number}")
        model, _, _ = load_inference_model(teacher, min_score=options.low_score, model_dir=folder / "logs")
        _, finished = label_round(model, entry["photos"], folder / "labels", options, clock, deadline, state, entry,
                                  detect)
        del model
        entry["label_seconds"] = entry.get("label_seconds", 0.0) + clock.spent() - started
        entry["labelled"] = dict(round_summary(folder / "labels"), finished=finished)
        state.save(clock)
        if not finished:
            print(f"  labelling stopped at the round's time "
                  f"({counted(entry['labelled']['photos_labelled'], 'photograph')})")
    summary = round_summary(folder / "labels")
    if "picture" not in entry:
        picture = draw_round(folder / "labels", out / f"pseudo_labels_round{number}.png",
                             f"round {number}: what the student learns from")
        entry["picture"] = str(picture) if picture else None
        state.save(clock)
    print(f"  {summary['images_kept']} of {counted(summary['photos_labelled'], 'photograph')} kept; leaves: "
          f"{summary['leaves_kept']} kept, {summary['leaves_ignored']} ignored, {summary['leaves_dropped']} dropped; "
          f"mean agreement {_cell(summary['mean_agreement'])}", flush=True)
    kept = _samples(folder / "labels")
    if not kept:
        entry["trained"] = {"status": "nothing to train on", "seconds": 0.0}
        state.save(clock)
        return (f"round {number}: no photograph kept, nothing to train on (look at the teacher's detections with "
                "leafseg predict; a run with a lower --keep-score or --min-agreement needs another --out)")
    return train_round(number, teacher, kept, synthetic, options, state, clock, entry, callbacks)


def train_round(number, teacher, kept, synthetic, options, state, clock, entry, callbacks):
    """The student of round ``number``: trained (or resumed) until --steps or the round's end."""
    from leafseg.config import config_for_weights
    from leafseg.training.train import run as train
    from mrcnn.weights import checkpoints_in

    folder = Path(options.out) / f"round{number}"
    logs = folder / "logs"
    epochs, per_epoch = epoch_plan(options.steps, options.checkpoint_steps)
    trained = entry.setdefault("trained", {"status": "not started", "seconds": 0.0, "epochs_done": 0,
                                           "steps_done": 0})
    done = run_position(logs)[1]
    left = clock.round_end(number, options.rounds) - clock.spent()
    if done < epochs and left > 1.0:
        train_images, val_images = build_round_dataset(folder / "dataset", kept, synthetic, options.seed + number)
        batch = config_for_weights(teacher)[0].BATCH_SIZE
        resume = done > 0
        print(f"  student: {counted(train_images, 'image')} ({counted(len(kept), 'photograph')}, "
              f"{counted(train_images - len(kept), 'drawn rosette')}), "
              f"{'resuming after epoch ' + str(done) if resume else 'from the teacher'}, epochs of {per_epoch} steps "
              f"to {epochs}, {left / 60:.1f} minutes left in the round", flush=True)
        state.save(clock, phase=f"training round {number}")
        started, before = clock.spent(), trained.get("seconds", 0.0)
        progress = _progress_callback(state, clock, trained, per_epoch, number, options.rounds)
        trained["status"] = "running"
        try:
            train(train_argv(folder / "dataset", logs, teacher, options, number, val_images, batch, resume),
                  callbacks=[progress, *(callbacks or [])])
        finally:
            trained["seconds"] = before + clock.spent() - started
            state.save(clock)
        done = run_position(logs)[1]
    run_dir = newest_run(logs)
    if run_dir is None or not checkpoints_in(run_dir):
        trained["status"] = "out of time"
        state.save(clock)
        return f"out of time before the student of round {number} trained"
    student = copy_weights(checkpoints_in(run_dir)[-1], folder / STUDENT_FILE)
    first, last, val_loss, _ = read_losses(logs)
    trained.update(status="completed" if done >= epochs else "stopped at the time budget", student=str(student),
                   epochs=epochs, epochs_done=done, steps=trained.get("steps_done"), loss_first=first, loss_last=last,
                   val_loss_last=val_loss)
    state.save(clock)
    if done < epochs and number == options.rounds:
        return "stopped at the time budget"
    return None
