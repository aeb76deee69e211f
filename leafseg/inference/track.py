"""Time-lapses: the same plants photographed day after day, their leaves segmented as ``leafseg
predict`` does and linked from photograph to photograph, so that a leaf keeps its id.

    leafseg track photos/plant07/                 # one plant's photographs; results in tracks/
    leafseg track photos/ --out growth/           # a folder of folders (one plant each), or a flat
                                                  # folder of dated names (split by plant)
    leafseg track photos/ --group-by 'D\\d+-(?P<plant>\\d+)'   # the plant is the regex's match
    python scripts/track.py ...                   # the same command

**Plants.** Each INPUT folder is one of:

* a folder of photographs. With ``--group-by REGEX`` they are split by plant: the regex's group
  ``plant`` (or its first group, or the whole match) names a photograph's plant
  (:func:`leafseg.measure.series.plant_key`); a name it does not match is an error naming it.
  Without it, when every name carries a date (or a day number, below), the plant is the name
  without its suffix, a final ``_rgb`` and its date (``plant_key``: ``A1_2016_10_01_rgb.jpg`` and
  ``A1_2016_10_02_rgb.jpg`` are plant ``A1``); when that gives one plant, or a plant per
  photograph (names such as ``IMG_0012_2016_10_01``: a warning says so), or the names carry no
  date, the folder is one plant, named after the folder.
* a folder of folders (its photographs are all in subfolders): each subfolder is one plant,
  named after it (split further as above when its names give several plants: ``sub/key``).

Label images (``*_label.png``, CVPPP's ``_fg.png`` ...) are skipped as ``predict`` skips them, so
a folder of ``leafseg synth --time-lapse`` photographs and labels tracks the photographs.

**Time order** (per plant), ``--order``:

* ``date``: the date in the file name (:func:`leafseg.measure.series.date_in_name`:
  ``2016_10_01``, ``2016-10-01``, ``20161001``, with an optional hour and minute after it, and
  seconds after those), else a day number (:func:`day_in_name`: ``_D05``, ``day5``, ``DAS12``,
  ``-d3``, the last one in the name; a plant whose names all give the same number has none);
* ``exif``: the photograph's EXIF DateTimeOriginal (or DateTimeDigitized), read with PIL;
* ``name``: natural order of the file names (``p2`` before ``p10``);
* ``auto`` (the default): date when every name of the plant has one, else EXIF when every
  photograph has it, else name.

Ties are broken by natural order. An explicit ``date`` or ``exif`` that a photograph lacks is an
error naming it. ``order.csv`` says what was used: plant, frame (0, 1, ... in time order),
image (the frame id), file, date (ISO), day (days since the plant's first frame: from the
dates, the day numbers or EXIF; empty in name order) and order (date, day, exif or name).

**Segmentation** is predict's: the same model loading and options (``--weights``, ``--config``,
``--set``, ``--min-score``, ``--precision``, ``--plants``, ``--grid``, ``--tta``), each
photograph through :class:`leafseg.inference.plants.PlantsFirst` and
:func:`leafseg.inference.predict.visible_leaves` (visible leaves, higher score on top). In a
scene split by plant (a tray), each of the photograph's plants is tracked on its own, as
``<plant>/<scene plant>`` (use ``--grid`` so that a pot keeps its name A1, A2, ... from day to
day); a photograph of one plant is the plant itself. With a model of several classes, only the class
named leaf is tracked (stems or pebbles are no leaves of the rosette); without one, every class.

**Tracking** is :class:`leafseg.measure.tracking.LeafTracker` per plant, in time order: a leaf
keeps its id, a new leaf gets the next id, a leaf missed for up to ``--max-gap`` frames (3) gets
its own id back; ids are never reused. ``--min-frames N`` then drops the tracks seen in fewer
than N frames (not those starting in the last N - 1 frames;
:func:`leafseg.measure.tracking.drop_short_tracks`); the default 1 keeps every leaf found.

**Outputs** in ``--out`` (default ``tracks``), each written atomically::

    order.csv                      the frames in time order (above)
    tracks.csv                     one row per leaf and frame: plant, frame, image, date, day,
                                   leaf (the track id), then the traits of predict's leaves.csv
                                   (score, area, box, centroid, length, width, orientation,
                                   perimeter; leafseg.measure.phenotype.measure_leaves)
    growth.csv                     one row per plant and frame: leaf_count, new_leaves (tracks
                                   first seen in it), rosette_area_px (mm2 with --mm-per-pixel),
                                   rgr_per_day: the relative growth rate of the rosette area,
                                   (ln A_t - ln A_{t-1}) / (days between the frames); empty at
                                   the first frame, when an area is 0 or in name order
    growth.png                     rosette area and leaf count against time, one line per plant
    <plant>/labels/<image>_label.png   track ids: the same leaf has the same value in every frame
                                   (palette PNG; a 16-bit PNG when the plant has > 255 tracks)
    <plant>/overlays/<image>_overlay.png   the photograph, each leaf in its track's colour, its id
    <plant>/leaf_area.png          each leaf's area against time, one line per leaf
    report.html                    one page (leafseg.inference.report): overlay thumbnails,
                                   growth.csv as a sortable table, the plots, the outliers of
                                   each plant's series (a count that jumps, a plant lost, a
                                   near-empty frame); leafseg report OUT_DIR rebuilds it

``<image>`` is the photograph's name without its suffix and a final ``_rgb`` (predict's
:func:`leafseg.inference.predict.output_name`). Time is in days when the order gives times,
else in frames.

**Interrupt and rerun.** Each photograph's segmentation is kept in
``<out>/.track/frames/<plant>/<image>.npz`` (the visible-leaf label, scores, scene plants and the
input file), written atomically once done; ``<out>/.track/settings.json`` holds what it depends
on (weights, config, precision, --plants, --grid, --tta). A rerun into the same folder segments
only the photographs without one and tracks every plant again over all its frames (cheap), so
the outputs are those of a run in one go. A rerun with other segmentation settings stops with an
error naming them (``--overwrite`` segments again); the tracking options, units and order may
change freely.
"""
from __future__ import annotations

import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from leafseg import counted
from leafseg.data.masks import PALETTE_SIZE, leaf_palette, save_indexed_png
from leafseg.data.prepare import DEFAULT_LABEL_SUFFIX
from leafseg.inference.plants import PLANT_MODES, PlantsFirst, parse_grid
from leafseg.inference.predict import (IMAGE_SUFFIXES, LEAF_CLASS, ImageReadError, input_names, is_label_file,
                                       output_name, read_image, visible_leaves)
from leafseg.inference.results import SettingsMismatch, plain_value, setting_change
from leafseg.inference.tta import TTAModel, view_names
from leafseg.measure.metrics import write_csv
from leafseg.measure.phenotype import measure_leaves, round_traits
from leafseg.measure.series import date_in_name, plant_key
from leafseg.measure.tracking import LeafTracker, drop_short_tracks, track_label
from mrcnn.fileio import atomic_path, write_text_atomic

__all__ = ["ORDERS", "TRACK_DIR", "day_in_name", "exif_time", "find_plants", "Frame", "order_frames",
           "FrameStore", "TrackReport", "track_images"]

logger = logging.getLogger(__name__)

ORDERS = ("auto", "date", "exif", "name")
TRACK_DIR = ".track"
_VERSION = 1
# A day number: "day05", "_D5", "DAS12" (days after sowing), "-d3"; not inside a word or a number.
DAY_PATTERN = re.compile(r"(?<![A-Za-z0-9])(?:day|das|dag|d)[-_ ]?(\d{1,4})(?![A-Za-z0-9])", re.IGNORECASE)
# EXIF: the Exif IFD, DateTimeOriginal and DateTimeDigitized.
_EXIF_IFD, _EXIF_TAGS = 0x8769, (0x9003, 0x9004)


# ---------------------------------------------------------------------------------------------
# Plants and time order
# ---------------------------------------------------------------------------------------------

def _natural_key(text):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


def day_in_name(name) -> int | None:
    """The last day number written in ``name`` (``plant3_day05`` -> 5, ``A1_D12.png`` -> 12,
    ``DAS7`` -> 7), or None."""
    matches = list(DAY_PATTERN.finditer(Path(str(name)).stem if "." in str(name) else str(name)))
    return int(matches[-1].group(1)) if matches else None


def _without_day(stem: str) -> str:
    matches = list(DAY_PATTERN.finditer(stem))
    if not matches:
        return stem
    last = matches[-1]
    left, right = stem[:last.start()].rstrip("-_. "), stem[last.end():].lstrip("-_. ")
    return f"{left}_{right}" if left and right else (left + right) or stem


def exif_time(path) -> datetime | None:
    """The EXIF DateTimeOriginal (else DateTimeDigitized) of an image file, or None (no EXIF, no
    such tag, an unreadable file)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            exif = image.getexif()
            values = exif.get_ifd(_EXIF_IFD)
    except (OSError, SyntaxError, ValueError):
        return None
    for tag in _EXIF_TAGS:
        text = values.get(tag)
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if not text:
            continue
        found = re.match(r"\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})", str(text))
        if found:
            try:
                return datetime(*map(int, found.groups()))
            except ValueError:
                continue
    return None


def _photos(folder: Path, label_suffix):
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES and not is_label_file(p, label_suffix)),
                  key=lambda p: _natural_key(p.name))


def _split(files, name: str, group_by):
    """{plant: files} of one folder's photographs (the module docstring's rules)."""
    stems = [p.stem for p in files]
    if group_by is not None:
        keys = [plant_key(stem, group_by) for stem in stems]
    elif stems and all(date_in_name(stem) is not None for stem in stems):
        keys = [plant_key(output_name(p)) for p in files]
    elif stems and all(day_in_name(stem) is not None for stem in stems):
        keys = [_without_day(output_name(p)) for p in files]
    else:
        keys = [name] * len(files)
    if group_by is None and len(set(keys)) == len(keys) > 1 and keys[0] != name:
        logger.warning("%s: each photograph's name without its date is different (%s, ...): tracked as one plant; "
                       "--group-by REGEX splits it by plant", name, ", ".join(keys[:2]))
    if group_by is None and (len(set(keys)) == 1 or len(set(keys)) == len(keys)):
        keys = [name] * len(files)
    plants: dict = {}
    for key, path in zip(keys, files):
        plants.setdefault(key, []).append(path)
    return plants


def _safe(name: str) -> str:
    parts = [re.sub(r"[^A-Za-z0-9._+-]+", "_", part).strip(".") or "_" for part in str(name).split("/")]
    return "/".join(parts)


def find_plants(inputs, group_by=None, label_suffix=DEFAULT_LABEL_SUFFIX) -> dict:
    """INPUT folders -> {plant name: [photograph paths]} (the module docstring's rules; plants in
    natural order of their names). Raises ValueError naming an input that is no folder, holds no
    photograph, or two inputs that give one plant name."""
    if group_by is not None:
        try:
            re.compile(group_by)
        except re.error as err:
            raise ValueError(f"--group-by {group_by!r} is not a regular expression ({err})") from None
    plants: dict = {}
    for item in inputs:
        folder = Path(item)
        if not folder.is_dir():
            raise ValueError(f"{folder}: " + ("not a folder (track takes one folder per plant, or a folder of "
                                              "them)" if folder.exists() else "no such folder"))
        files = _photos(folder, label_suffix)
        found: dict = {}
        if files:
            found = _split(files, _safe(folder.resolve().name), group_by)
            subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                          and _photos(p, label_suffix)]
            if subfolders:
                logger.warning("%s holds photographs, so it is tracked as a flat folder; its subfolders %s are "
                               "left out (give them as inputs of their own)", folder,
                               ", ".join(sorted(p.name for p in subfolders)))
        else:
            for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: _natural_key(p.name)):
                sub_files = _photos(sub, label_suffix)
                if not sub_files:
                    continue
                for key, paths in _split(sub_files, _safe(sub.name), group_by).items():
                    found[key if key == _safe(sub.name) else f"{_safe(sub.name)}/{_safe(key)}"] = paths
        if not found:
            raise ValueError(f"{folder}: no photograph in this folder or its subfolders (image suffixes: "
                             f"{', '.join(IMAGE_SUFFIXES)}; label images such as *{label_suffix} are not photographs)")
        for key, paths in found.items():
            key = _safe(key)
            if key in plants:
                raise ValueError(f"two inputs give the plant {key!r} ({plants[key][0].parent} and {paths[0].parent}); "
                                 "give each plant's folder a name of its own")
            plants[key] = paths
    return dict(sorted(plants.items(), key=lambda item: _natural_key(item[0])))


@dataclass
class Frame:
    """One photograph of a plant, in its place in time."""

    path: Path
    image: str                      # the frame id (output name)
    index: int = 0                  # 0, 1, ... in time order
    date: datetime | None = None    # from the name or EXIF
    day: float | None = None        # days since the plant's first frame (None: name order)
    order: str = "name"             # how the frame was placed: date, day, exif or name


def order_frames(paths, order: str = "auto", plant: str = "") -> list[Frame]:
    """One plant's photographs in time order (the module docstring's rules). Raises ValueError
    naming a photograph without what an explicit ``order`` needs."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    paths = sorted((Path(p) for p in paths), key=lambda p: _natural_key(p.name))
    ids = dict(zip(paths, input_names(paths)))
    where = f" (plant {plant})" if plant else ""
    dates = {p: date_in_name(p.stem) for p in paths}
    days = {p: day_in_name(p.stem) for p in paths}
    days_ok = all(v is not None for v in days.values()) and (len(paths) < 2 or len(set(days.values())) > 1)
    how = order
    if order in ("auto", "date"):
        if all(v is not None for v in dates.values()):
            how = "date"
        elif days_ok:
            how = "day"
        elif order == "date":
            missing = next((p for p in paths if dates[p] is None and days[p] is None), paths[0])
            raise ValueError(f"{missing}: no date in the name{where} (--order date needs e.g. 2016_10_01, "
                             "2016-10-01, 20161001 or a day number such as _D05 / day05 in every name)")
        else:
            how = "exif"
    exif = {}
    if how == "exif":
        exif = {p: exif_time(p) for p in paths}
        if any(v is None for v in exif.values()):
            if order == "exif":
                missing = next(p for p in paths if exif[p] is None)
                raise ValueError(f"{missing}: no EXIF DateTimeOriginal{where} (--order exif needs it in every "
                                 "photograph)")
            how = "name"
    frames = []
    for p in paths:
        frame = Frame(p, ids[p], order=how)
        if how == "date":
            frame.date = dates[p]
        elif how == "exif":
            frame.date = exif[p]
        elif how == "day":
            frame.day = float(days[p])
        frames.append(frame)
    if how in ("date", "exif"):
        frames.sort(key=lambda f: (f.date, _natural_key(f.path.name)))
        for f in frames:
            f.day = (f.date - frames[0].date).total_seconds() / 86400.0
    elif how == "day":
        frames.sort(key=lambda f: (f.day, _natural_key(f.path.name)))
        first = frames[0].day
        for f in frames:
            f.day -= first
    for index, f in enumerate(frames):
        f.index = index
    return frames


# ---------------------------------------------------------------------------------------------
# The per-frame segmentations
# ---------------------------------------------------------------------------------------------

class FrameStore:
    """``<out>/.track``: each photograph's segmentation and the settings they were made with.

    Raises :class:`leafseg.inference.results.SettingsMismatch` when the folder holds frames made
    with other settings (``overwrite`` forgets them first)."""

    def __init__(self, out_dir, settings: dict, overwrite: bool = False):
        self.root = Path(out_dir) / TRACK_DIR
        self.frames = self.root / "frames"
        self.settings = json.loads(json.dumps({"version": _VERSION, **settings}, default=plain_value))
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        path = self.root / "settings.json"
        if path.is_file():
            from leafseg.inference.results import LEGACY_SETTINGS

            old = {**{k: v for k, v in LEGACY_SETTINGS.items() if k in self.settings},
                   **json.loads(path.read_text(encoding="utf-8"))}
            changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            if changed and any(self.frames.rglob("*.npz")):
                details = "; ".join(setting_change(k, old.get(k), self.settings.get(k)) for k in changed)
                raise SettingsMismatch(f"{out_dir} holds frames segmented with other settings ({details}); use "
                                       "--overwrite to segment every photograph again with these, or another --out")
        self.frames.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def path(self, plant: str, image: str) -> Path:
        return self.frames / plant / f"{image}.npz"

    def load(self, plant: str, image: str, file) -> dict | None:
        """The frame's segmentation ({"label", "scores", "plant_ids", "plants"}) when it exists and
        was made from ``file``; else None."""
        path = self.path(plant, image)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["source"]) != str(file):
                    return None
                return {"label": data["label"], "scores": data["scores"], "plant_ids": data["plant_ids"],
                        "plants": json.loads(str(data["plants"]))}
        except (OSError, KeyError, ValueError):
            return None

    def save(self, plant: str, image: str, file, label, scores, plant_ids, plants) -> Path:
        path = self.path(plant, image)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, label=np.asarray(label, np.uint16 if label.max(initial=0) < 65536 else np.int32),
                                scores=np.asarray(scores, np.float32), plant_ids=np.asarray(plant_ids, np.int32),
                                plants=np.array(json.dumps(plants)), source=np.array(str(file)))
        return path


def _only_class(result, class_id):
    """A detection result with only the detections of ``class_id`` (None: all of them)."""
    if class_id is None:
        return result
    keep = np.flatnonzero(np.asarray(result["class_ids"]).reshape(-1) == class_id)
    kept = dict(result)
    for key in ("rois", "class_ids", "scores", "plant_ids"):
        if key in result:
            kept[key] = np.asarray(result[key])[keep]
    kept["masks"] = np.asarray(result["masks"])[..., keep]
    return kept


def leaf_class_id(config):
    """The class id that is tracked: with several classes, the one named leaf (others, stems or
    pebbles, are no leaves of the rosette); None, every detection, for one class or no class
    named leaf."""
    names = list(getattr(config, "CLASS_NAMES", None) or [])
    return names.index(LEAF_CLASS) + 1 if len(names) > 1 and LEAF_CLASS in names else None


def _segmentation(result, class_id=None):
    """predict's visible leaves of one detection result (of ``class_id`` only, unless None):
    (label [H, W], scores, plant ids, plants [[id, name]])."""
    label, _, details = visible_leaves(_only_class(result, class_id))
    plants = result.get("plants") or []
    names = [[int(p.id), str(p.name)] for p in plants] or [[1, "1"]]
    return label, details["scores"], details["plant_ids"], names


# ---------------------------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------------------------

@dataclass
class TrackReport:
    """What :func:`track_images` did."""

    plants: dict = field(default_factory=dict)      # {plant: frames tracked}
    tracks: dict = field(default_factory=dict)      # {plant: track count}
    segmented: int = 0                              # photographs segmented by this run
    resumed: int = 0                                # photographs segmented by an earlier run
    skipped: list = field(default_factory=list)     # [(file, reason)]
    outputs: dict = field(default_factory=dict)     # {"tracks.csv": path, ...}

    def summary(self) -> str:
        frames = sum(self.plants.values())
        lines = [f"tracked {counted(len(self.plants), 'plant')} over {counted(frames, 'frame')} "
                 f"({counted(sum(self.tracks.values()), 'leaf track')}); segmented {self.segmented}"
                 + (f", {self.resumed} by an earlier run into this folder" if self.resumed else "")
                 + f"; skipped {len(self.skipped)}"]
        lines += [f"  skipped {item}: {reason}" for item, reason in self.skipped]
        lines += [f"  {name:22} {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def _settings(model, weights_id, plants, grid, tta):
    config = model.config
    if hasattr(config, "to_yaml_text"):
        config_text = config.to_yaml_text()
    else:  # a stand-in model's config: its upper-case attributes
        config_text = repr({key: getattr(config, key) for key in dir(config) if key.isupper()})
    keras_model = getattr(model, "keras_model", None)
    if weights_id is None:
        from leafseg.inference.results import weights_fingerprint

        weights_id = weights_fingerprint(keras_model) if keras_model is not None else type(model).__name__
    policy = keras_model.dtype_policy.name if keras_model is not None else None
    from leafseg.models.runtime import runtime_setting

    settings = {"weights": weights_id, "config": config_text, "precision": policy, "runtime": runtime_setting(model),
                "plants": plants, "grid": list(grid) if grid else None}
    if tta:
        settings["tta"] = int(tta)
    return settings


def _segment(model, todo, store, batch_size, progress, class_id=None):
    """Segment ``todo`` [(plant, frame)] in batches, saving each (the detections of ``class_id``
    only, unless None); returns {(plant, image): error}."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    errors = {}
    with logging_redirect_tqdm(), tqdm(total=len(todo), unit="image", desc="segment", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch, images = [], []
            for plant, frame in todo[start:start + batch_size]:
                try:
                    images.append(read_image(frame.path))
                    batch.append((plant, frame))
                except ImageReadError as err:
                    logger.warning("skipped %s", err)
                    errors[(plant, frame.image)] = err
                    bar.update()
            if not batch:
                continue
            results = model.detect(images, names=[f.image for _, f in batch])
            for (plant, frame), result in zip(batch, results):
                store.save(plant, frame.image, frame.path, *_segmentation(result, class_id))
                bar.update()
    return errors


def _units(plant, frames, segs):
    """The tracked plants of one input plant: {name: [(frame, label, scores, detection indices)]},
    one per scene plant when its photographs are scenes of several plants."""
    names = sorted({name for f in frames if f.image in segs for _, name in segs[f.image]["plants"]},
                   key=_natural_key)
    several = len(names) > 1
    units: dict = {}
    for f in frames:
        seg = segs.get(f.image)
        if seg is None:
            continue
        if not several:
            units.setdefault(plant, []).append((f, seg, np.arange(len(seg["scores"]))))
            continue
        ids = {name: int(i) for i, name in seg["plants"]}
        for name in names:  # (a scene plant not found in a frame: an empty frame for its tracker)
            dets = np.flatnonzero(seg["plant_ids"] == ids[name]) if name in ids else np.zeros(0, np.int64)
            units.setdefault(f"{plant}/{_safe(name)}", []).append((f, seg, dets))
    return units


def _track_unit(entries, max_gap, min_frames):
    """Track one plant's frames: per frame, (track-id label, {track id: score})."""
    tracker = LeafTracker(max_gap=max_gap)
    labels, scores_by_id = [], []
    for _, seg, dets in entries:
        label = seg["label"]
        masks = label[..., None] == (dets + 1)[None, None, :]
        scores = np.asarray(seg["scores"], np.float64)[dets]
        ids = tracker.update(masks, scores)
        labels.append(track_label(masks, ids, scores))
        scores_by_id.append({int(i): float(s) for i, s in zip(ids, scores) if i})
    if min_frames > 1:
        labels = drop_short_tracks(labels, min_frames)
    return labels, scores_by_id


def _date_text(date):
    if date is None:
        return ""
    return date.strftime("%Y-%m-%d") if (date.hour, date.minute, date.second) == (0, 0, 0) else \
        date.strftime("%Y-%m-%d %H:%M" if date.second == 0 else "%Y-%m-%d %H:%M:%S")


def _day_text(day):
    return "" if day is None else f"{round(day, 4):g}"


def _save_track_label(label, path, wide):
    if not wide:
        return save_indexed_png(label.astype(np.uint8), path)
    import cv2

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), label.astype(np.uint16)):
            raise OSError(f"could not write {path}")
    return Path(path)


def _track_colours(ids):
    palette = leaf_palette(PALETTE_SIZE)
    return palette[(np.asarray(ids, np.int64) - 1) % PALETTE_SIZE]


def _leaf_traits(label, ids, scores, image, mm_per_pixel):
    """measure_leaves' rows of the tracks ``ids`` in a track-id label."""
    if not ids:
        return []
    lut = np.zeros(int(label.max()) + 1, np.int32)
    lut[np.asarray(ids)] = np.arange(1, len(ids) + 1)
    relabel = lut[label]
    masks = relabel[..., None] == np.arange(1, len(ids) + 1)[None, None, :]
    rows = measure_leaves(masks, [scores.get(i, float("nan")) for i in ids], image, mm_per_pixel, label=relabel)
    return round_traits(rows, mm_per_pixel)


def _save_figure(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return Path(path)


def _plot_growth(growth, path, area_key, timed):
    from matplotlib.figure import Figure  # (no pyplot: the caller's backend is left alone)
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2))
    ax_area, ax_count = fig.subplots(1, 2)
    x_key = "day" if timed else "frame"
    plants = list(dict.fromkeys(row["plant"] for row in growth))
    for plant in plants:
        rows = [r for r in growth if r["plant"] == plant]
        xs = [float(r[x_key]) if r[x_key] != "" else np.nan for r in rows]
        ax_area.plot(xs, [r[area_key] for r in rows], marker=".", label=plant)
        ax_count.plot(xs, [r["leaf_count"] for r in rows], marker=".", label=plant)
    unit = "mm²" if area_key.endswith("mm2") else "px"
    ax_area.set(xlabel=f"{x_key}", ylabel=f"rosette area ({unit})", title="rosette area")
    ax_count.set(xlabel=f"{x_key}", ylabel="leaves", title="leaf count")
    ax_count.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_area, ax_count):
        ax.grid(alpha=0.3)
    if len(plants) <= 15:
        ax_count.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save_figure(fig, path)


def _plot_leaves(plant, rows, path, area_key, timed):
    from matplotlib.figure import Figure

    x_key = "day" if timed else "frame"
    tracks: dict = {}
    for row in rows:
        tracks.setdefault(int(row["leaf"]), []).append((float(row[x_key]), float(row[area_key])))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for track, points in sorted(tracks.items()):
        xs, ys = zip(*points)
        colour = _track_colours([track])[0] / 255.0
        ax.plot(xs, ys, marker=".", color=colour, lw=1.2)
        if len(tracks) <= 40 and len(points) > 1:
            ax.annotate(str(track), (xs[-1], ys[-1]), fontsize=7, color=colour, xytext=(2, 0),
                        textcoords="offset points")
    unit = "mm²" if area_key.endswith("mm2") else "px"
    ax.set(xlabel=x_key, ylabel=f"leaf area ({unit})")
    ax.set_title(f"{plant}\narea of each leaf ({len(tracks)} tracks)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, path)


def track_images(model, inputs, out_dir, group_by=None, order="auto", mm_per_pixel=None,
                 label_suffix=DEFAULT_LABEL_SUFFIX, overwrite=False, batch_size=1, weights_id=None, plants="auto",
                 grid=None, tta=None, max_gap=3, min_frames=1, overlays=True, page=True,
                 progress=True) -> TrackReport:
    """Segment, order and track the photographs of ``inputs`` (folders) into ``out_dir`` (the
    module docstring). ``model``: an inference MaskRCNN or an object with its ``detect`` and
    ``config``; ``page``: write report.html; the other arguments are the command's options.
    Raises ValueError (inputs, order, options) and
    :class:`leafseg.inference.results.SettingsMismatch` with messages naming the file or setting."""
    if plants not in PLANT_MODES:
        raise ValueError(f"plants must be one of {', '.join(PLANT_MODES)}, got {plants!r}")
    if tta is not None:
        view_names(tta)
    if max_gap < 0 or min_frames < 1:
        raise ValueError(f"need max_gap >= 0 and min_frames >= 1, got {max_gap} and {min_frames}")
    grid = parse_grid(grid)
    found = find_plants(inputs, group_by, label_suffix)
    series = {plant: order_frames(paths, order, plant) for plant, paths in found.items()}
    out_dir = Path(out_dir)
    store = FrameStore(out_dir, _settings(model, weights_id, plants, grid, tta), overwrite=overwrite)
    report = TrackReport()
    segs: dict = {plant: {} for plant in series}
    todo = []
    for plant, frames in series.items():
        for frame in frames:
            seg = store.load(plant, frame.image, frame.path)
            if seg is None:
                todo.append((plant, frame))
            else:
                segs[plant][frame.image] = seg
                report.resumed += 1
    if report.resumed:
        logger.info("%d of %d photographs were segmented before into %s; segmenting the other %d", report.resumed,
                    report.resumed + len(todo), out_dir, len(todo))
    if todo:
        detector = PlantsFirst(TTAModel(model, tta) if tta else model, plants, grid)
        errors = _segment(detector, todo, store, max(1, int(batch_size)), progress, leaf_class_id(model.config))
        for plant, frame in todo:
            if (plant, frame.image) in errors:
                report.skipped.append((str(frame.path), errors[(plant, frame.image)].reason))
            else:
                segs[plant][frame.image] = store.load(plant, frame.image, frame.path)
                report.segmented += 1

    area_key = "area_px" if mm_per_pixel is None else "area_mm2"
    rosette_key = "rosette_area_px" if mm_per_pixel is None else "rosette_area_mm2"
    order_rows, track_rows, growth_rows = [], [], []
    timed = all(f.day is not None for frames in series.values() for f in frames)
    units_done, page_images, page_series = [], [], {}
    for plant, frames in series.items():
        for f in frames:
            if f.image in segs[plant]:
                order_rows.append({"plant": plant, "frame": f.index, "image": f.image, "file": str(f.path),
                                   "date": _date_text(f.date), "day": _day_text(f.day), "order": f.order})
        for unit, entries in _units(plant, frames, segs[plant]).items():
            labels, scores = _track_unit(entries, max_gap, min_frames)
            wide = max((int(label.max(initial=0)) for label in labels), default=0) > 255
            unit_rows, seen, previous = [], set(), None
            for (frame, _, _), label, frame_scores in zip(entries, labels, scores):
                base = {"plant": unit, "frame": frame.index, "image": frame.image, "date": _date_text(frame.date),
                        "day": _day_text(frame.day)}
                ids = [int(v) for v in np.unique(label) if v]
                _save_track_label(label, out_dir / unit / "labels" / f"{frame.image}{label_suffix}", wide)
                if overlays:
                    _write_overlay(frame, label, ids, out_dir / unit / "overlays" / f"{frame.image}_overlay.png")
                for row in _leaf_traits(label, ids, frame_scores, frame.image, mm_per_pixel):
                    leaf = ids[int(row.pop("leaf")) - 1]
                    row.pop("image")
                    unit_rows.append({**base, "leaf": leaf, **row})
                page_images.append({"name": frame.image, "leaves": len(ids),
                                    "area_fraction": float(np.count_nonzero(label)) / label.size,
                                    "overlay": (out_dir / unit / "overlays" / f"{frame.image}_overlay.png")
                                    if overlays else None,
                                    "caption": f"{unit}, " + (f"day {_day_text(frame.day)}" if frame.day is not None
                                                              else f"frame {frame.index}")})
                page_series.setdefault(unit, []).append((frame.image, len(ids)))
                area = float(np.count_nonzero(label)) * (1.0 if mm_per_pixel is None else mm_per_pixel ** 2)
                rgr = ""
                if previous is not None and previous[0] > 0 and area > 0 and frame.day is not None \
                        and previous[1] is not None and frame.day > previous[1]:
                    rgr = round((math.log(area) - math.log(previous[0])) / (frame.day - previous[1]), 4)
                growth_rows.append({**base, "leaf_count": len(ids), "new_leaves": len(set(ids) - seen),
                                    rosette_key: round_traits([{rosette_key: area}], mm_per_pixel)[0][rosette_key],
                                    "rgr_per_day": rgr})
                seen |= set(ids)
                previous = (area, frame.day)
            track_rows += unit_rows
            report.plants[unit] = len(entries)
            report.tracks[unit] = len(seen)
            units_done.append((unit, unit_rows))
    if not report.plants:
        return report
    report.outputs["order.csv"] = write_csv(order_rows, out_dir / "order.csv",
                                            ["plant", "frame", "image", "file", "date", "day", "order"])
    trait_columns = [c for c in measure_leaves(np.ones((1, 1, 1), bool), [1.0], "", mm_per_pixel)[0]
                     if c not in ("image", "leaf")]
    head = ["plant", "frame", "image", "date", "day"]
    report.outputs["tracks.csv"] = write_csv(track_rows, out_dir / "tracks.csv", head + ["leaf"] + trait_columns)
    report.outputs["growth.csv"] = write_csv(growth_rows, out_dir / "growth.csv",
                                             head + ["leaf_count", "new_leaves", rosette_key, "rgr_per_day"])
    report.outputs["growth.png"] = _plot_growth(growth_rows, out_dir / "growth.png", rosette_key, timed)
    for unit, rows in units_done:
        _plot_leaves(unit, rows, out_dir / unit / "leaf_area.png", area_key, timed)
    report.outputs["<plant>/labels/"] = out_dir / "<plant>" / "labels"
    if overlays:
        report.outputs["<plant>/overlays/"] = out_dir / "<plant>" / "overlays"
    report.outputs["<plant>/leaf_area.png"] = out_dir / "<plant>" / "leaf_area.png"
    if page:
        try:
            report.outputs["report.html"] = _write_page(out_dir, report, growth_rows, page_images, page_series,
                                                        units_done, series, store.settings, max_gap, min_frames)
        except (OSError, ValueError) as err:  # (the tracks stand; leafseg report OUT_DIR retries)
            logger.warning("report.html not written: %s", err)
    return report


# Leaf-area plots embedded in report.html at most (growth.png holds every plant).
REPORT_LEAF_PLOTS = 12


def _write_page(out_dir, report, growth_rows, images, series, units, plants, settings, max_gap, min_frames):
    """report.html (:func:`leafseg.inference.report.write_report`): the overlays, growth.csv as the
    table, growth.png and the first plants' leaf_area.png, the outliers of each plant's series."""
    from leafseg.inference.report import flag_outliers, write_report

    orders = sorted({f.order for frames in plants.values() for f in frames})
    plots = [{"path": out_dir / "growth.png", "caption": "rosette area and leaf count, a line per plant"}]
    plots += [{"path": out_dir / unit / "leaf_area.png", "caption": f"{unit}: area of each leaf"}
              for unit, _ in units[:REPORT_LEAF_PLOTS]]
    return write_report(out_dir, title=f"leafseg track: {Path(out_dir).resolve().name}", images=images,
                        table_rows=growth_rows, plots=plots, outliers=flag_outliers(images, series),
                        settings={"weights": settings.get("weights"), "order": ", ".join(orders),
                                  "max gap": max_gap, "min frames": min_frames,
                                  "plants (scenes)": settings.get("plants"), "grid": settings.get("grid"),
                                  "TTA": settings.get("tta")},
                        summary={"plants": len(report.plants), "frames": sum(report.plants.values()),
                                 "leaves tracked": sum(report.tracks.values())},
                        table_title="Growth (growth.csv)",
                        note=None if len(units) <= REPORT_LEAF_PLOTS else
                        f"leaf-area plots of the first {REPORT_LEAF_PLOTS} of {len(units)} plants; every plant's "
                        "is <plant>/leaf_area.png")


def _write_overlay(frame, label, ids, path):
    from mrcnn import visualize

    try:
        image = read_image(frame.path)
    except ImageReadError as err:  # (read when segmented; gone since)
        logger.warning("no overlay for %s", err)
        return
    masks = label[..., None] == np.asarray(ids, label.dtype)[None, None, :] if ids else \
        np.zeros(label.shape + (0,), bool)
    overlay = visualize.draw_instances(image, masks, labels=[str(i) for i in ids], colors=_track_colours(ids))
    visualize.save_image(overlay, path)

