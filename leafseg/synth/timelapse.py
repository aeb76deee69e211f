"""Drawn time-lapses with truth: one rosette photographed day after day, its leaves keeping their
ids, for the tests and figures of leaf tracking (``leafseg.measure.tracking``).

A plant's leaves appear one by one in phyllotactic order and grow; the plant and its pot move
and turn a little between photographs, and the light changes a little. Every frame comes with
its label, whose values are leaf ids that hold over the whole series: leaf ``k`` (the k-th to
appear, counting from 1) has id ``k`` and palette colour ``leaf_palette`` row ``k - 1`` in every
frame where it is visible.

    lapse = generate_time_lapse(0, days=15, size=384)
    lapse.images[t], lapse.ids[t]          # [H, W, 3] uint8 photograph, [H, W] uint8 leaf ids
    lapse.masks(t)                         # (bool [H, W, N_t], the N_t leaf ids)
    write_time_lapses("data/lapses", days=15, count=12, seed=0)
    # data/lapses/plant000/plant000_2026_01_05_rgb.png + plant000_2026_01_05_label.png, ...

How a plant grows (everything drawn from the generator of ``(seed, plant)``):

* Leaf ``k`` (0-based) appears on day ``a_k``: the first two together 1.5 days before day 0
  (so day 0 shows a seedling), then one every plastochron from day 0 (0.7..1.3 days per plant,
  +-0.25 day jitter per leaf), until ``max_leaves`` or the last day. Its direction is
  ``theta_0 + spin * k * 137.5 deg`` (the golden angle) plus a few degrees of jitter; ``spin`` is
  either way, per plant.
* Its length follows a logistic curve in its own age ``tau = t - a_k``: ``L_k / (1 +
  exp(-(tau - m) / s))`` with ``s`` 1.2..1.8 days and ``m = s * ln(1 / 0.12 - 1)``, so a leaf is
  12 % of its final length ``L_k`` when it appears and near full a week later; its width scales
  with it. The first leaves stay smaller (juvenile leaves), so the rosette's radius grows from a
  seedling's to about 0.6..0.8 of the pot's soil radius on the last days of a 15-day series.
* The leaf shapes (petiole, blade, margin, bend) are the style's: ``_sample_leaves`` of
  ``leafseg.synth.rosettes`` (classic) or ``sample_leaves`` of ``leafseg.synth.scenes`` (random),
  drawn once per plant (their directions replaced by the spiral above); only length and width
  change with time. A leaf's colour is fixed per leaf; a young leaf is lighter and yellower
  until it has grown.
* Leaves are painted oldest first, so young leaves lie on top, as in ``generate_rosette``. A
  leaf with fewer than ``min_visible_pixels`` visible pixels in a frame (a leaf just appeared,
  or hidden under younger ones) is left out of that frame, photograph and label alike, and is
  back with its id once it shows again.
* Between days the pot (and the plant in it) moves by a random walk of ``move`` pixels a day
  (standard deviation, default 2.5, at most ``4 * move`` from its start) and turns by one of
  ``turn`` degrees a day (default 2.5, at most 10 degrees from its start): a pot put back by
  hand on a platform.
* The scene (background, pot, soil; the style's ``_scene``) is drawn from one generator per
  plant, so it is the same every day except where the pot moved; the camera (the style's
  shadows, lighting, blur, noise, colour balance) also uses one generator per plant, and the
  light varies a little from day to day: an overall gain ``exp(N(0, light))`` (default 0.05)
  and a colour balance ``exp(N(0, light / 2))`` per channel.

Files (``write_time_lapses``): one folder per plant, ``plantPPP/``, holding per day
``plantPPP_YYYY_MM_DD_rgb.png`` (the photograph) and ``plantPPP_YYYY_MM_DD_label.png`` (a palette
PNG whose index is the leaf id, 0 background; ``leafseg.data.masks.read_label`` returns the ids,
a viewer shows the colours). Day 0 is ``start_date`` (default 2026-01-05). The dates are in the
form ``leafseg.measure.series.date_in_name`` reads, so ``group_series`` puts the frames in time
order and ``plant_key`` names the plant ``plantPPP_rgb``. Files are written atomically and a
plant whose files all exist is skipped, so an interrupted run is resumed by running it again;
the bytes depend only on ``(seed, plant, days, size, style)`` and the growth options.
"""
from __future__ import annotations

import datetime as dt
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from leafseg.data.masks import save_indexed_png
from leafseg.synth import rosettes, scenes
from leafseg.synth.leaves import GOLDEN_ANGLE_DEG, Leaf, leaf_outlines, leaf_shadows, paint, paint_leaf_colours
from leafseg.synth.rosettes import STYLES, write_indexed, write_png

__all__ = ["TimeLapse", "generate_time_lapse", "time_lapse_paths", "write_time_lapses", "DEFAULT_START_DATE"]

DEFAULT_START_DATE = dt.date(2026, 1, 5)
# A leaf is this share of its final length on the day it appears.
_START_SHARE = 0.12
# The first two leaves are this many days old on day 0: a seedling, not bare soil.
_FIRST_AGE = 1.5


@dataclass(eq=False)
class TimeLapse:
    """One plant's drawn time-lapse and its truth.

    Attributes:
        images: per frame, [H, W, 3] uint8 RGB photograph.
        ids: per frame, [H, W] uint8 leaf ids (0 background); leaf ``k`` (1-based order of
            appearance) carries ``k`` in every frame it is visible in.
        appear: [L] float, the day each leaf appears (leaf id ``k`` at row ``k - 1``; the first
            two before day 0).
        directions: [L] float, each leaf's direction in the plant's own frame (radians, image
            axes: x right, y down); in frame ``t`` it points at ``directions + turns[t]``.
        centres: [T, 2] float, the plant's centre (x, y) in pixels in each frame.
        turns: [T] float, the plant's rotation in radians in each frame (0 on day 0).
        outline_areas: [T, L] float, each leaf's whole outline area in pixels (visible or not,
            0 before it appears): non-decreasing in time.
    """

    images: list
    ids: list
    appear: np.ndarray
    directions: np.ndarray
    centres: np.ndarray
    turns: np.ndarray
    outline_areas: np.ndarray

    @property
    def days(self) -> int:
        return len(self.images)

    def masks(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(bool [H, W, N] one mask per leaf visible in frame ``t``, int [N] their ids ascending)."""
        ids = self.ids[t]
        present = np.flatnonzero(np.bincount(ids.ravel(), minlength=256)[1:]) + 1
        return ids[..., None] == present.astype(ids.dtype), present


def _logistic_share(age: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Share of the final length at ``age`` days after appearing (``_START_SHARE`` at 0)."""
    mid = slope * math.log(1.0 / _START_SHARE - 1.0)
    return 1.0 / (1.0 + np.exp(-(age - mid) / slope))


def generate_time_lapse(rng_or_seed=None, days: int = 15, size: int | tuple[int, int] = 500, *,
                        style: str = "classic", max_leaves: int = 24, move: float = 2.5, turn: float = 2.5,
                        light: float = 0.05, min_visible_pixels: int | None = None) -> TimeLapse:
    """Grow one rosette over ``days`` daily photographs (see the module docstring).

    Args:
        rng_or_seed: a ``np.random.SeedSequence`` or anything ``np.random.default_rng``
            accepts; independent generators (plant, scene, camera, one per day) are derived from
            it, so the series is deterministic.
        days: number of frames, at least 1.
        size: image side (int) or (height, width), at least 64 pixels.
        style: ``"classic"`` or ``"random"`` (``leafseg.synth.rosettes.STYLES``): whose leaf
            shapes, scene and camera are drawn.
        max_leaves: at most this many leaves appear (1..255).
        move: standard deviation in pixels of the pot's daily shift (0: it stays put).
        turn: standard deviation in degrees of the plant's daily rotation (0: it never turns).
        light: standard deviation of the daily log gain of the light (0: the same every day).
        min_visible_pixels: a leaf with fewer visible pixels is left out of that frame; default
            ``max(10, H * W // 10000)`` as in ``generate_rosette``.
    """
    if style not in STYLES:
        raise ValueError(f"generate_time_lapse: style must be one of {STYLES}, got {style!r}")
    if days < 1:
        raise ValueError(f"generate_time_lapse: days must be at least 1, got {days}")
    if not 1 <= max_leaves <= 255:
        raise ValueError(f"generate_time_lapse: max_leaves must be in 1..255, got {max_leaves}")
    if min(move, turn, light) < 0:
        raise ValueError(f"generate_time_lapse: move, turn and light must be >= 0, got {move}, {turn}, {light}")
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(height, width) < 64:
        raise ValueError(f"generate_time_lapse: size must be at least 64 pixels, got {size}")
    if min_visible_pixels is None:
        min_visible_pixels = max(10, height * width // 10000)
    seq = rng_or_seed if isinstance(rng_or_seed, np.random.SeedSequence) else None
    if seq is None:
        seq = np.random.SeedSequence(np.random.default_rng(rng_or_seed).integers(0, 2**63, 4).tolist())

    def stream(i):  # child i of seq, whatever was spawned from it before
        return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key + (i,)))

    plant_rng = stream(0)
    scale = min(height, width)

    # The pot, the plant in it and its final reach.
    pot_x = width / 2.0 + plant_rng.normal(0.0, 0.03) * scale
    pot_y = height / 2.0 + plant_rng.normal(0.0, 0.03) * scale
    soil_r = scale * plant_rng.uniform(0.38, 0.46)
    offset = plant_rng.normal(0.0, 0.03, 2) * soil_r  # the plant's centre off the pot's
    reach = soil_r * plant_rng.uniform(0.6, 0.8)
    sun = plant_rng.uniform(0.0, 2.0 * math.pi)

    # Leaf timing and size.
    plastochron = plant_rng.uniform(0.7, 1.3)
    appear = np.concatenate([[-_FIRST_AGE, -_FIRST_AGE],
                             plastochron * np.arange(max(max_leaves - 2, 0))])[:max_leaves]
    appear[2:] += plant_rng.uniform(-0.25, 0.25, len(appear) - 2)
    appear = np.sort(appear)[:max(1, int(np.sum(appear <= days - 1)))]
    count = len(appear)
    slope = plant_rng.uniform(1.2, 1.8, count)
    # Juvenile leaves stay smaller; later ones reach the rosette's edge.
    final = reach * np.minimum(1.0, 0.45 + 0.12 * np.arange(count)) * plant_rng.uniform(0.85, 1.05, count)

    if style == "classic":
        shapes = rosettes._sample_leaves(plant_rng, count, 0.0, 0.0, reach)
    else:
        shapes = scenes.sample_leaves(plant_rng, count, 0.0, 0.0, reach)
    # The style draws its own directions; the phyllotaxis here is spelled out.
    angle0 = plant_rng.uniform(0.0, 2.0 * math.pi)
    spin = plant_rng.choice([-1.0, 1.0])
    directions = angle0 + spin * np.radians(np.arange(count) * GOLDEN_ANGLE_DEG + plant_rng.uniform(-4.0, 4.0, count))
    shapes = [replace(leaf, x=0.0, y=0.0, angle=float(direction), width=leaf.width * final[k] / leaf.length,
                      length=float(final[k])) for k, (leaf, direction) in enumerate(zip(shapes, directions))]
    # Leaf colours, fixed per leaf; a young leaf lighter and yellower until grown (below).
    hue = np.clip(plant_rng.uniform(85.0, 128.0) + plant_rng.normal(0.0, 5.0, count), 75.0, 140.0) / 360.0
    sat = plant_rng.uniform(0.35, 0.75, count)
    val = plant_rng.uniform(0.4, 0.7) * plant_rng.uniform(0.9, 1.1, count)

    # The pot's walk and the plant's turns.
    steps = plant_rng.normal(0.0, move, (days, 2))
    steps[0] = 0.0
    shift = np.clip(np.cumsum(steps, axis=0), -4.0 * move, 4.0 * move)
    turns = np.clip(np.cumsum(np.concatenate([[0.0], plant_rng.normal(0.0, turn, days - 1)])), -10.0, 10.0)
    turns = np.radians(turns)
    gains = np.exp(plant_rng.normal(0.0, light, days))[:, None] * np.exp(plant_rng.normal(0.0, light / 2.0, (days, 3)))
    layout = scenes._LAYOUTS[plant_rng.integers(len(scenes._LAYOUTS))] if style == "random" else None

    images, id_images = [], []
    outline_areas = np.zeros((days, count))
    centres = np.zeros((days, 2))
    for t in range(days):
        px, py = pot_x + shift[t, 0], pot_y + shift[t, 1]
        cx, cy = px + offset[0], py + offset[1]
        centres[t] = cx, cy
        shown = np.flatnonzero(appear <= t)
        share = _logistic_share(t - appear[shown], slope[shown])
        leaves = []
        for k, g in zip(shown, share):
            leaf = shapes[k]
            # The petiole's base sits a little off the centre, further as the leaf grows.
            base = 0.03 * final[k] * g
            angle = leaf.angle + turns[t]
            leaves.append(replace(leaf, x=cx + base * math.cos(angle), y=cy + base * math.sin(angle), angle=angle,
                                  length=leaf.length * g, width=leaf.width * g))
        outlines = leaf_outlines(leaves)
        for j, k in enumerate(shown):
            outline_areas[t, k] = _polygon_area(outlines[j])
        index = paint(outlines, (height, width))
        keep = np.flatnonzero(np.bincount(index.ravel(), minlength=len(leaves) + 1)[1:] >= min_visible_pixels)
        if len(keep) < len(leaves):
            leaves = [leaves[j] for j in keep]
            index = paint(outlines[keep], (height, width))
        kept_ids = shown[keep] + 1
        lut = np.zeros(256, np.uint8)
        lut[1:len(keep) + 1] = kept_ids
        id_images.append(lut[index])
        youth = 1.0 - share[keep]
        hsv = np.stack([hue[kept_ids - 1] - 0.03 * youth, sat[kept_ids - 1],
                        val[kept_ids - 1] * (1.0 + 0.25 * youth)], axis=1)
        images.append(_photograph(style, stream(1), stream(2), stream(3 + t), (height, width), (px, py, soil_r),
                                  layout, sun, index, leaves, hsv, gains[t]))
    return TimeLapse(images=images, ids=id_images, appear=appear, directions=np.asarray(directions) % (2 * math.pi),
                     centres=centres, turns=turns, outline_areas=outline_areas)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0].astype(np.float64), poly[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _photograph(style, scene_rng, camera_rng, day_rng, shape, pot, layout, sun, index, leaves: Sequence[Leaf], hsv,
                gain) -> np.ndarray:
    """One frame's photograph: the style's scene (the same generator every day), the leaves in
    their fixed colours, the day's light and the style's camera (the same generator every day)."""
    height, width = shape
    if style == "classic":
        rim = pot[2] * scene_rng.uniform(0.04, 0.09)
        planes = rosettes._scene(scene_rng, height, width, (*pot, rim), sun)
    else:
        planes, _ = scenes._scene(scene_rng, height, width, layout, pot, sun)
    if leaves:
        paint_leaf_colours(day_rng, planes, index, leaves, sun, hsv=hsv)
    planes *= np.asarray(gain, np.float32)[:, None, None]
    if style == "classic":
        return rosettes._shadows_and_camera(camera_rng, planes, index, len(leaves), sun)
    cast = leaf_shadows(camera_rng, index, len(leaves), sun, reach=(0.002, 0.015))
    cast *= -camera_rng.uniform(0.4, 0.95)
    cast += 1.0
    planes *= cast
    return scenes._camera(camera_rng, planes)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def time_lapse_paths(out_dir: str | os.PathLike, plant: int, days: int,
                     start_date: dt.date = DEFAULT_START_DATE) -> list[tuple[Path, Path]]:
    """Per day, (``plantPPP/plantPPP_YYYY_MM_DD_rgb.png``, ``..._label.png``) of plant ``plant``."""
    folder = Path(out_dir) / f"plant{plant:03d}"
    paths = []
    for t in range(days):
        stem = f"plant{plant:03d}_{(start_date + dt.timedelta(days=t)).strftime('%Y_%m_%d')}"
        paths.append((folder / f"{stem}_rgb.png", folder / f"{stem}_label.png"))
    return paths


def _write_plant(out_dir: str, seed: int, days: int, size, style: str, start_date: dt.date, options: dict,
                 plant: int) -> list[Path]:
    lapse = generate_time_lapse(np.random.SeedSequence([seed, 27, plant]), days, size, style=style, **options)
    written = []
    for t, (rgb_path, label_path) in enumerate(time_lapse_paths(out_dir, plant, days, start_date)):
        rgb_path.parent.mkdir(parents=True, exist_ok=True)
        if not rgb_path.exists():
            written.append(write_png(rgb_path, lapse.images[t]))
        if not label_path.exists():
            written.append(save_indexed_png(lapse.ids[t], label_path))
    return written


def write_time_lapses(out_dir: str | os.PathLike, days: int, count: int = 1, seed: int = 0,
                      size: int | tuple[int, int] = 500, style: str = "classic", workers: int = 1, start: int = 0,
                      progress: bool = True, start_date: dt.date = DEFAULT_START_DATE, **options) -> list[Path]:
    """Write plants ``start .. start + count - 1``, ``days`` frames each (layout in the module
    docstring). Plant ``p`` is ``generate_time_lapse(SeedSequence([seed, 27, p]), ...)``;
    ``options`` go to it (``max_leaves``, ``move``, ``turn``, ``light``, ``min_visible_pixels``).
    Idempotent: a plant whose files all exist is skipped. Returns the paths written."""
    if style not in STYLES:
        raise ValueError(f"write_time_lapses: style must be one of {STYLES}, got {style!r}")
    if days < 1 or count < 0 or start < 0 or workers < 1:
        raise ValueError(f"write_time_lapses: need days >= 1, count >= 0, start >= 0, workers >= 1; "
                         f"got days={days}, count={count}, start={start}, workers={workers}")
    unknown = set(options) - {"max_leaves", "move", "turn", "light", "min_visible_pixels"}
    if unknown:
        raise ValueError(f"write_time_lapses: unknown options {', '.join(sorted(unknown))}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    job = functools.partial(_write_plant, str(out_dir), seed, days, size, style, start_date, options)

    def paths_of(plant):
        return [p for pair in time_lapse_paths(out_dir, plant, days, start_date) for p in pair]

    return write_indexed(job, paths_of, start, count, workers, progress, f"time-lapses -> {out_dir}")
