"""Whole scenes with exact leaf and plant labels: trays of potted rosettes, dishes of seedlings.

Plant scientists photograph whole trays of pots and petri dishes of seedlings at several
megapixels; finding the plants of such a scene and segmenting each plant's leaves is tested and
measured on these. A scene carries, beside the photograph:

* ``label``: the leaf colour label of the rosettes (``leafseg.synth.rosettes``): black
  background, one colour per leaf (``leaf_palette``, unique across the whole scene, which may
  hold several hundred leaves), visible pixels only. ``leafseg.data.masks.split_instances``
  splits it into exactly the scene's leaves.
* ``plants``: [H, W] plant ids 1..P, 0 where no plant is. A plant's region is the union of the
  visible pixels of its leaves (so stems, roots and seed coats are not in it); each leaf belongs
  to exactly one plant, and a plant without a visible leaf is no plant.
* ``plant_info``: per plant its id, name, box, centroid, area and leaf ids.

Ids are in reading order. Trays: row by row from the top, left to right; the name is the grid
position, row letter and column number (``A1``, ``A2``, ... ``C4``). Dishes: rows of centroids
(``reading_order``): the plants sorted by the y of their region's centroid; a row starts at the
topmost plant not yet placed and takes every plant whose centroid lies less than ``row_band`` x
the image height below that plant's (default ``ROW_BAND`` = 0.1); within a row left to right
by the centroid's x. A dish plant's name is its row letter and place in the row (``A1``, ``A2``,
``B1``, ...). Leaves are numbered plant by plant in id order: a tray plant's leaves oldest
first, a seedling's cotyledons then its true leaves.

``generate_tray``: rows x columns cells tiled edge to edge, each a rosette of
``generate_rosette`` (its own sub-seed, photograph and camera), like the scored real target of
twelve single-pot photographs of about 530 x 500 px tiled 4 wide and 3 high (2000 x 1590 px).

``generate_dish``: a round or square plate (white or coloured filter paper, or pale agar) on a
dark or coloured bench, seen from above, 2048 x 1536 px like the real photographs of arugula
seedlings. Each seedling has two cotyledons (about 60 px long at 2048 px) and sometimes one or
two small true leaves, which are leaves; and a pale green, white or pinkish hypocotyl, thin
roots and sometimes a seed coat (lying beside it or stuck on a cotyledon's tip, covering it),
which are drawn in the photograph and are never in the labels (``Scene.parts`` maps them).

``write_scenes`` writes ``sceneNNNNN_rgb.png``, ``sceneNNNNN_label.png`` (the colour label) and
``sceneNNNNN_plants.png`` (a palette PNG whose index is the plant id, or a 16-bit grey PNG past
255 plants), atomically; reruns skip finished files, and the bytes depend only on the seed, the
index and the options, whatever the number of workers. ``leafseg prepare`` and ``LeafDataset``
pair ``_rgb`` with ``_label`` and leave the ``_plants.png`` files alone.

    tray = generate_tray(0)                       # 3 x 4 pots, about 1590 x 2000 px
    tray.image, tray.label, tray.plants, tray.plant_info[0].name   # ..., "A1"
    dish = generate_dish(0, size=2048)
    write_scenes("data/trays", count=10, seed=0, scene="tray", workers=2)
"""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import find_objects

from mrcnn.fileio import write_bytes_atomic

from leafseg.data.masks import PALETTE_SIZE, leaf_palette, save_indexed_png
from leafseg.synth.leaves import Leaf, fractal_noise, grid, leaf_outlines, leaf_shadows, paint, paint_leaf_colours
from leafseg.synth.rosettes import STYLES, generate_rosette, rosette_rng, write_indexed, write_missing
from leafseg.synth.realism import blend, hsv_colour, line_coverage, seedling_axis
from leafseg.synth.scenes import check_families

__all__ = ["SCENES", "ROW_BAND", "CELL_ASPECT", "MAX_SEEDLINGS", "Plant", "Scene", "generate_tray", "generate_dish",
           "reading_order", "position_name", "parse_grid", "scene_paths", "write_plants_png", "write_scenes"]

SCENES = ("tray", "dish")
# Dish rows: a row holds the plants whose centroids lie less than this share of the image height
# below its topmost plant's.
ROW_BAND = 0.1
# Height / width of a tray cell given by its width alone: CVPPP A1's 530 x 500 photographs.
CELL_ASPECT = 1.06
# Four leaves at most a seedling, and at most 255 painted leaves (uint8 ids).
MAX_SEEDLINGS = 60
# The real dish photographs: 2048 x 1536, cotyledons about 60 px long.
_DISH_SIDE = 2048
_COTYLEDON = 60.0


# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plant:
    """One plant of a scene.

    Attributes:
        id: 1..P, in reading order (module docstring).
        name: tray: the grid position, row letter and column number (``"A1"``); dish: row letter
            and place in the row.
        box: (y1, x1, y2, x2) of its region in pixels, y2 and x2 exclusive.
        centroid: (y, x) mean of its region's pixel indices.
        area: pixels in its region (the visible pixels of its leaves).
        leaves: its scene leaf ids, ascending (consecutive).
        cell: tray: (y1, x1, y2, x2) of its tile; dish: None.
    """

    id: int
    name: str
    box: tuple[int, int, int, int]
    centroid: tuple[float, float]
    area: int
    leaves: tuple[int, ...]
    cell: tuple[int, int, int, int] | None = None


@dataclass(eq=False)
class Scene:
    """A tray or dish photograph with its leaf and plant ground truth.

    Attributes:
        kind: ``"tray"`` or ``"dish"``.
        image: [H, W, 3] uint8 RGB photograph.
        label: [H, W, 3] uint8 leaf colour label: (0, 0, 0) background, ``colors[i - 1]`` on the
            visible pixels of leaf ``i``; no other colour occurs.
        leaf_ids: [H, W] int32, 0 background, 1..N scene leaf id, numbered plant by plant.
        colors: [N, 3] uint8 ``leaf_palette(N)``, the colour of each leaf id (row ``i - 1``).
        leaf_plant: [N] int32, the plant id of each leaf id (row ``i - 1``), non-decreasing.
        plants: [H, W] plant ids, 0 where no leaf is; uint8 up to 255 plants, else uint16.
        plant_info: the P plants, in id order.
        parts: dish: [H, W] uint8 the visible non-leaf parts of the seedlings, 1 hypocotyl,
            2 root, 3 seed coat, 0 elsewhere (never on a leaf pixel); tray: None.
    """

    kind: str
    image: np.ndarray
    label: np.ndarray
    leaf_ids: np.ndarray
    colors: np.ndarray
    leaf_plant: np.ndarray
    plants: np.ndarray
    plant_info: list[Plant]
    parts: np.ndarray | None = None

    @property
    def num_leaves(self) -> int:
        return len(self.colors)

    @property
    def num_plants(self) -> int:
        return len(self.plant_info)


def position_name(row: int, column: int) -> str:
    """Grid position of 0-based (row, column): row letters A..Z, AA, AB, ... then the 1-based
    column number: (0, 0) -> ``"A1"``, (2, 3) -> ``"C4"``, (26, 0) -> ``"AA1"``."""
    letters = ""
    row += 1
    while row:
        row, rest = divmod(row - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{column + 1}"


def reading_order(centroids: np.ndarray, band: float) -> tuple[np.ndarray, np.ndarray]:
    """Reading order of points by rows: ([P] indices in reading order, [P] their 0-based rows).

    ``centroids``: [P, 2] (y, x). Sorted by y (then x), a row starts at the first point not yet
    placed and takes every following point less than ``band`` below it; within a row the points
    go left to right (by x, then y).
    """
    centroids = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    ys, xs = centroids[:, 0], centroids[:, 1]
    rows = np.empty(len(ys), dtype=np.int64)
    row, top = -1, -math.inf
    for i in np.lexsort((xs, ys)):
        if ys[i] - top >= band:
            row, top = row + 1, ys[i]
        rows[i] = row
    order = np.lexsort((ys, xs, rows))
    return order, rows[order]


def _regions(regions: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """([count] pixel counts, [count, 2] (y, x) centroids, NaN where empty) of the regions
    1..count of an [H, W] id image."""
    flat = np.flatnonzero(regions)
    owner = regions.ravel()[flat]
    ys, xs = np.divmod(flat, regions.shape[1])
    area = np.bincount(owner, minlength=count + 1)[1:]
    sums = np.stack([np.bincount(owner, weights=v, minlength=count + 1)[1:] for v in (ys, xs)], axis=1)
    with np.errstate(invalid="ignore"):
        return area, sums / area[:, None]


def _scene(kind: str, image: np.ndarray, leaf_ids: np.ndarray, leaf_plant: np.ndarray, names: list[str],
           cells: list | None = None, parts: np.ndarray | None = None) -> Scene:
    """The ``Scene`` of a photograph and its [H, W] scene leaf ids 1..N (every id present,
    numbered plant by plant), ``leaf_plant`` [N] plant ids 1..P (non-decreasing, every id
    present) and the P plant names."""
    n, count = len(leaf_plant), len(names)
    if n > PALETTE_SIZE:
        raise ValueError(f"{kind}: {n} leaves are more than the {PALETTE_SIZE} distinct label colours; "
                         "draw fewer plants")
    colors = leaf_palette(n)
    label = np.concatenate([np.zeros((1, 3), np.uint8), colors])[leaf_ids]
    plant_lut = np.concatenate([[0], leaf_plant]).astype(np.uint8 if count <= 255 else np.uint16)
    plants = plant_lut[leaf_ids]
    area, centroids = _regions(plants, count)
    first = np.searchsorted(leaf_plant, np.arange(1, count + 2))
    info = [Plant(id=k + 1, name=names[k], box=(box[0].start, box[1].start, box[0].stop, box[1].stop),
                  centroid=(float(centroids[k, 0]), float(centroids[k, 1])), area=int(area[k]),
                  leaves=tuple(range(first[k] + 1, first[k + 1] + 1)), cell=None if cells is None else cells[k])
            for k, box in enumerate(find_objects(plants, max_label=count))]
    return Scene(kind=kind, image=image, label=label, leaf_ids=leaf_ids.astype(np.int32, copy=False), colors=colors,
                 leaf_plant=np.asarray(leaf_plant, dtype=np.int32), plants=plants, plant_info=info, parts=parts)


# ---------------------------------------------------------------------------------------------
# Trays
# ---------------------------------------------------------------------------------------------

def parse_grid(text: str) -> tuple[int, int]:
    """``"3x4"`` -> (3, 4): rows x columns of a tray, both positive; ValueError naming the text."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise ValueError(f"a tray grid is ROWSxCOLS with positive integers, e.g. 3x4; got {text!r}")
    return int(match[1]), int(match[2])


def _check_grid(grid, who: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in grid)
        valid = rows >= 1 and cols >= 1 and (rows, cols) == tuple(grid)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"{who}: grid must be (rows, columns), both positive integers; got {grid!r}")
    return rows, cols


def _cell_shape(cell, jitter: float, who: str) -> tuple[int, int]:
    """(height, width) of a tray cell; ValueError naming ``cell`` or ``jitter``."""
    if not 0.0 <= jitter <= 0.2:
        raise ValueError(f"{who}: jitter is the share by which cell sides vary, in [0, 0.2]; got {jitter!r}")
    height, width = (round(CELL_ASPECT * int(cell)), int(cell)) if np.isscalar(cell) else (int(cell[0]), int(cell[1]))
    if min(height, width) * (1.0 - jitter) < 32:
        raise ValueError(f"{who}: cells must keep at least 32 pixels a side after a jitter of {jitter}; "
                         f"got cell {cell!r} ({height} x {width})")
    return height, width


def generate_tray(rng_or_seed=None, grid: tuple[int, int] = (3, 4), cell: int | tuple[int, int] = 500,
                  style: str = "random", *, jitter: float = 0.02, min_leaves: int | None = None,
                  max_leaves: int | None = None, min_visible_pixels: int | None = None,
                  families: dict | None = None) -> Scene:
    """A tray of rows x columns potted rosettes, one photograph of ``generate_rosette`` a cell,
    tiled edge to edge in reading order.

    Args:
        rng_or_seed: a ``np.random.Generator`` (consumed) or a seed (``np.random.default_rng``).
            Each cell draws its rosette from its own sub-seed, so plants differ, from seedlings
            to big rosettes.
        grid: (rows, columns); (3, 4) makes the 3 high x 4 wide tray of the real target.
        cell: a cell's width, its height ``round(CELL_ASPECT * cell)`` (500 -> 530 x 500, the
            real target's, about 1590 x 2000 for 3 x 4); or (height, width).
        style: the rosettes' style, ``"random"`` (default) or ``"classic"``.
        jitter: each row's height and each column's width vary by up to this share (0..0.2),
            so that cells differ slightly in size as in tiled real photographs; 0 for none.
        min_leaves, max_leaves, min_visible_pixels, families: per cell, as ``generate_rosette``.

    Returns:
        A ``Scene``: plant ids 1..rows*columns row by row, left to right, each named by its grid
        position (``"A1"`` .. ``"C4"``), ``Plant.cell`` its tile; its leaves in its rosette's
        order (oldest first).
    """
    rows, cols = _check_grid(grid, "generate_tray")
    if style not in STYLES:
        raise ValueError(f"generate_tray: style must be one of {STYLES}, got {style!r}")
    if check_families(families) and style != "random":
        raise ValueError(f"generate_tray: style families are drawn by the random style only, not {style!r}")
    cell_h, cell_w = _cell_shape(cell, jitter, "generate_tray")
    rng = np.random.default_rng(rng_or_seed)
    heights = np.round(cell_h * (1.0 + rng.uniform(-jitter, jitter, rows))).astype(int)
    widths = np.round(cell_w * (1.0 + rng.uniform(-jitter, jitter, cols))).astype(int)
    seeds = rng.integers(0, np.iinfo(np.int64).max, rows * cols)
    top = np.concatenate([[0], np.cumsum(heights)])
    left = np.concatenate([[0], np.cumsum(widths)])
    image = np.empty((top[-1], left[-1], 3), np.uint8)
    leaf_ids = np.zeros((top[-1], left[-1]), np.int32)
    leaf_plant, names, cells = [], [], []
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        tile = (slice(top[r], top[r + 1]), slice(left[c], left[c + 1]))
        rosette = generate_rosette(np.random.default_rng(seeds[k]), (heights[r], widths[c]), style=style,
                                   min_leaves=min_leaves, max_leaves=max_leaves,
                                   min_visible_pixels=min_visible_pixels, families=families)
        image[tile] = rosette.image
        ids = rosette.instance_ids
        leaf_ids[tile] = np.where(ids > 0, ids + len(leaf_plant), 0)
        leaf_plant += [k + 1] * rosette.num_leaves
        names.append(position_name(r, c))
        cells.append((int(top[r]), int(left[c]), int(top[r + 1]), int(left[c + 1])))
    return _scene("tray", image, leaf_ids, np.asarray(leaf_plant), names, cells)


# ---------------------------------------------------------------------------------------------
# Dishes
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Seedling:
    """A seedling's geometry in image pixels: paths [K, 2] (x, y), leaves (cotyledons first) and
    seed coats (x, y, half-length, half-width, angle in degrees, lying on a cotyledon)."""

    hypocotyl: np.ndarray
    roots: list[np.ndarray]
    leaves: list[Leaf]
    coats: list[tuple[float, float, float, float, float, bool]]


def _dish_shape(size, who: str) -> tuple[int, int]:
    """(height, width) of a dish photograph: ``size`` is the longer side (4:3) or (h, w)."""
    if np.isscalar(size):
        height, width = round(int(size) * 3 / 4), int(size)
    else:
        height, width = int(size[0]), int(size[1])
    if min(height, width) < 64:
        raise ValueError(f"{who}: a dish photograph needs at least 64 pixels a side, got size {size!r} "
                         f"({height} x {width})")
    return height, width


def _plate_radius(xs, ys, plate) -> np.ndarray:
    """Distance of the points (xs, ys) from the plate's centre in the plate's metric: Euclidean for
    a round dish, a superellipse norm (rounded square) for a square plate."""
    cx, cy, _, _, power, turn = plate
    dx, dy = np.asarray(xs, np.float32) - np.float32(cx), np.asarray(ys, np.float32) - np.float32(cy)
    if power is None:
        return np.sqrt(dx * dx + dy * dy)
    u = np.abs(dx * np.float32(math.cos(turn)) + dy * np.float32(math.sin(turn)))
    v = np.abs(dy * np.float32(math.cos(turn)) - dx * np.float32(math.sin(turn)))
    return (u**power + v**power) ** (1.0 / power)


def _sow(rng: np.random.Generator, n: int, plate, s: float) -> list[tuple[float, float, float]]:
    """(x, y, direction of the hypocotyl) of n seedlings on the plate's floor: in sown rows of at
    most five with hypocotyls pointing down (40 %; one to three rows, more for many seedlings), or
    scattered at least about 2.5 cotyledon lengths apart (the spacing shrinks while a seedling
    finds no room)."""
    cx, cy, _, floor, _, _ = plate
    if n > 1 and rng.random() < 0.4:
        count = max(int(rng.integers(1, min(3, n) + 1)), math.ceil(n / 5))
        places = []
        for row, members in enumerate(np.array_split(np.arange(n), count)):
            y = cy + (0.0 if count == 1 else (row / (count - 1) - 0.5) * 0.9 * floor)
            half = 0.75 * math.sqrt(max(floor * floor - (y - cy) ** 2, 0.0))
            xs = cx + np.linspace(-half, half, len(members) + 2)[1:-1]
            spacing = 2.0 * half / (len(members) + 1)
            places += [(x + rng.normal(0.0, 0.12 * spacing), y + rng.normal(0.0, 0.02 * floor),
                        math.pi / 2 + rng.normal(0.0, 0.35)) for x in xs]
        return places
    spacing = 2.5 * _COTYLEDON * s * rng.uniform(0.8, 1.2)
    places: list[tuple[float, float, float]] = []
    while len(places) < n:
        for _ in range(100):
            radius, turn = 0.7 * floor * math.sqrt(rng.random()), rng.uniform(0.0, 2.0 * math.pi)
            x, y = cx + radius * math.cos(turn), cy + radius * math.sin(turn)
            if all(math.hypot(x - px, y - py) >= spacing for px, py, _ in places):
                inward = math.atan2(cy - y, cx - x)
                direction = inward + rng.normal(0.0, 0.8) if radius > 0.3 * floor else rng.uniform(0.0, 2.0 * math.pi)
                places.append((x, y, direction))
                break
        else:
            spacing *= 0.8
    return places


# A dish seedling's hypocotyl and roots (leafseg.synth.realism.seedling_axis's shape): a
# hypocotyl 1 to 3.5 cotyledons long, a main root of 2 to 8, up to 3 laterals.
DISH_AXIS = ((1.0, 3.5), (2.0, 8.0), 4, 4, (0.6, 1.2), (0.1, 0.3), 0.04, 0.08)


def _seedling(rng: np.random.Generator, x: float, y: float, direction: float, s: float) -> _Seedling:
    """Geometry of one seedling whose cotyledons meet at (x, y) and whose hypocotyl leaves
    towards ``direction``; ``s`` = image side / 2048."""
    cotyledon = _COTYLEDON * s * rng.uniform(0.8, 1.25)
    step = max(1.5, 4.0 * s)
    hypocotyl, roots = seedling_axis(rng, x, y, direction, cotyledon, step, DISH_AXIS)
    # Cotyledons open sideways of the hypocotyl, one each way; true leaves across them, on top.
    axis = direction + math.pi / 2 + rng.normal(0.0, 0.4)
    leaves = []
    for j in range(2):
        length = cotyledon * rng.uniform(0.9, 1.1)
        leaves.append(Leaf(x=x, y=y, angle=axis + j * math.pi + rng.normal(0.0, 0.25), length=length,
                           width=length * rng.uniform(0.55, 0.75), petiole=rng.uniform(0.3, 0.45),
                           bend=rng.normal(0.0, 0.05), widest=rng.uniform(0.55, 0.7),
                           roundness=rng.uniform(0.3, 0.45)))
    for j in range(int(rng.choice(3, p=[0.45, 0.3, 0.25]))):
        length = cotyledon * rng.uniform(0.35, 0.85)
        lobes = None
        if rng.random() < 0.6:  # rocket's first true leaves are lobed
            lobes = np.concatenate([np.full((2, 1, 1), rng.uniform(0.08, 0.2)),
                                    np.full((2, 1, 1), rng.uniform(3.0, 5.0)),
                                    rng.uniform(0.0, 2.0 * math.pi, (2, 1, 1))], axis=2)
        leaves.append(Leaf(x=x, y=y, angle=axis + math.pi / 2 + j * math.pi + rng.normal(0.0, 0.3), length=length,
                           width=length * rng.uniform(0.35, 0.5), petiole=rng.uniform(0.25, 0.4),
                           bend=rng.normal(0.0, 0.06), widest=rng.uniform(0.55, 0.7),
                           roundness=rng.uniform(0.5, 0.7), margin=lobes))
    coats = []
    kind = rng.random()
    if kind < 0.55:
        half = 11.0 * s * rng.uniform(0.8, 1.2)
        if kind < 0.2:  # stuck on a cotyledon's tip, covering it
            outline = leaves[0].outline()
            tip = outline[len(outline) // 2]
            coats.append((float(tip[0]), float(tip[1]), half, 0.75 * half, math.degrees(leaves[0].angle), True))
        else:  # shed beside the hypocotyl
            at = hypocotyl[int(rng.integers(len(hypocotyl)))] + rng.normal(0.0, 1.5 * half, 2)
            coats.append((float(at[0]), float(at[1]), half, 0.75 * half, rng.uniform(0.0, 180.0), False))
    return _Seedling(hypocotyl, roots, leaves, coats)


def _ellipses(shape: tuple[int, int], coats) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for x, y, a, b, angle, _ in coats:
        cv2.ellipse(mask, (round(4 * x), round(4 * y)), (max(1, round(4 * a)), max(1, round(4 * b))), angle,
                    0.0, 360.0, 255, -1, cv2.LINE_AA, 2)
    return mask


def _dish_planes(rng: np.random.Generator, height: int, width: int, plate, light: float) -> np.ndarray:
    """[3, H, W] float32 RGB in [0, 1]: the bench with the dish's shadow, the dish's lit rim and
    its floor of paper or agar, a little darker along the wall."""
    cx, cy, outer, floor, _, _ = plate
    ys, xs = grid(height, width, 2)
    h2, w2 = ys.shape
    if rng.random() < 0.6:
        bench = hsv_colour(rng, (0.0, 360.0), (0.0, 0.3), (0.04, 0.25))
    else:
        bench = hsv_colour(rng, (0.0, 360.0), (0.25, 0.7), (0.2, 0.6))
    mottle = 0.8 + 0.4 * fractal_noise(rng, h2, w2, cells=(3, 12, 40))
    kind = rng.choice(3, p=[0.5, 0.2, 0.3])
    base = [hsv_colour(rng, (0.0, 360.0), (0.0, 0.06), (0.86, 0.97)),  # white filter paper
            hsv_colour(rng, (195.0, 225.0), (0.2, 0.4), (0.75, 0.9)),  # blue germination paper
            hsv_colour(rng, (35.0, 60.0), (0.08, 0.25), (0.75, 0.92))][kind]  # agar
    grain = 1.0 + rng.uniform(0.03, 0.1) * (fractal_noise(rng, h2, w2, cells=(20, 80, 250),
                                                           weights=(0.3, 0.3, 0.4)) - 0.5)
    r = _plate_radius(xs, ys, plate)
    reach = 0.03 * outer
    shadow = _plate_radius(xs + reach * math.cos(light), ys + reach * math.sin(light), plate)
    shadow = np.clip((outer + reach - shadow) / (2.0 * reach), 0.0, 1.0) * rng.uniform(0.3, 0.6)
    facing = ((xs - cx) * math.cos(light) + (ys - cy) * math.sin(light)) / np.maximum(r, 1.0)
    crest = np.sin(np.pi * np.clip((r - floor) / (outer - floor), 0.0, 1.0))
    rim = np.clip(0.8 + 0.25 * crest + 0.12 * facing, 0.0, 1.2)
    wall = 1.0 - 0.15 * np.exp(-np.maximum(floor - r, 0.0) / (0.03 * outer)) * (0.6 + 0.4 * facing)
    in_dish = np.clip(0.5 * (outer - r) + 0.5, 0.0, 1.0)
    in_floor = np.clip(0.5 * (floor - r) + 0.5, 0.0, 1.0)
    rim_rgb = 0.5 * (base + 1.0)
    planes = np.empty((3, height, width), dtype=np.float32)
    for c in range(3):
        plane = bench[c] * mottle * (1.0 - shadow)
        plane += (rim_rgb[c] * rim - plane) * in_dish
        plane += (base[c] * grain * wall - plane) * in_floor
        cv2.resize(plane.astype(np.float32), (width, height), dst=planes[c], interpolation=cv2.INTER_LINEAR)
    return planes


def _dish_camera(rng: np.random.Generator, planes: np.ndarray) -> np.ndarray:
    """Light falling off from near the centre, white balance, a little defocus, sensor noise and
    sometimes JPEG -> [H, W, 3] uint8 RGB; a well-exposed photograph. ``planes`` is used up."""
    _, height, width = planes.shape
    ys, xs = grid(height, width, 8)
    cy, cx = height * rng.uniform(0.35, 0.65), width * rng.uniform(0.35, 0.65)
    falloff = rng.uniform(0.0, 0.3) * (np.square(xs - cx) + np.square(ys - cy)) / (0.25 * (height**2 + width**2))
    gain = cv2.resize((255.0 * rng.uniform(0.85, 1.08) * (1.0 - falloff)).astype(np.float32), (width, height),
                      interpolation=cv2.INTER_LINEAR)
    warm = rng.uniform(-1.0, 1.0)
    balance = np.float32([1.0 + 0.06 * warm, 1.0 + rng.uniform(-0.03, 0.03), 1.0 - 0.06 * warm])
    image = cv2.merge(list(planes))
    image *= gain[..., None]
    image *= balance
    cv2.GaussianBlur(image, (0, 0), max(0.3, rng.uniform(0.4, 1.2) * max(height, width) / _DISH_SIDE), dst=image)
    image += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(rng.uniform(1.0, 4.0)) + 0.5
    np.clip(image, 0.0, 255.0, out=image)
    image = image.astype(np.uint8)
    if rng.random() < 0.5:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
        if ok:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # channel order kept: no conversion either way
    return image


def generate_dish(rng_or_seed=None, size: int | tuple[int, int] = _DISH_SIDE,
                  seedlings: tuple[int, int] = (3, 8), *, min_visible_pixels: int | None = None,
                  row_band: float = ROW_BAND) -> Scene:
    """A petri dish or plate of young seedlings photographed from above (module docstring).

    Args:
        rng_or_seed: a ``np.random.Generator`` (consumed) or a seed (``np.random.default_rng``).
        size: the longer side of a 4:3 photograph (2048 -> 2048 x 1536, the real photographs';
            the seedlings scale with it, cotyledons about 60 px at 2048), or (height, width).
        seedlings: range of the number of seedlings (inclusive, 1..``MAX_SEEDLINGS``). Scattered
            seedlings keep apart while there is room; sown rows hold any number.
        min_visible_pixels: leaves with fewer visible pixels are left out of the labels and the
            photograph; default ``max(10, H * W // 40000)`` (78 at 2048 x 1536). A seedling left
            without a leaf is no plant, though its hypocotyl and roots stay in the photograph.
        row_band: the rows of the reading order, as a share of the image height (``reading_order``).

    Returns:
        A ``Scene`` with ``parts``: plant ids in reading order of their centroids, each seedling's
        leaves cotyledons first.
    """
    height, width = _dish_shape(size, "generate_dish")
    lo, hi = (int(v) for v in seedlings)
    if not 1 <= lo <= hi <= MAX_SEEDLINGS:
        raise ValueError(f"generate_dish: need 1 <= seedlings[0] <= seedlings[1] <= {MAX_SEEDLINGS}, "
                         f"got {tuple(seedlings)!r}")
    if not row_band > 0:
        raise ValueError(f"generate_dish: row_band must be > 0, got {row_band!r}")
    if min_visible_pixels is None:
        min_visible_pixels = max(10, height * width // 40000)
    rng = np.random.default_rng(rng_or_seed)
    s = max(height, width) / _DISH_SIDE
    light = rng.uniform(0.0, 2.0 * math.pi)
    outer = 0.5 * min(height, width) * rng.uniform(0.86, 1.0)
    square = rng.random() < 0.3
    # (centre x, centre y, outer radius, radius of the floor inside the rim, superellipse power of
    # a square plate or None for a round dish, the square's turn in radians)
    plate = (width / 2.0 + rng.normal(0.0, 0.02) * height, height / 2.0 + rng.normal(0.0, 0.02) * height, outer,
             outer * (1.0 - rng.uniform(0.02, 0.035)), rng.uniform(6.0, 10.0) if square else None,
             rng.normal(0.0, 0.05))
    places = _sow(rng, int(rng.integers(lo, hi + 1)), plate, s)
    plants = [_seedling(rng, *place, s) for place in places]

    shape = (height, width)
    counts = [len(plant.leaves) for plant in plants]
    painted = [leaf for plant in plants for leaf in plant.leaves]
    coats = [coat for plant in plants for coat in plant.coats]
    over = _ellipses(shape, [coat for coat in coats if coat[5]])
    outlines = leaf_outlines(painted, 72)
    ids = paint(outlines, shape)
    ids[over >= 128] = 0
    keep = np.flatnonzero(np.bincount(ids.ravel(), minlength=len(painted) + 1)[1:] >= min_visible_pixels)
    if len(keep) < len(painted):
        # Leaving a leaf out only uncovers others, so one repaint settles every count.
        ids = paint(outlines[keep], shape)
        ids[over >= 128] = 0
    leaves = [painted[k] for k in keep]
    owner = np.repeat(np.arange(len(plants)), counts)[keep]

    planes = _dish_planes(rng, height, width, plate, light)
    floor_mask = (_plate_radius(*grid(height, width, 1)[::-1], plate) < plate[3]).astype(np.uint8)
    roots = line_coverage(shape, [root for plant in plants for root in plant.roots], 2.5 * s * rng.uniform(0.8, 1.3))
    stems = line_coverage(shape, [plant.hypocotyl for plant in plants], 7.0 * s * rng.uniform(0.8, 1.3))
    roots *= floor_mask
    stems *= floor_mask
    under = _ellipses(shape, [coat for coat in coats if not coat[5]])
    if rng.random() < 0.75:  # pale green to white hypocotyls, or pinkish purple ones
        stem_rgb = hsv_colour(rng, (60.0, 100.0), (0.1, 0.35), (0.78, 0.95))
    else:
        stem_rgb = hsv_colour(rng, (300.0, 345.0), (0.15, 0.4), (0.6, 0.85))
    coat_rgb = hsv_colour(rng, (15.0, 36.0), (0.45, 0.8), (0.15, 0.4))
    blend(planes, roots, hsv_colour(rng, (40.0, 70.0), (0.03, 0.15), (0.85, 0.98)), rng.uniform(0.6, 0.9))
    blend(planes, stems, stem_rgb)
    blend(planes, under, coat_rgb)

    n = len(leaves)
    if n:
        hue = np.repeat(rng.uniform(85.0, 120.0, len(plants)), counts)[keep]
        true_leaf = np.concatenate([np.arange(count) >= 2 for count in counts])[keep]
        hsv = np.stack([(hue + rng.normal(0.0, 4.0, n) + 8.0 * true_leaf) / 360.0, rng.uniform(0.45, 0.75, n),
                        rng.uniform(0.45, 0.7, n) * np.where(true_leaf, 0.85, 1.0)], axis=1)
        paint_leaf_colours(rng, planes, ids, leaves, light, hsv=hsv)
        cast = leaf_shadows(rng, ids, n, light)
        cast *= -rng.uniform(0.3, 0.6)
        cast += 1.0
        planes *= cast
    blend(planes, over, coat_rgb)
    image = _dish_camera(rng, planes)

    parts = np.zeros(shape, np.uint8)
    parts[roots >= 128] = 2
    parts[stems >= 128] = 1
    parts[under >= 128] = 3
    parts[ids > 0] = 0
    parts[over >= 128] = 3

    # Plants: the seedlings with a visible leaf, in reading order of their regions' centroids.
    area, centroids = _regions(np.concatenate([[0], owner + 1])[ids], len(plants))
    present = np.flatnonzero(area)
    order, rows = reading_order(centroids[present], row_band * height)
    plant_id = np.zeros(len(plants), np.int64)
    plant_id[present[order]] = np.arange(1, len(order) + 1)
    leaf_plant = plant_id[owner]
    numbered = np.lexsort((np.arange(n), leaf_plant))  # painted leaf index of scene leaf 1, 2, ...
    scene_id = np.zeros(n + 1, np.int32)
    scene_id[numbered + 1] = np.arange(1, n + 1)
    names = [position_name(row, int(np.sum(rows[:k] == row))) for k, row in enumerate(rows)]
    return _scene("dish", image, scene_id[ids], leaf_plant[numbered], names, parts=parts)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def scene_paths(out_dir: str | os.PathLike, index: int) -> tuple[Path, Path, Path]:
    """(``sceneNNNNN_rgb.png``, ``sceneNNNNN_label.png``, ``sceneNNNNN_plants.png``) of scene
    ``index`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return tuple(out_dir / f"scene{index:05d}_{kind}.png" for kind in ("rgb", "label", "plants"))


def write_plants_png(path: str | os.PathLike, plants: np.ndarray) -> Path:
    """Write [H, W] plant ids atomically: a palette PNG whose index is the id (as CVPPP's labels)
    up to id 255, else a 16-bit grey PNG; ``leafseg.data.masks.read_label`` reads both back."""
    path = Path(path)
    if plants.size == 0 or int(plants.max()) <= 255:
        return save_indexed_png(plants.astype(np.uint8), path)
    ok, data = cv2.imencode(".png", plants.astype(np.uint16))
    if not ok:
        raise OSError(f"write_plants_png: PNG encoding failed for {path} (array {plants.shape} {plants.dtype})")
    return write_bytes_atomic(path, data.tobytes())


def _scene_options(scene: str, grid, size, style, families, who: str) -> dict:
    """The generator's keyword arguments of a scene kind, checked; ValueError naming a bad one."""
    if scene == "tray":
        style = "random" if style is None else style
        if style not in STYLES:
            raise ValueError(f"{who}: style must be one of {STYLES}, got {style!r}")
        if check_families(families) and style != "random":
            raise ValueError(f"{who}: style families are drawn by the random style only, not {style!r}")
        grid = _check_grid((3, 4) if grid is None else grid, who)
        cell = 500 if size is None else size
        _cell_shape(cell, 0.02, who)
        return {"grid": grid, "cell": cell, "style": style, "families": families or None}
    if scene == "dish":
        for name, value in (("grid", grid), ("style", style), ("families", families or None)):
            if value is not None:
                raise ValueError(f"{who}: {name} is for trays, not dishes; got {name}={value!r}")
        size = _DISH_SIDE if size is None else size
        _dish_shape(size, who)
        return {"size": size}
    raise ValueError(f"{who}: scene must be one of {SCENES}, got {scene!r}")


def _write_scene(out_dir: str, seed: int, index: int, scene: str, options: dict) -> list[Path]:
    """Generate scene ``index`` and write whichever of its three files is missing."""
    rgb_path, label_path, plants_path = scene_paths(out_dir, index)
    draw = generate_tray if scene == "tray" else generate_dish
    result = draw(rosette_rng(seed, index), **options)
    written = write_missing(((rgb_path, result.image), (label_path, result.label)))
    if not plants_path.exists():
        written.append(write_plants_png(plants_path, result.plants))
    return written


def write_scenes(out_dir: str | os.PathLike, count: int, seed: int = 0, scene: str = "tray",
                 grid: tuple[int, int] | None = None, style: str | None = None, workers: int = 1, start: int = 0,
                 progress: bool = True, *, size: int | tuple[int, int] | None = None,
                 families: dict | None = None) -> list[Path]:
    """Write scenes ``start .. start + count - 1`` as ``sceneNNNNN_rgb.png``, ``_label.png`` and
    ``_plants.png`` (``scene_paths``; formats in the module docstring).

    Idempotent: a scene whose three files exist is skipped without being generated; a missing
    file is written again with the same bytes. The bytes depend only on ``(seed, index)`` and the
    options, the same with 1 or many workers.

    Args:
        out_dir: folder, created if missing.
        count: number of scenes.
        seed: dataset seed; scene ``i`` uses ``rosette_rng(seed, i)``.
        scene: ``"tray"`` (``generate_tray``) or ``"dish"`` (``generate_dish``).
        grid: trays only: (rows, columns); None: (3, 4).
        style: trays only: the rosettes' style; None: ``"random"``.
        workers: processes; above 1 a spawn-started process pool.
        start: index of the first scene.
        progress: show a tqdm progress bar.
        size: trays: the cell (``generate_tray``'s ``cell``; None: 500); dishes: the longer
            side (None: 2048).
        families: trays only: the random style's family rules, see ``generate_rosette``.

    Returns:
        Paths written by this call, in index order (rgb, label, plants); empty on a complete rerun.

    Raises:
        ValueError naming an unknown scene, an option of the other kind of scene or a bad value.
    """
    options = _scene_options(scene, grid, size, style, families, "write_scenes")
    if count < 0 or start < 0 or workers < 1:
        raise ValueError(f"write_scenes: need count >= 0, start >= 0, workers >= 1; "
                         f"got count={count}, start={start}, workers={workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = functools.partial(_write_scene, str(out_dir), seed, scene=scene, options=options)
    return write_indexed(job, functools.partial(scene_paths, out_dir), start, count, workers, progress,
                         f"{scene}s -> {out_dir}")
