"""Plants first: find the plants of a photograph, segment each plant's leaves at the model's own
resolution, and map them back into the photograph.

A model sees ``IMAGE_MAX_DIM`` pixels (384 for leaf-small). A photograph of one potted plant
goes through whole, as it always has. A tray of pots, a dish of seedlings or any photograph much
larger than the model would shrink each plant to a few dozen pixels, and its leaves to a few;
so such a scene is split by plant instead:

1. **Where the plants are** (a plant mask on a working copy of at most ``WORK_SIZE`` px):
   by default the model's own leaves (:func:`model_leaf_mask`): it runs over overlapping tiles
   of ``FIND_TILE`` x its size (each shrunk at most that much, so that a tray's plants are
   seen) and the union of its leaves is the mask. It knows leaves in every light and colour
   that it was trained on (purple, yellow, dark, on green cloth), which the alternative, the
   excess-green index (:func:`vegetation_mask`, ``finder="vegetation"``: ``2G - R - B`` above
   Otsu's threshold, as PlantCV and most tray pipelines start) does not; docs/SCENES.md has the
   figures of both.
2. **The plants** (:func:`plants_from_mask`): the mask closed over gaps of ``CLOSE_FRACTION`` of
   the working copy (a plant's leaves meet at its centre; the gaps between pots are wider),
   cut into connected regions. A region much larger than the typical plant (rosettes of
   neighbouring pots touching leaf tip to leaf tip) is split at the valleys between the
   density peaks of its mask (a rosette is densest at its centre): a watershed from peaks at
   least half a typical plant apart. Regions much smaller than the typical plant (a cut-off
   leaf of a neighbour) are joined to the plant beside them; one far from every plant is a
   small plant of its own when it covers ``MIN_PLANT_AREA`` of the frame, else it is left out.
3. **Pots** (a tray): when the plants stand in rows and columns, the plants become the cells
   of that lattice, so a seedling too small to count as a region is still looked for in its
   pot, and a leaf reaching into the next pot stays with its own. Two ways find a lattice:
   :func:`frame_lattice`, a tray filling the frame (pot photographs tiled, a tight crop),
   from where the plant mass lies along each axis; and :func:`find_lattice`, from the plants'
   centres falling into regularly spaced rows and columns. Of the two, the one whose cell
   count is nearer the number of plants found is taken (:func:`_choose_lattice`). With
   ``grid=(rows, cols)`` the frame is divided into rows x cols equal cells, one pot each: a
   plant per cell, named A1, A2, ... in reading order, reported found or not.
4. **Leaves per plant** (:class:`PlantsFirst`): each plant is cropped with a margin (at least
   a third of the model's size, so that a seedling is enlarged at most three times; a cell
   grows by ``CELL_MARGIN``), the model segments the crop at its own resolution, and the
   leaves come back into the photograph. A leaf seen from two crops (a neighbour's leaf inside
   a margin) is kept by the plant whose region holds most of its pixels (a cell: the cell
   holding its centre; a leaf in no region, such as a tip too thin for one, by a crop holding
   it whole, the nearest plant's), so it is found once, and leaves of different plants never
   overlap. The detection limit of the config (``DETECTION_MAX_INSTANCES``) holds per plant,
   not per photograph. Plants without a leaf are dropped, except a ``--grid``'s pots.

Plant ids are the reading order of the plants: rows of plants top to bottom (a plant starts a
new row when its centre lies more than half a typical plant's height below the current row's
centre line), left to right within a row; cells in row-major order. Plants first against
sliced inference over tiles (SAHI) is measured in docs/SCENES.md: plant crops give every leaf
its plant, let a small plant be enlarged and see each plant whole, with no seam through it.

``--plants one`` sends the whole photograph to the model as before; ``--plants auto`` (the
default) splits by plant when the photograph is more than ``SCENE_FACTOR`` times the model's
size and its plants stand in a lattice or are small in the frame (median box side under
``DOMINANT_FRACTION`` of its shorter side); else (one plant filling the frame, whose leaves
may have been found apart, or no plant found) it goes through whole.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np

from mrcnn.pipeline import raw_image

__all__ = ["PLANT_MODES", "FINDERS", "WORK_SIZE", "SCENE_FACTOR", "Plant", "ScenePlan", "PlantsFirst", "parse_grid",
           "grid_name", "vegetation_mask", "model_leaf_mask", "search_tiles", "plants_from_mask", "frame_lattice",
           "find_lattice", "grid_plants", "plan_scene", "goes_whole_at_sight", "shrink_note"]

logger = logging.getLogger(__name__)

PLANT_MODES = ("auto", "one")
# What finds the plants of a scene: the model's own leaves over tiles, or the vegetation index.
FINDERS = ("model", "vegetation")
# The working copy's longer side for finding plants.
WORK_SIZE = 1024
# --plants auto splits a photograph whose longer side is more than this many times the model's.
SCENE_FACTOR = 3.0
# The range Otsu's threshold of the excess-green index 2G - R - B (0..510) is kept in: above
# the green cast of dark soil, below the green of a pale leaf.
EXG_RANGE = (25.0, 100.0)
# A region this many times the typical plant's area or more is split at its density valleys.
SPLIT_FACTOR = 1.8
# Gaps closed between the leaves of one plant, as a fraction of the working copy's longer side.
CLOSE_FRACTION = 0.012
# A region is a plant when its area is at least this fraction of the typical (median) plant's;
# a smaller one is joined to a plant whose box it nearly touches (within this fraction of that
# plant's size), else left out.
MIN_PLANT_FRACTION = 0.12
JOIN_DISTANCE = 0.25
# ... unless it is far from every plant and covers this fraction of the frame: then it is a
# small plant of its own (a seedling among rosettes).
MIN_PLANT_AREA = 0.0003
# The crop around a plant: its box grown by this fraction of its longer side on each side, and
# at least this fraction of the model's image size (a small plant is enlarged at most 3x).
CROP_MARGIN = 0.15
MIN_CROP_FRACTION = 1 / 3
# Without a lattice, plants whose median box side is this fraction of the frame's shorter side
# or more are one plant filling the frame, whose leaves were found apart: it goes through whole.
DOMINANT_FRACTION = 0.25
# Plant centres form a tray's lattice when each row's and column's spacing is within this
# fraction of its median and at least LATTICE_FILL of the cells hold one plant (none two).
LATTICE_TOLERANCE = 0.35
LATTICE_FILL = 0.6
# ... and at most this fraction of the occupied cells hold a second piece (a plant split in two).
LATTICE_SHARED = 0.25
# A tray filling the frame (frame_lattice): the middle band of a cell, the share of the plants'
# mass in it that makes k cells fit, how close to the best k a larger one may be, the most
# cells per axis, and the share of cells that must hold plants.
FRAME_BAND = 0.6
FRAME_CONCENTRATION = 0.70
FRAME_SLACK = 0.08
FRAME_MAX_CELLS = 8
FRAME_OCCUPIED = 0.75
# A lattice must have between 1 / this and this many times as many cells as plants were found.
LATTICE_AGREEMENT = 1.6
# A grid cell's crop: the cell grown by this fraction of its size on each side.
CELL_MARGIN = 0.12
# Plants found by the model: tiles of this many times the model's size, overlapping by this.
FIND_TILE = 2.0
FIND_OVERLAP = 0.25
# How many plant crops go to the model in one call.
CROPS_PER_CALL = 8
# The note on photographs shrunk more than this many times whose leaves come out this small
# (median leaf area in the model's pixels).
SHRINK_NOTE_FACTOR = 3.0
SMALL_LEAF_AREA = 150


@dataclass(frozen=True)
class Plant:
    """One plant of a photograph: ``id`` 1..P in reading order, ``name`` (the id, or the grid
    position A1, A2, ...), its ``box`` and the ``crop`` the model sees, both ``(y1, x1, y2,
    x2)`` in the photograph's pixels, ends exclusive."""

    id: int
    name: str
    box: tuple
    crop: tuple


@dataclass(frozen=True)
class ScenePlan:
    """How a photograph goes to the model: ``mode`` "one" (whole) or "plants" (:class:`Plant`
    crops), the ``plants``, ``regions`` (int32 [H, W]: plant id of each pixel's region, 0 none;
    None when the plants are cells or in mode one), ``shrink`` (the photograph's longer side
    over the model's image size), ``cells`` (rows, cols) when the plants are the cells of a
    lattice or grid (a leaf then belongs to the cell holding its centre) and ``fixed``: every
    plant is reported, leaves or not (a ``--grid``), else plants without a leaf are dropped."""

    mode: str
    plants: tuple
    regions: np.ndarray | None
    shrink: float
    cells: tuple | None = None
    fixed: bool = False


def parse_grid(text):
    """``"3x4"`` (rows x columns) -> (3, 4); None stays None. A bad value raises ValueError
    naming it."""
    if text is None or isinstance(text, tuple):
        grid = text
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
        if not match:
            raise ValueError(f"grid must be ROWSxCOLS (e.g. 3x4), got {text!r}")
        grid = (int(match.group(1)), int(match.group(2)))
    if grid is not None and (len(grid) != 2 or min(grid) < 1 or grid[0] > 26 * 27):
        raise ValueError(f"grid must have at least 1 row and 1 column (at most {26 * 27} rows), got {text!r}")
    return grid


def grid_name(row, col):
    """The position name of a tray cell: row 0, col 0 -> "A1"; row 26 -> "AA" (as spreadsheets)."""
    letters, n = "", row + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{col + 1}"


def _working_copy(image):
    import cv2

    height, width = image.shape[:2]
    scale = min(1.0, WORK_SIZE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale


def vegetation_mask(image) -> np.ndarray:
    """Green pixels of an RGB uint8 image [H, W, 3]: bool [H, W] (see the module docstring)."""
    import cv2

    rgb = np.asarray(image, np.int16)[..., :3]
    exg = np.clip(2 * rgb[..., 1] - rgb[..., 0] - rgb[..., 2], 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(exg, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return exg > min(max(threshold, EXG_RANGE[0]), EXG_RANGE[1])


def _split_touching(green, components, stats, typical):
    """Split each region of ``components`` whose area is ``SPLIT_FACTOR`` x ``typical`` or more
    at the valleys between its vegetation's density peaks; returns the new component image."""
    import cv2
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    radius = math.sqrt(typical / math.pi)
    sigma = max(1.0, 0.5 * radius)
    out, next_id = components.copy(), components.max() + 1
    for k in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= SPLIT_FACTOR * typical) + 1:
        y, x, h, w = (stats[k, cv2.CC_STAT_TOP], stats[k, cv2.CC_STAT_LEFT], stats[k, cv2.CC_STAT_HEIGHT],
                      stats[k, cv2.CC_STAT_WIDTH])
        region = components[y:y + h, x:x + w] == k
        density = cv2.GaussianBlur((green[y:y + h, x:x + w] & region).astype(np.float32), (0, 0), sigma)
        peaks = peak_local_max(density, min_distance=max(1, int(radius)), labels=region.astype(np.int32),
                               threshold_rel=0.3, exclude_border=False)
        if len(peaks) < 2:
            continue
        markers = np.zeros(region.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        parts = watershed(-density, markers, mask=region)
        view = out[y:y + h, x:x + w]
        for part in range(2, len(peaks) + 1):
            view[parts == part] = next_id
            next_id += 1
    return out


def _regions(labels):
    """Each region of a label image (ids 1..K, some may be unused): (K + 1, boxes {id: (y1, x1,
    y2, x2)}, areas [K] float (index id - 1), centroids {id: (y, x)}); unused ids have area 0
    and no box."""
    from scipy import ndimage

    count = int(labels.max()) + 1
    areas = np.bincount(labels.ravel(), minlength=count)[1:].astype(np.float64)
    boxes, centroids = {}, {}
    for k, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        boxes[k] = (found[0].start, found[1].start, found[0].stop, found[1].stop)
        ys, xs = np.nonzero(labels[found] == k)
        centroids[k] = (found[0].start + ys.mean(), found[1].start + xs.mean())
    return count, boxes, areas, centroids


def _reading_order(centres, heights):
    """Indices of plants in reading order, from their centres [(y, x)] and box heights."""
    if not len(centres):
        return []
    step = 0.5 * float(np.median(heights))
    order = sorted(range(len(centres)), key=lambda i: centres[i][0])
    rows, line = [], None
    for i in order:
        if line is None or centres[i][0] - line > step:
            rows.append([i])
        else:
            rows[-1].append(i)
        line = float(np.mean([centres[j][0] for j in rows[-1]]))
    return [i for row in rows for i in sorted(row, key=lambda j: centres[j][1])]


def _crop_around(box, shape, min_side, margin):
    """``box`` grown by ``margin`` of its longer side and to at least ``min_side`` (centred),
    clipped to an image of ``shape``."""
    y1, x1, y2, x2 = box
    height, width = shape[:2]
    grow = margin * max(y2 - y1, x2 - x1)
    cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
    half_h = max((y2 - y1) / 2 + grow, min_side / 2)
    half_w = max((x2 - x1) / 2 + grow, min_side / 2)
    return (max(0, int(math.floor(cy - half_h))), max(0, int(math.floor(cx - half_w))),
            min(height, int(math.ceil(cy + half_h))), min(width, int(math.ceil(cx + half_w))))


def _clusters(values, gap):
    """Sorted 1-d ``values`` grouped where consecutive values differ by more than ``gap``:
    (the group of each value in input order, the groups' means)."""
    order = np.argsort(values)
    group = np.zeros(len(values), np.int64)
    current = 0
    for previous, index in zip(order[:-1], order[1:]):
        if values[index] - values[previous] > gap:
            current += 1
        group[index] = current
    means = np.array([np.mean(np.asarray(values)[group == g]) for g in range(current + 1)])
    return group, means


def _regular(means):
    steps = np.diff(means)
    return len(steps) < 2 or bool(np.all(np.abs(steps - np.median(steps)) <= LATTICE_TOLERANCE * np.median(steps)))


def _concentration(profile, k):
    """The share of a profile's mass (along one axis) within the middle ``FRAME_BAND`` of each of
    ``k`` equal cells."""
    n = len(profile)
    position = (np.arange(n) + 0.5) / n * k
    middle = np.abs(position - np.floor(position) - 0.5) <= FRAME_BAND / 2
    return float(profile[middle].sum() / max(float(profile.sum()), 1e-9))


def _frame_cells(profile):
    """The number of equal cells along one axis whose middles hold the plants, or 1."""
    scores = {k: _concentration(profile, k) for k in range(2, FRAME_MAX_CELLS + 1)}
    best = max(scores.values())
    chosen = [k for k, score in scores.items() if score >= FRAME_CONCENTRATION and score >= best - FRAME_SLACK]
    return max(chosen) if chosen else 1


def frame_lattice(mask):
    """The (rows, cols) of a tray that fills the frame edge to edge (pot photographs tiled, or a
    tray framed tightly), from a plant mask (bool [h, w]), or None.

    Along each axis, k equal cells fit when the plants' mass lies in the middle ``FRAME_BAND`` of
    the cells (``FRAME_CONCENTRATION`` of it or more; an even spread puts ``FRAME_BAND`` there),
    the largest such k within ``FRAME_SLACK`` of the best; and ``FRAME_OCCUPIED`` of the cells
    must hold plants (so that a few seedlings in bands are no tray).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    rows, cols = _frame_cells(mask.sum(axis=1).astype(np.float64)), _frame_cells(mask.sum(axis=0).astype(np.float64))
    if rows * cols < 2:
        return None
    ys = np.linspace(0, mask.shape[0], rows + 1).round().astype(int)
    xs = np.linspace(0, mask.shape[1], cols + 1).round().astype(int)
    mass = np.array([[mask[ys[r]:ys[r + 1], xs[c]:xs[c + 1]].sum() for c in range(cols)] for r in range(rows)], float)
    if np.count_nonzero(mass >= 0.1 * mass.mean()) < FRAME_OCCUPIED * mass.size:
        return None
    return rows, cols


def _choose_lattice(frame, fitted, boxes, shape):
    """Of a frame lattice ((rows, cols) or None) and a fitted one ((row edges, column edges) or
    None), the edges of the one whose cell count is nearer the number of plants found (their
    ``boxes``; a tie: more cells, as neighbouring plants found as one are commoner than one
    plant found as two), among those with between ``1 / LATTICE_AGREEMENT`` and
    ``LATTICE_AGREEMENT`` times as many cells as plants and at most ``LATTICE_SHARED`` of their
    occupied cells holding the centres of two plants or more (scattered plants are no tray;
    plants whose box is under a quarter of the median's, pieces and fragments, are not
    counted there); else None."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    found = len(boxes)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    plants = boxes[areas >= 0.25 * np.median(areas)] if found else boxes  # (pieces and fragments share cells)
    cy, cx = (plants[:, 0] + plants[:, 2]) / 2, (plants[:, 1] + plants[:, 3]) / 2

    def shared(rows, cols):
        cells = list(zip(np.searchsorted(rows, cy, side="right"), np.searchsorted(cols, cx, side="right")))
        occupied = len(set(cells))
        return len(plants) - occupied > LATTICE_SHARED * occupied

    candidates = []
    if frame is not None:
        candidates.append((np.linspace(0, shape[0], frame[0] + 1).round().astype(int),
                           np.linspace(0, shape[1], frame[1] + 1).round().astype(int)))
    if fitted is not None:
        candidates.append(fitted)
    candidates = [(rows, cols) for rows, cols in candidates
                  if found / LATTICE_AGREEMENT <= (len(rows) - 1) * (len(cols) - 1) <= found * LATTICE_AGREEMENT
                  and not shared(rows, cols)]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs((len(c[0]) - 1) * (len(c[1]) - 1) - found),
                                          -(len(c[0]) - 1) * (len(c[1]) - 1)))


def find_lattice(boxes, shape):
    """The rows and columns of a tray, from its plants' ``boxes`` [(y1, x1, y2, x2)] in an image
    of ``shape``, or None when the plants stand in no lattice (module docstring, step 2).

    Returns (row edges [R + 1], column edges [C + 1]) in pixels: the outer edges are the
    image's, the inner ones midway between neighbouring rows or columns of plant centres. The
    lattice is fitted to the plants whose box is at least a quarter of the median box's area.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes = boxes[areas >= 0.25 * np.median(areas)]  # fragments and seedlings fall into the cells later
    if len(boxes) < 2:
        return None
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    height, width = np.median(boxes[:, 2] - boxes[:, 0]), np.median(boxes[:, 3] - boxes[:, 1])
    rows, row_means = _clusters(cy, 0.5 * height)
    cols, col_means = _clusters(cx, 0.5 * width)
    cells = len(row_means) * len(col_means)
    occupied = len(set(zip(rows, cols)))
    # (two pieces of one plant share its cell; many shared cells mean no lattice)
    if cells < 2 or occupied < LATTICE_FILL * cells or len(boxes) - occupied > LATTICE_SHARED * occupied:
        return None
    if not (_regular(row_means) and _regular(col_means)):
        return None
    row_edges = np.concatenate([[0], (row_means[:-1] + row_means[1:]) / 2, [shape[0]]]).round().astype(int)
    col_edges = np.concatenate([[0], (col_means[:-1] + col_means[1:]) / 2, [shape[1]]]).round().astype(int)
    return row_edges, col_edges


def search_tiles(shape, model_size):
    """The tiles (y1, x1, y2, x2) over an image of ``shape`` that the plants are searched in:
    ``FIND_TILE`` x the model's size, overlapping by ``FIND_OVERLAP``, the last of each row and
    column flush with the image's edge."""
    height, width = shape[:2]
    tile = int(FIND_TILE * model_size)
    step = max(1, int(tile * (1 - FIND_OVERLAP)))

    def starts(size):
        return sorted({*range(0, max(1, size - tile) + 1, step), max(0, size - tile)})

    return [(y, x, min(height, y + tile), min(width, x + tile)) for y in starts(height) for x in starts(width)]


def model_leaf_mask(model, image, shape, model_size):
    """Where ``model`` finds leaves in ``image``: bool ``shape`` (the working copy's size),
    from detections over the :func:`search_tiles` (each shrunk at most ``FIND_TILE`` times, so
    that the plants of a tray are seen)."""
    import cv2

    height, width = image.shape[:2]
    boxes = search_tiles(image.shape, model_size)
    scale_y, scale_x = shape[0] / height, shape[1] / width
    found = np.zeros(shape, bool)
    for start in range(0, len(boxes), CROPS_PER_CALL):
        chunk = boxes[start:start + CROPS_PER_CALL]
        for (y1, x1, y2, x2), result in zip(chunk, model.detect([image[y1:y2, x1:x2] for y1, x1, y2, x2 in chunk])):
            masks = np.asarray(result["masks"], bool)
            if masks.ndim != 3 or not masks.shape[-1]:
                continue
            union = masks.any(axis=-1).astype(np.uint8)
            top, left = round(y1 * scale_y), round(x1 * scale_x)
            bottom, right = max(top + 1, round(y2 * scale_y)), max(left + 1, round(x2 * scale_x))
            found[top:bottom, left:right] |= cv2.resize(union, (right - left, bottom - top),
                                                       interpolation=cv2.INTER_NEAREST).astype(bool)
    return found


def plants_from_mask(green, scale, shape, model_size):
    """The plants of a plant mask ``green`` (bool, the working copy of an image of ``shape`` at
    ``scale``; module docstring, step 2): (plants: list of :class:`Plant` in reading order,
    regions: int32 [H, W], each pixel's plant id or 0). model_size sets the smallest crop."""
    import cv2

    image_shape = shape
    green = np.asarray(green).astype(np.uint8)
    side = max(green.shape[:2])
    green = cv2.morphologyEx(green, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    radius = max(1, round(CLOSE_FRACTION * side))
    closed = cv2.morphologyEx(green, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                                (2 * radius + 1, 2 * radius + 1)))
    count, components, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    if not len(areas) or areas.max() < 4:
        return [], np.zeros(image_shape[:2], np.int32)
    typical = float(np.median(areas[areas >= 0.05 * areas.max()]))
    if areas.max() >= SPLIT_FACTOR * typical:
        components = _split_touching(green.astype(bool), components, stats, typical)
    count, boxes, areas, centroids = _regions(components)
    big = np.flatnonzero(areas >= MIN_PLANT_FRACTION * typical) + 1
    owner = np.zeros(count, np.int64)  # component -> the plant component it belongs to (0: none)
    owner[big] = big
    isolated = []
    for k in np.flatnonzero((areas > 0) & (areas < MIN_PLANT_FRACTION * typical)) + 1:
        y, x = centroids[k]
        best, best_gap = 0, math.inf
        for b in big:
            y1, x1, y2, x2 = boxes[b]
            gap = math.hypot(max(y1 - y, 0, y - y2), max(x1 - x, 0, x - x2))
            if gap <= JOIN_DISTANCE * max(y2 - y1, x2 - x1) and gap < best_gap:
                best, best_gap = b, gap
        owner[k] = best
        if not best and areas[k - 1] >= MIN_PLANT_AREA * green.size:
            isolated.append(k)  # a small plant of its own (a seedling beside rosettes)
    owner[isolated] = isolated
    big = np.concatenate([big, np.asarray(isolated, np.int64)]).astype(np.int64)
    centres, heights, members = [], [], []
    for b in big:
        parts = np.flatnonzero(owner == b)
        ys1, xs1, ys2, xs2 = zip(*(boxes[k] for k in parts))
        member_box = (min(ys1), min(xs1), max(ys2), max(xs2))
        members.append((b, parts, member_box))
        centres.append(((member_box[0] + member_box[2]) / 2, (member_box[1] + member_box[3]) / 2))
        heights.append(member_box[2] - member_box[0])
    order = _reading_order(centres, heights)
    lookup = np.zeros(count, np.int32)
    plants = []
    for plant_id, i in enumerate(order, start=1):
        _, parts, (y1, x1, y2, x2) = members[i]
        lookup[parts] = plant_id
        box = (int(math.floor(y1 / scale)), int(math.floor(x1 / scale)),
               min(image_shape[0], int(math.ceil(y2 / scale))), min(image_shape[1], int(math.ceil(x2 / scale))))
        crop = _crop_around(box, image_shape, MIN_CROP_FRACTION * model_size, CROP_MARGIN)
        plants.append(Plant(plant_id, str(plant_id), box, crop))
    regions = lookup[components]
    if scale < 1.0:
        regions = cv2.resize(regions, (image_shape[1], image_shape[0]), interpolation=cv2.INTER_NEAREST)
    return plants, regions.astype(np.int32)


def grid_plants(shape, grid, edges=None, names="grid"):
    """One plant per cell of a ``grid`` (rows, cols) laid over an image of ``shape``, in reading
    order: each plant's box is its cell, its crop the cell grown by ``CELL_MARGIN``.

    edges: (row edges [rows + 1], column edges [cols + 1]) in pixels; default equal cells.
    names: "grid" names the plants A1, A2, ... (a tray's positions), "ids" 1, 2, ...
    """
    rows, cols = grid
    height, width = shape[:2]
    ys, xs = edges if edges is not None else (np.linspace(0, height, rows + 1).round().astype(int),
                                              np.linspace(0, width, cols + 1).round().astype(int))
    plants = []
    for r in range(rows):
        for c in range(cols):
            box = (int(ys[r]), int(xs[c]), int(ys[r + 1]), int(xs[c + 1]))
            crop = _crop_around(box, shape, 0, CELL_MARGIN)
            plant_id = r * cols + c + 1
            plants.append(Plant(plant_id, grid_name(r, c) if names == "grid" else str(plant_id), box, crop))
    return plants


def plan_scene(image, model_size, plants="auto", grid=None, model=None) -> ScenePlan:
    """How ``image`` goes to a model of ``model_size`` px: whole or by plant (module docstring).

    plants: "auto" or "one"; grid: (rows, cols) or None (a grid always splits by cell); model:
    find the plants with it (:func:`model_leaf_mask`), else in the vegetation."""
    if plants not in PLANT_MODES:
        raise ValueError(f"plants must be one of {', '.join(PLANT_MODES)}, got {plants!r}")
    grid = parse_grid(grid)
    shape = np.shape(image)
    shrink = max(shape[:2]) / float(model_size)
    if grid is not None:
        return ScenePlan("plants", tuple(grid_plants(shape, grid)), None, shrink, grid, fixed=True)
    if goes_whole_at_sight(shape, model_size, plants, grid):
        return ScenePlan("one", (), None, shrink)
    small, scale = _working_copy(np.asarray(image))
    mask = vegetation_mask(small) if model is None else model_leaf_mask(model, image, small.shape[:2], model_size)
    found, regions = plants_from_mask(mask, scale, shape, model_size)
    if not found:
        return ScenePlan("one", (), None, shrink)
    boxes = [plant.box for plant in found]
    lattice = _choose_lattice(frame_lattice(mask), find_lattice(boxes, shape), boxes, shape)
    if lattice is not None:
        cells = (len(lattice[0]) - 1, len(lattice[1]) - 1)
        return ScenePlan("plants", tuple(grid_plants(shape, cells, lattice, names="ids")), None, shrink, cells)
    sides = [max(p.box[2] - p.box[0], p.box[3] - p.box[1]) for p in found]
    if np.median(sides) >= DOMINANT_FRACTION * min(shape[:2]):
        return ScenePlan("one", (), None, shrink)  # one plant fills the frame (its leaves may be apart)
    return ScenePlan("plants", tuple(found), regions, shrink)


def goes_whole_at_sight(shape, model_size, plants="auto", grid=None) -> bool:
    """Whether :func:`plan_scene` sends an image of ``shape`` whole without looking at it (no
    grid, and plants "one" or the image at most SCENE_FACTOR x the model)."""
    return parse_grid(grid) is None and (plants == "one" or max(shape[:2]) / float(model_size) <= SCENE_FACTOR)


def shrink_note(name, shrink, result, model_size):
    """A one-line note when a photograph went to the model whole, shrunk ``SHRINK_NOTE_FACTOR``
    times or more, and its leaves came out small; None otherwise."""
    if shrink <= SHRINK_NOTE_FACTOR:  # (up to SCENE_FACTOR, plants first is not tried either)
        return None
    masks = np.asarray(result["masks"])
    areas = masks.reshape(-1, masks.shape[-1]).sum(axis=0) if masks.ndim == 3 and masks.shape[-1] else np.zeros(0)
    median = float(np.median(areas)) / shrink ** 2 if len(areas) else 0.0
    if len(areas) and median >= SMALL_LEAF_AREA:
        return None
    larger = int(min(1024, max(2 * model_size, 64 * round(model_size * shrink / 3 / 64))))
    return (f"{name}: shrunk {shrink:.1f}x to the model's {model_size} px, its leaves came out small "
            f"({len(areas)} found, median {median:.0f} px at the model's scale): for a tray or dish use --plants auto "
            f"(the default) or --grid ROWSxCOLS; for one large plant --set IMAGE_MAX_DIM={larger} "
            f"--set IMAGE_MIN_DIM={larger}")


def _keeper(plan, plant, mask, ys, xs):
    """The plant that keeps a detection of ``plant``'s crop lying in no plant's region (a leaf
    tip too thin for a region, a speck too small for a plant): None when the crop cuts it (it
    touches an edge of the crop inside the photograph; a crop holding it whole keeps it), else,
    of the plants whose crop holds it whole, the one whose box is nearest its centre, so that
    every crop seeing it whole agrees."""
    (y0, x0, y1, x1), (height, width) = plant.crop, plan.regions.shape
    if (y0 > 0 and mask[0].any()) or (x0 > 0 and mask[:, 0].any()) or (y1 < height and mask[-1].any()) \
            or (x1 < width and mask[:, -1].any()):
        return None
    top, left, bottom, right = y0 + ys.min(), x0 + xs.min(), y0 + ys.max() + 1, x0 + xs.max() + 1
    cy, cx = y0 + ys.mean(), x0 + xs.mean()
    holding = [p for p in plan.plants if p.crop[0] <= top and p.crop[1] <= left and bottom <= p.crop[2]
               and right <= p.crop[3]]
    return min(holding, key=lambda p: (math.hypot(max(p.box[0] - cy, 0, cy - p.box[2]),
                                                  max(p.box[1] - cx, 0, cx - p.box[3])), p.id)).id


class PlantsFirst:
    """A model that segments photographs plants first (module docstring): ``detect(images)``
    returns, per image, Matterport's result (rois, class_ids, scores, masks in the photograph's
    pixels) plus ``plant_ids`` int32 [N] (the plant of each leaf, 1..P), ``plants`` (the
    :class:`Plant` list; one plant, the whole frame, in mode one) and ``plan`` (the
    :class:`ScenePlan`). Leaves come sorted by plant, then by descending score.

    model: anything with ``detect(images)`` and ``config`` (IMAGE_MAX_DIM). plants: "auto" or
    "one"; grid: (rows, cols), "RxC" or None. names: optional image names for the notes.
    """

    def __init__(self, model, plants="auto", grid=None, finder="model"):
        if plants not in PLANT_MODES:
            raise ValueError(f"plants must be one of {', '.join(PLANT_MODES)}, got {plants!r}")
        if finder not in FINDERS:
            raise ValueError(f"finder must be one of {', '.join(FINDERS)}, got {finder!r}")
        self.model, self.plants, self.grid, self.finder = model, plants, parse_grid(grid), finder
        self.config = getattr(model, "config", None)  # (a stand-in may have none: the model size is then 384)

    @property
    def model_size(self):
        return int(getattr(self.config, "IMAGE_MAX_DIM", 0) or 384)

    def plan(self, image) -> ScenePlan:
        return plan_scene(image, self.model_size, self.plants, self.grid,
                          self.model if self.finder == "model" else None)

    def prepare(self, image):
        """``image`` ready for :meth:`detect`, for a thread that reads the next images while the
        model runs: molded ahead by the model (its ``mold``) when it goes through whole without
        looking (:func:`goes_whole_at_sight`), else as it is (finding plants may run the model)."""
        image = np.asarray(image)
        mold = getattr(self.model, "mold", None)
        if mold is not None and goes_whole_at_sight(image.shape, self.model_size, self.plants, self.grid):
            return mold(image)
        return image

    def detect(self, images, verbose=0, names=None):
        """images: arrays, or what :meth:`prepare` made of them."""
        items = list(images)
        images = [raw_image(item) for item in items]
        plans = [self.plan(image) for image in images]
        results = [None] * len(images)
        whole = [i for i, plan in enumerate(plans) if plan.mode == "one"]
        if whole:
            for i, result in zip(whole, self.model.detect([items[i] for i in whole])):
                results[i] = self._whole(images[i], result, plans[i], names[i] if names else f"image {i}")
        for i, plan in enumerate(plans):
            if plan.mode == "plants":
                results[i] = self._by_plant(images[i], plan)
        return results

    def _whole(self, image, result, plan, name):
        height, width = image.shape[:2]
        n = len(result["scores"])
        note = shrink_note(name, plan.shrink, result, self.model_size)
        if note:
            logger.warning(note)
        plant = Plant(1, "1", (0, 0, height, width), (0, 0, height, width))
        # (a model that groups its own leaves into plants keeps its grouping)
        return {"plant_ids": np.ones(n, np.int32), "plants": [plant], **result, "plan": plan, "note": note}

    def _by_plant(self, image, plan):
        height, width = image.shape[:2]
        kept = []  # (plant id, score, class id, roi [4], crop box, crop-local mask)
        plants = list(plan.plants)
        for start in range(0, len(plants), CROPS_PER_CALL):
            chunk = plants[start:start + CROPS_PER_CALL]
            crops = [image[p.crop[0]:p.crop[2], p.crop[1]:p.crop[3]] for p in chunk]
            for plant, result in zip(chunk, self.model.detect(crops)):
                kept += self._owned(plant, result, plan)
        if not plan.fixed:  # plants without a leaf are no plants; the others keep their reading order
            found = sorted({leaf[0] for leaf in kept})
            renumber = {old: new for new, old in enumerate(found, start=1)}
            plants = [Plant(renumber[p.id], p.name if p.name != str(p.id) else str(renumber[p.id]), p.box, p.crop)
                      for p in plants if p.id in renumber]
            kept = [(renumber[leaf[0]], *leaf[1:]) for leaf in kept]
        kept.sort(key=lambda leaf: (leaf[0], -leaf[1]))
        n = len(kept)
        masks = np.zeros((height, width, n), bool)
        rois = np.zeros((n, 4), np.int32)
        for k, (_, _, _, roi, (y1, x1, y2, x2), mask) in enumerate(kept):
            masks[y1:y2, x1:x2, k] = mask
            rois[k] = roi
        return {"rois": rois, "class_ids": np.array([leaf[2] for leaf in kept], np.int32),
                "scores": np.array([leaf[1] for leaf in kept], np.float32), "masks": masks,
                "plant_ids": np.array([leaf[0] for leaf in kept], np.int32), "plants": plants, "plan": plan,
                "note": None}

    @staticmethod
    def _owned(plant, result, plan):
        """The detections of ``plant``'s crop that belong to it (module docstring, step 3)."""
        y0, x0 = plant.crop[0], plant.crop[1]
        masks = np.asarray(result["masks"], bool)
        leaves = []
        for k in range(masks.shape[-1] if masks.ndim == 3 else 0):
            mask = masks[..., k]
            ys, xs = np.nonzero(mask)
            if not len(ys):
                continue
            if plan.cells is not None:
                cy, cx = y0 + ys.mean(), x0 + xs.mean()
                y1, x1, y2, x2 = plant.box
                if not (y1 <= cy < y2 and x1 <= cx < x2):
                    continue
            else:
                under = plan.regions[y0 + ys, x0 + xs]
                votes = np.bincount(under, minlength=plant.id + 1)
                votes[0] = 0
                if votes.any() and votes.argmax() != plant.id:
                    continue
                if not votes.any() and _keeper(plan, plant, mask, ys, xs) != plant.id:
                    continue
            roi = np.asarray(result["rois"][k], np.int64) + [y0, x0, y0, x0]
            leaves.append((plant.id, float(result["scores"][k]), int(result["class_ids"][k]), roi,
                           plant.crop, mask))
        return leaves
