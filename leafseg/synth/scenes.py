"""The ``random`` style of ``leafseg.synth.rosettes``: domain randomisation of plant photographs.

The classic style draws one narrow look (a centred, well-lit rosette of light-green obovate
leaves in a round pot); a model trained on it alone fails on other plant images. This module
draws from the range that top-view plant photographs vary in, reusing the classic style's leaves
(``leafseg.synth.leaves``: geometry, rasteriser, leaf shading and cast shadows):

* Scene: backgrounds (plain, stone, fabric, wood, bench planks, mesh, plastic tray, checker)
  in any colour; a round or square pot, a tray of cells, neighbouring pots or bare soil, any
  colour, possibly partly out of frame; soils from pale sand to black peat with perlite and
  grit. The plant anywhere near the pot, from a small seedling to a rosette overflowing the
  pot and the frame.
* Plant: 2..30 leaves (``min_leaves``/``max_leaves``) on a golden-angle spiral with more
  jitter; per plant a blade shape (orbicular, obovate, spatulate, lanceolate) and a margin
  (smooth, wavy, serrate, lobed); petioles from none to long; foreshortened (tilted) and
  curled blades; yellow-green to dark blue-green, anthocyanin purple, senescent yellow old
  leaves; lateral veins, specular highlights, leaf-on-leaf shadows.
* Camera and light: exposure from very dark to bright, colour temperature and tint,
  vignetting and uneven light, low contrast and gamma, slight perspective, defocus and motion
  blur, sensor noise (luminance and colour), JPEG compression at a random quality.
* Clutter, in a chosen share of the images only (``clutter``, default none): moss or algae on
  the soil and leaves of neighbouring plants reaching in from the frame's edge, in the
  photograph and never in the label.
* Realism options, all off by default (``realism``, ``leafseg.synth.realism``): granular moss,
  algal films and liverwort on the soil; petioles as wide as real ones; tight small crops of
  seedlings; seedlings on agar or paper with unlabelled hypocotyls and roots; tiny young leaves
  at the rosette's centre.

Perspective is the only geometric effect: the leaf ids are warped with nearest-neighbour by
the same homography as the photograph (whose scene is first drawn unwarped), and the visible
pixel counts, the removal of tiny leaves and the renumbering are done on the warped ids, so the
label matches the photograph. Every other effect touches the photograph only.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from leafseg.synth.leaves import (GOLDEN_ANGLE_DEG, Leaf, fractal_noise, grid, leaf_outlines, leaf_shadows, paint,
                                  paint_leaf_colours, smoothstep)
from leafseg.synth import realism as real
from leafseg.data.masks import hsv_to_rgb

# Outline points per blade side: enough for ~20 teeth with their harmonics.
_BLADE_STATIONS = 112
# Blade shapes: (length / width of the blade, where it is widest, roundness of its ends).
_SHAPES = {
    "orbicular": ((0.85, 1.2), (0.45, 0.6), (0.35, 0.5)),
    "obovate": ((1.2, 2.0), (0.55, 0.72), (0.45, 0.65)),
    "spatulate": ((1.8, 3.0), (0.7, 0.82), (0.5, 0.7)),
    "lanceolate": ((2.6, 5.0), (0.35, 0.55), (0.7, 1.0)),
}
_MARGINS = ("smooth", "wavy", "serrate", "lobed")
_BACKGROUNDS = ("plain", "stone", "fabric", "wood", "bench", "mesh", "tray", "checker")
# A single pot twice as often as each other layout.
_LAYOUTS = ("pot", "pot", "neighbours", "tray", "soil")
# Exposures below this make the "dark" family.
_DARK = 0.55

# Style families, for estimating generalisation to a kind of image never trained on (leave one
# family out of the training data, test on that family alone). Each family is decided by one
# draw of the generator, which ``families`` rules force ({"dark": True}: every image dark) or
# forbid ({"dark": False}: no dark image) by drawing again; without rules every draw is the same
# as ever, so a seed gives the same images.
FAMILIES = {
    "trays": "scene: trays of cells and neighbouring pots (otherwise a single pot or bare soil)",
    "narrow": "leaf shape: lanceolate blades, or serrate or lobed margins",
    "purple": "colour: anthocyanin purple flushing blades and petioles",
    "dark": f"light: an exposure below {_DARK} of the normal",
}


def check_families(families) -> dict:
    """``families`` as {family: bool} (None -> {}); ValueError naming an unknown family or value."""
    rules = dict(families or {})
    for name, value in rules.items():
        if name not in FAMILIES:
            raise ValueError(f"unknown style family {name!r}: one of {', '.join(FAMILIES)}")
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"style family {name!r}: True (only that family) or False (never it), got {value!r}")
    return rules


def _drawn(draw, member, family: str, rules: dict | None):
    """``draw()`` again until its value is in ``family`` (rule True) or not (rule False); the first
    value when there is no rule for the family."""
    want = None if not rules else rules.get(family)
    for _ in range(10_000):
        value = draw()
        if want is None or bool(member(value)) == want:
            return value
    raise RuntimeError(f"no draw {'in' if want else 'outside'} the style family {family!r} in 10000 tries")


def random_rosette(rng: np.random.Generator, height: int, width: int, min_leaves: int, max_leaves: int,
                   min_visible_pixels: int, families: dict | None = None,
                   clutter: float = 0.0, realism=None) -> tuple[np.ndarray, np.ndarray]:
    """One randomised photograph: ([H, W, 3] uint8 RGB image, [H, W] uint8 leaf ids 0..N, every
    id present, oldest visible leaf first). ``families``: {family: True/False}, see FAMILIES.
    ``clutter``: the share of images with unlabelled distractors (moss on the soil, leaves of
    neighbouring plants reaching in from the frame's edge; see ``neighbour_leaves``). At 0 no
    draw is made for it, so a seed gives the same image as without the option.
    ``realism``: the options of ``leafseg.synth.realism`` (None, a dict or a ``Realism``); a
    seedling crop is smaller than H x W. All off, the image is the same as without them."""
    rules = check_families(families)
    clutter = check_clutter(clutter)
    options = real.check_realism(realism, rules)
    mossy = young = False
    if options:
        kind, mossy, young = real.decide(rng, options)
        if kind != "rosette":
            image, ids, _ = seedling_photo(rng, height, width, min_visible_pixels, on="soil" if kind == "seedling"
                                           else "agar", moss=real.moss_stream(rng) if mossy else None)
            return image, ids
    # Every option's generator is taken before the image's first draw (see realism.decide).
    stalks = real.petiole_stream(rng) if options.petioles == "real" else None
    youth = real.young_stream(rng) if young else None
    moss_rng = real.moss_stream(rng) if mossy else None
    scale = min(height, width)
    light = rng.uniform(0.0, 2.0 * math.pi)
    layout = _drawn(lambda: _LAYOUTS[rng.integers(len(_LAYOUTS))], lambda kind: kind in ("neighbours", "tray"),
                    "trays", rules)
    pot_x = width / 2.0 + rng.normal(0.0, 0.12) * scale
    pot_y = height / 2.0 + rng.normal(0.0, 0.12) * scale
    soil_r = scale * rng.uniform(0.2, 0.65)
    warp = _perspective(rng, height, width)

    for _ in range(100):
        n = int(rng.integers(min_leaves, max_leaves + 1))
        # From a seedling to a rosette twice the pot, log-uniform in size.
        radius = soil_r * math.exp(rng.uniform(math.log(0.25), math.log(2.0)))
        centre = (pot_x + rng.normal(0.0, 0.1) * soil_r, pot_y + rng.normal(0.0, 0.1) * soil_r)
        leaves = sample_leaves(rng, n, *centre, radius, rules=rules, stalks=stalks)
        if youth is not None:
            leaves += real.young_leaves(youth, leaves, centre, radius, min_visible_pixels, room=255 - n)
            n = len(leaves)
        outlines = leaf_outlines(leaves, _BLADE_STATIONS)
        flat_ids = paint(outlines, (height, width))
        ids = _warp_ids(flat_ids, warp)
        keep = np.flatnonzero(np.bincount(ids.ravel(), minlength=n + 1)[1:] >= min_visible_pixels)
        if len(keep) < n:
            # Removing a leaf only uncovers others (each output pixel samples one fixed source
            # pixel, nearest-neighbour), so one repaint settles every count.
            leaves = [leaves[k] for k in keep]
            flat_ids = paint(outlines[keep], (height, width))
            ids = _warp_ids(flat_ids, warp)
        if len(leaves) >= 1:
            break
    else:
        raise RuntimeError(f"generate_rosette: no visible leaf of >= {min_visible_pixels} pixels at "
                           f"size {height}x{width} in 100 tries")

    cluttered = clutter > 0 and rng.random() < clutter
    moss = cluttered and rng.random() < 0.6
    planes, soil = _scene(rng, height, width, layout, (pot_x, pot_y, soil_r), light, moss)
    if moss_rng is not None:
        real.paint_bryophytes(moss_rng, planes, soil)
    if cluttered and (not moss or rng.random() < 0.7):
        # The neighbours lie under the plant, so its leaves' visible pixels are unchanged.
        others, other_leaves = neighbour_leaves(rng, height, width, centre, radius, stalks=stalks)
        if other_leaves:
            others[flat_ids > 0] = 0
            _colour_leaves(rng, planes, others, other_leaves, light, rules)
    _colour_leaves(rng, planes, flat_ids, leaves, light, rules)
    cast = leaf_shadows(rng, flat_ids, len(leaves), light, reach=(0.002, 0.015))
    cast *= -rng.uniform(0.4, 0.95)
    cast += 1.0
    for plane in planes:
        plane *= cast
    if warp is not None:
        planes = np.stack([cv2.warpPerspective(p, warp, (width, height), flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REPLICATE) for p in planes])
    return _camera(rng, planes, rules), drop_remnants(ids, min_visible_pixels)


# Parts of a seedling photograph that are not leaves (``seedling_photo``), numbered as the
# dishes' ``Scene.parts`` of leafseg.synth.trays, and moss.
HYPOCOTYL, ROOT, MOSS = 1, 2, 4


def seedling_photo(rng: np.random.Generator, height: int, width: int, min_visible_pixels: int, on: str = "soil",
                   moss: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A photograph of one seedling, for the realism options ``seedlings`` and ``agar``:
    ([h, w, 3] uint8 RGB, [h, w] uint8 leaf ids 0..N, every id present, cotyledons first;
    [h, w] uint8 parts that are not leaves: HYPOCOTYL, ROOT, MOSS, else 0).

    ``on="soil"``: a tight crop of a seedling of 4 to 8 leaves (``realism.seedling_leaves``)
    filling the frame, on close-up soil (larger grains) in a pot or not, with moss when ``moss``
    (its generator) is given. ``on="agar"``: a seedling of 2 to 6 leaves on agar or
    germination paper (``realism.plate_planes``), its hypocotyl and roots and some roots of
    others crossing the frame drawn but not labelled, under the lid's condensation.

    Soil crops, and half the agar ones, are small: drawn at least three times larger than
    (h, w), whose shorter side is ``realism.crop_side`` (48..128 px), then reduced, the
    photograph by area and the ids by majority (``realism.downscale_ids``); a leaf keeps its
    label if it has at least max(6, ``min_visible_pixels`` x (h / H)**2) pixels, else goes to
    what surrounds it (``drop_remnants``). The others are H x W.
    """
    for _ in range(20):
        out = _seedling_photo(rng, height, width, min_visible_pixels, on, moss)
        if out[1].any():
            return out
    raise RuntimeError(f"seedling_photo: no visible leaf at size {height}x{width} in 20 tries")


def _seedling_photo(rng, height, width, min_visible_pixels, on, moss):
    small = on == "soil" or rng.random() < 0.5
    shorter = min(height, width)
    side = real.crop_side(rng, shorter) if small else shorter
    grow = max(1.0, 3.0 * side / shorter) if small else 1.0
    big_h, big_w = round(height * grow), round(width * grow)
    scale = min(big_h, big_w)
    light = rng.uniform(0.0, 2.0 * math.pi)
    cx = big_w / 2.0 + rng.normal(0.0, 0.06) * scale
    cy = big_h / 2.0 + rng.normal(0.0, 0.06) * scale
    if on == "soil":
        n = int(rng.integers(4, 9))
        reach = scale * rng.uniform(0.32, 0.55)
    else:
        n = int(rng.integers(2, 7))
        reach = scale * (rng.uniform(0.25, 0.45) if small else rng.uniform(0.1, 0.3))
    leaves = real.seedling_leaves(rng, cx, cy, reach, n)
    outlines = leaf_outlines(leaves, _BLADE_STATIONS)
    ids = paint(outlines, (big_h, big_w))
    # A leaf wholly hidden or out of frame goes; a small crop's threshold is applied once reduced.
    least = 1 if small else min_visible_pixels
    keep = np.flatnonzero(np.bincount(ids.ravel(), minlength=n + 1)[1:] >= least)
    if len(keep) < n:
        leaves = [leaves[k] for k in keep]
        ids = paint(outlines[keep], (big_h, big_w))
    parts = np.zeros((big_h, big_w), np.uint8)
    if on == "soil":
        layout = "pot" if rng.random() < 0.5 else "soil"
        # The seedling grows in the soil; the pot's rim may cross the frame.
        soil_r = scale * rng.uniform(0.6, 1.3)
        away, turn = soil_r * rng.uniform(0.0, 0.85), rng.uniform(0.0, 2.0 * math.pi)
        pot = (cx + away * math.cos(turn), cy + away * math.sin(turn), soil_r)
        planes, soil = _scene(rng, big_h, big_w, layout, pot, light, grit=rng.uniform(2.5, 6.0))
        if moss is not None:
            parts[real.paint_bryophytes(moss, planes, soil, grit=3.0) > 0.5] = MOSS
    else:
        planes, _ = real.plate_planes(rng, big_h, big_w, light)
        cotyledon = leaves[0].length if leaves else reach
        step = max(1.5, 0.05 * cotyledon)
        direction = rng.uniform(0.0, 2.0 * math.pi)
        hypocotyl, roots = real.seedling_axis(rng, cx, cy, direction, cotyledon, step)
        for _ in range(int(rng.integers(0, 4))):  # other seedlings' roots crossing the frame
            edge = rng.uniform(0.0, 2.0 * math.pi)
            x0, y0 = cx - math.cos(edge) * scale, cy - math.sin(edge) * scale
            roots.append(real.path(rng, x0, y0, edge + rng.normal(0.0, 0.3), 2.0 * scale, step, 0.05))
        root_cover = real.line_coverage((big_h, big_w), roots, max(1.0, cotyledon * rng.uniform(0.03, 0.06)))
        stem_cover = real.line_coverage((big_h, big_w), [hypocotyl], max(1.5, cotyledon * rng.uniform(0.08, 0.15)))
        if rng.random() < 0.75:  # pale green to white hypocotyls, or pinkish purple ones
            stem_rgb = real.hsv_colour(rng, (60.0, 100.0), (0.1, 0.35), (0.75, 0.95))
        else:
            stem_rgb = real.hsv_colour(rng, (300.0, 345.0), (0.15, 0.4), (0.6, 0.85))
        real.blend(planes, root_cover, real.hsv_colour(rng, (40.0, 70.0), (0.02, 0.12), (0.85, 0.99)),
                   rng.uniform(0.6, 0.95))
        real.blend(planes, stem_cover, stem_rgb)
        parts[root_cover >= 128] = ROOT
        parts[stem_cover >= 128] = HYPOCOTYL
    parts[ids > 0] = 0
    if leaves:
        _colour_leaves(rng, planes, ids, leaves, light)
        cast = leaf_shadows(rng, ids, len(leaves), light, reach=(0.003, 0.012))
        cast *= -rng.uniform(0.3, 0.8)
        cast += 1.0
        planes *= cast
    if on == "agar":
        real.condensation(rng, planes, light, dense=rng.random() < 0.7)
    if small:
        h, w = max(1, round(height * side / shorter)), max(1, round(width * side / shorter))
        planes = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in planes])
        ids = real.downscale_ids(ids, h, w)
        parts = cv2.resize(parts, (w, h), interpolation=cv2.INTER_NEAREST)
        # A blurred close-up: the optics of a crop from a larger photograph.
        blur = rng.uniform(0.2, 0.9)
        for p in planes:
            cv2.GaussianBlur(p, (0, 0), blur, dst=p)
        least = max(6, round(min_visible_pixels * (h / height) ** 2))
    else:
        least = min_visible_pixels
    ids = drop_remnants(ids, least)
    parts[ids > 0] = 0
    return _camera(rng, planes), ids, parts


def check_clutter(clutter) -> float:
    """``clutter`` as a float in [0, 1]; ValueError naming the value otherwise."""
    try:
        value = float(clutter)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"clutter is the share of images with distractors, in [0, 1]; got {clutter!r}")
    return value


def neighbour_leaves(rng: np.random.Generator, height: int, width: int, centre: tuple[float, float],
                     radius: float, stalks: np.random.Generator | None = None) -> tuple[np.ndarray, list[Leaf]]:
    """Leaves of 1 to 3 neighbouring plants reaching into the frame from its edges, as in a
    photograph cropped from a tray: ([H, W] uint8 ids 0..M of their painted pixels, their M
    leaves). Each neighbour is centred near an edge, from 0.3 of its radius inside the frame to
    0.8 outside, pushed outwards until it is 0.9 ``radius`` + half its own radius from the plant
    at ``centre``, or left out. They are distractors: painted in the photograph, never in the
    label. ``stalks``: real petioles, see ``sample_leaves``.
    """
    scale = min(height, width)
    leaves: list[Leaf] = []
    for _ in range(int(rng.integers(1, 4))):
        r = max(radius, 0.15 * scale) * rng.uniform(0.7, 1.4)
        side = int(rng.integers(4))
        along = rng.uniform(0.0, width if side < 2 else height)
        # Pushed out of the frame, no further than 0.8 r, until clear of the plant.
        gap = 0.9 * radius + 0.5 * r
        for out in np.linspace(rng.uniform(-0.3, 0.5), 0.8, 12) * r:
            x, y = ((along, -out), (along, height + out), (-out, along), (width + out, along))[side]
            if math.hypot(x - centre[0], y - centre[1]) >= gap:
                leaves += sample_leaves(rng, int(rng.integers(4, 20)), x, y, r, stalks=stalks)
                break
    ids = paint(leaf_outlines(leaves, _BLADE_STATIONS), (height, width)) if leaves else np.zeros(
        (height, width), np.uint8)
    return ids, leaves


def drop_remnants(ids: np.ndarray, min_visible_pixels: int) -> np.ndarray:
    """Leaf ids without tiny remnants: the pieces of a leaf (8-connected) other than its largest
    that have fewer than ``max(4, min_visible_pixels // 2)`` pixels, slivers left between other
    leaves by rasterising and warping, then any leaf left with fewer than ``min_visible_pixels``,
    go to the label most common around them (the leaf covering them, or background). Ids are
    renumbered 1..N in their order. Annotators would not draw such remnants either."""
    from scipy.ndimage import find_objects

    smallest = max(4, min_visible_pixels // 2)
    out = ids.copy()
    n = int(ids.max())
    height, width = ids.shape
    kernel = np.ones((3, 3), np.uint8)

    def window(box):  # the leaf's box and a pixel around it
        return (slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height)),
                slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width)))

    def give_away(part, piece):
        ring = cv2.dilate(piece.astype(np.uint8), kernel).astype(bool) & ~piece
        around = part[ring]
        part[piece] = np.bincount(around, minlength=n + 1).argmax() if around.size else 0

    for leaf, box in enumerate(find_objects(out), start=1):
        if box is None:
            continue
        part = out[window(box)]  # a view: changes go to out
        count, pieces, stats, _ = cv2.connectedComponentsWithStats((part == leaf).astype(np.uint8), connectivity=8)
        if count > 2:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            for k in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < smallest) + 1:
                if k != largest:
                    x, y, w, h = stats[k, :4]
                    near = (slice(max(y - 1, 0), y + h + 1), slice(max(x - 1, 0), x + w + 1))
                    give_away(part[near], pieces[near] == k)
    areas = np.bincount(out.ravel(), minlength=n + 1)
    small = set((np.flatnonzero((areas[1:] > 0) & (areas[1:] < min_visible_pixels)) + 1).tolist())
    if small:
        for leaf, box in enumerate(find_objects(out), start=1):
            if leaf in small and box is not None:
                part = out[window(box)]
                give_away(part, part == leaf)
    present = np.flatnonzero(np.bincount(out.ravel(), minlength=n + 1)[1:]) + 1
    if len(present) == n:
        return out
    renumber = np.zeros(n + 1, np.uint8)
    renumber[present] = np.arange(1, len(present) + 1)
    return renumber[out]


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------

def sample_leaves(rng: np.random.Generator, n: int, cx: float, cy: float, radius: float,
                  rules: dict | None = None, stalks: np.random.Generator | None = None) -> list[Leaf]:
    """n varied leaves, oldest first, around (cx, cy) reaching about ``radius``.

    One blade shape, margin and petiole range per plant, varied per leaf; some leaves
    foreshortened (seen tilted) or curled. ``rules``: the "narrow" family's, see FAMILIES.
    ``stalks``: None for the thin petioles the random style always drew (8 to 16 % of the
    blade's width), or the generator of real ones (15 to 35 %, ``realism.petiole_stalks``, and
    longer: ``realism.REAL_PETIOLE_MAX``); ``rng`` makes the same draws either way.
    """
    def shape_and_margin():
        return list(_SHAPES)[rng.integers(len(_SHAPES))], _MARGINS[rng.choice(4, p=[0.35, 0.25, 0.25, 0.15])]

    shape, margin_kind = _drawn(shape_and_margin, lambda pair: pair[0] == "lanceolate" or pair[1] in
                                ("serrate", "lobed"), "narrow", rules)
    aspect_range, widest_range, round_range = _SHAPES[shape]
    petiole_max = rng.choice(real.THIN_PETIOLE_MAX if stalks is None else real.REAL_PETIOLE_MAX)
    if stalks is not None:
        stalk, stalk_base = real.petiole_stalks(stalks, n)
    tilt_p = rng.uniform(0.0, 0.6)  # share of foreshortened leaves
    curl = rng.uniform(0.0, 0.3)
    jitter = rng.uniform(2.0, 20.0)
    angle0 = rng.uniform(0.0, 2.0 * math.pi)
    spin = rng.choice([-1.0, 1.0])
    teeth = rng.uniform(6.0, 20.0)
    lobes = rng.uniform(2.0, 4.5)
    leaves = []
    for k in range(n):
        age = 1.0 - k / max(n - 1, 1)
        theta = angle0 + spin * math.radians(k * GOLDEN_ANGLE_DEG + rng.uniform(-jitter, jitter))
        length = radius * (0.25 + 0.75 * age**0.8) * rng.uniform(0.85, 1.15)
        longest = max(0.02, petiole_max * (0.5 + 0.5 * age))
        petiole = rng.uniform(0.01 if stalks is None else 0.45 * longest, longest)
        aspect = rng.uniform(*aspect_range)
        width = (1.0 - petiole) * length / aspect
        if rng.random() < tilt_p:
            length *= rng.uniform(0.5, 0.9)  # tilted towards or away from the camera
        offset = radius * rng.uniform(0.0, 0.05)
        blade = 1.0 - petiole
        # Margin: rows of (amplitude, cycles along the whole leaf, phase), per side.
        amp = rng.uniform(0.0, 0.035, size=(2, 4, 1)) * np.array([[1.0], [0.8], [0.5], [0.25]])
        cycles = rng.uniform(0.5, 1.0, size=(2, 4, 1)) * np.array([[1.0], [2.5], [6.0], [14.0]])
        phase = rng.uniform(0.0, 2.0 * math.pi, size=(2, 4, 1))
        rows = [np.concatenate([amp, cycles, phase], axis=2)]
        if margin_kind == "wavy":
            rows[0][:, :2, 0] *= 3.0
        elif margin_kind == "serrate":
            # A sawtooth: harmonics 1/j of the tooth frequency.
            a, p = rng.uniform(0.025, 0.07), rng.uniform(0.0, 2.0 * math.pi, (2, 1, 1))
            f = teeth * rng.uniform(0.9, 1.1) / blade
            j = np.arange(1.0, 4.0)[None, :, None]
            rows.append(np.concatenate([np.broadcast_to(a / j, (2, 3, 1)), np.broadcast_to(f * j, (2, 3, 1)),
                                        p * j], axis=2))
        elif margin_kind == "lobed":
            a, f = rng.uniform(0.12, 0.3), lobes / blade
            p = rng.uniform(0.0, 2.0 * math.pi, (2, 1, 1))
            rows.append(np.concatenate([np.full((2, 1, 1), a), np.full((2, 1, 1), f), p], axis=2))
        leaves.append(Leaf(
            x=cx + offset * math.cos(theta), y=cy + offset * math.sin(theta), angle=theta,
            length=length, width=width, petiole=petiole,
            bend=rng.uniform(-0.08, 0.08) + curl * rng.choice([-1.0, 1.0]) * rng.random(),
            widest=rng.uniform(*widest_range), roundness=rng.uniform(*round_range),
            margin=np.concatenate(rows, axis=1)))
        if stalks is not None:
            leaves[-1].stalk, leaves[-1].stalk_base = float(stalk[k]), float(stalk_base[k])
    return leaves


def _colour_leaves(rng: np.random.Generator, planes: np.ndarray, ids: np.ndarray, leaves: list[Leaf],
                   light: float, rules: dict | None = None) -> None:
    """Blade colours from yellow-green to dark blue-green, senescent old leaves, anthocyanin,
    lateral veins and specular highlights, painted on ``planes`` in place. ``rules``: the
    "purple" family's, see FAMILIES."""
    n = len(leaves)
    age = 1.0 - np.arange(n) / max(n - 1, 1)
    hue = rng.uniform(70.0, 160.0) + rng.normal(0.0, 6.0, n) - rng.uniform(0.0, 15.0) * (1.0 - age)
    sat = np.clip(rng.uniform(0.25, 0.85) + rng.normal(0.0, 0.08, n), 0.1, 1.0)
    val = np.clip(rng.uniform(0.2, 0.75) * rng.uniform(0.85, 1.1, n) * (1.0 + 0.25 * (1.0 - age)), 0.08, 0.92)
    if rng.random() < 0.3:  # senescence: the oldest leaves yellow
        old = int(rng.integers(1, max(1, n // 3) + 1))
        hue[:old] = rng.uniform(40.0, 62.0, old)
        sat[:old] = rng.uniform(0.5, 0.9, old)
        val[:old] = np.maximum(val[:old], rng.uniform(0.5, 0.8, old))
    hsv = np.stack([np.clip(hue, 35.0, 175.0) / 360.0, sat, val], axis=1)
    flat, k, t, vn, blade_t = paint_leaf_colours(rng, planes, ids, leaves, light, hsv=hsv)

    # Anthocyanin: purple flushing the margins and petioles of some plants.
    purple = hsv_to_rgb([rng.uniform(0.8, 0.95), rng.uniform(0.4, 0.8), rng.uniform(0.15, 0.4)]).astype(np.float32)
    flushed = _drawn(lambda: rng.random() < 0.3, bool, "purple", rules)
    antho = np.float32(rng.uniform(0.3, 0.9) if flushed else 0.0)
    # Lateral veins, running out from the midrib towards the tip.
    n_veins = np.float32(rng.uniform(3.0, 8.0))
    vein_amp = np.float32(rng.uniform(0.0, 0.12))
    # Specular highlights on the side facing the light, for glossy plants.
    gloss = np.float32(rng.uniform(0.0, 0.35) if rng.random() < 0.6 else 0.0)
    facing = np.float32([0.6 * math.sin(light - lf.angle) for lf in leaves])[k]
    in_blade = blade_t > 0.02
    vein = (np.cos(2.0 * np.pi * n_veins * (blade_t - 0.35 * np.abs(vn))) > 0.85) & in_blade
    extra = vein * vein_amp
    extra += gloss * np.exp(-np.square(vn - facing) * 8.0) * (1.0 - np.abs(vn)) * in_blade
    flush = None
    if antho > 0:
        flush = antho * np.maximum(np.square(vn), 1.0 - np.clip(blade_t * 5.0, 0.0, 1.0))
    for c in range(3):
        plane = planes[c].ravel()
        value = plane[flat]
        if flush is not None:
            value += (purple[c] - value) * flush
        value += extra
        plane[flat] = value


# ---------------------------------------------------------------------------------------------
# Scene
# ---------------------------------------------------------------------------------------------

def _random_colour(rng: np.random.Generator, sat=(0.0, 0.7), val=(0.1, 0.9)) -> np.ndarray:
    return hsv_to_rgb([rng.random(), rng.uniform(*sat), rng.uniform(*val)]).astype(np.float32)


def _background(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, scale: int) -> np.ndarray:
    """[h, w] float32 mix 0..1 between two background colours, on the 2x2 grid (xs, ys)."""
    h2, w2 = xs.shape
    kind = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
    a = rng.uniform(0.0, math.pi)
    u = xs * math.cos(a) + ys * math.sin(a)
    v = ys * math.cos(a) - xs * math.sin(a)
    if kind == "plain":
        return 0.5 + 0.3 * (fractal_noise(rng, h2, w2, cells=(2, 6)) - 0.5)
    if kind == "stone":
        return np.clip(2.5 * (fractal_noise(rng, h2, w2, cells=(8, 30, 100), weights=(0.3, 0.3, 0.4)) - 0.5) + 0.5, 0, 1)
    if kind == "fabric":
        period = max(6.0, scale * rng.uniform(0.012, 0.04))
        weave = np.sin(u * (2 * math.pi / period)) * np.sin(v * (2 * math.pi / period))
        return 0.5 + 0.35 * weave + 0.3 * (fractal_noise(rng, h2, w2, cells=(3, 12)) - 0.5)
    if kind in ("wood", "bench"):
        period = scale * rng.uniform(0.01, 0.04)
        grain = fractal_noise(rng, h2, w2, cells=(2, 5))
        mix = 0.5 + 0.4 * np.sin((v + grain * scale * rng.uniform(0.05, 0.2)) * (2 * math.pi / period))
        if kind == "bench":
            plank = scale * rng.uniform(0.1, 0.3)
            gap = (v / plank) % 1.0 < rng.uniform(0.03, 0.08)
            mix = np.where(gap, 0.0, 0.35 + 0.65 * mix).astype(np.float32)
        return mix
    if kind in ("mesh", "tray"):
        period = scale * (rng.uniform(0.02, 0.08) if kind == "mesh" else rng.uniform(0.15, 0.35))
        line = scale * (rng.uniform(0.002, 0.008) if kind == "mesh" else rng.uniform(0.01, 0.03))
        du = np.abs((u / period) % 1.0 - 0.5) * period
        dv = np.abs((v / period) % 1.0 - 0.5) * period
        d = np.minimum(0.5 * period - du, 0.5 * period - dv)
        return np.clip(1.0 - d / max(line, 1.0), 0.0, 1.0) * 0.9 + 0.1 * fractal_noise(rng, h2, w2, cells=(4, 20))
    period = scale * rng.uniform(0.04, 0.2)  # checker
    wave = np.sin(u * (2 * math.pi / period)) * np.sin(v * (2 * math.pi / period))
    return np.clip(0.5 + wave * np.float32(period / (4.0 * math.pi)), 0.0, 1.0)


def _scene(rng: np.random.Generator, height: int, width: int, layout: str, pot: tuple[float, float, float],
           light: float, moss: bool = False, grit: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """([3, H, W] float32 RGB planes in [0, 1]: background, pot(s) or tray or bare soil, soil, and
    with ``moss`` patches of moss or algae on the soil (no draw is made for them otherwise);
    [H, W] float32 coverage 0..1 of the soil, None where all is soil). ``grit``: how much larger
    the soil's clods and grains are than at 1 (a close-up)."""
    scale = min(height, width)
    pcx, pcy, soil_r = pot
    ys, xs = grid(height, width, 2)
    h2, w2 = ys.shape
    c1, c2 = _random_colour(rng), _random_colour(rng)
    mix = _background(rng, xs, ys, scale)

    rim_w = soil_r * rng.uniform(0.03, 0.12)
    square = layout == "tray" or rng.random() < 0.35
    dx, dy = xs - np.float32(pcx), ys - np.float32(pcy)
    if layout in ("neighbours", "tray"):
        spacing = 2.0 * (soil_r + rim_w) * (1.0 if layout == "tray" else rng.uniform(1.05, 1.5))
        dx = (dx + spacing / 2) % spacing - spacing / 2
        dy = (dy + spacing / 2) % spacing - spacing / 2
    if square:
        a = rng.normal(0.0, 0.05)
        dx, dy = dx * math.cos(a) + dy * math.sin(a), dy * math.cos(a) - dx * math.sin(a)
        power = rng.uniform(6.0, 12.0)
        r = (np.abs(dx) ** power + np.abs(dy) ** power) ** (1.0 / power)
    else:
        r = np.sqrt(dx * dx + dy * dy)
    facing = (dx * math.cos(light) + dy * math.sin(light)) / np.maximum(r, 1.0)

    soil_rgb = hsv_to_rgb([rng.uniform(0.03, 0.12), rng.uniform(0.15, 0.7), rng.uniform(0.06, 0.45)]).astype(np.float32)
    lumps = fractal_noise(rng, h2, w2, cells=(6 / grit, 30 / grit, 120 / grit), weights=(0.3, 0.3, 0.4))
    soil = 0.5 + lumps * (0.5 + 0.5 * smoothstep((soil_r - r) / (0.12 * soil_r)))
    pot_rgb = (_random_colour(rng, val=(0.05, 0.9)) if rng.random() < 0.6 else
               np.float32([(0.08, 0.08, 0.09), (0.25, 0.25, 0.27), (0.62, 0.33, 0.2)][rng.integers(3)]))
    q = (r - soil_r) / rim_w
    crest = np.sin(np.pi * np.clip(q, 0.0, 1.0))
    rim = 0.55 + 0.35 * crest + 0.25 * facing
    # Clipped: crest**8 would underflow to slow subnormal floats near the rim edges.
    glint = rng.uniform(0.0, 0.15) * np.maximum(crest, np.float32(0.05)) ** 8
    if layout == "soil":
        in_pot = in_soil = np.float32(1.0)
    else:
        in_pot = np.clip(0.5 * (soil_r + rim_w - r) + 0.5, 0.0, 1.0)
        in_soil = np.clip(0.5 * (soil_r - r) + 0.5, 0.0, 1.0)

    if moss:
        # Patches from a sparse film to a carpet, of fine-grained yellow- to dark green.
        patches = fractal_noise(rng, h2, w2, cells=(3, 8, 20), weights=(0.5, 0.3, 0.2))
        cover = np.clip((patches - rng.uniform(0.35, 0.65)) * rng.uniform(4.0, 12.0), 0.0, 1.0)
        grain = 0.55 + 0.9 * fractal_noise(rng, h2, w2, cells=(30, 90, 250), weights=(0.2, 0.3, 0.5))
        moss_rgb = hsv_to_rgb([rng.uniform(65.0, 135.0) / 360.0, rng.uniform(0.3, 0.85),
                               rng.uniform(0.12, 0.5)]).astype(np.float32)
    planes = np.empty((3, height, width), dtype=np.float32)
    for c in range(3):
        plane = c1[c] + (c2[c] - c1[c]) * mix
        plane += (pot_rgb[c] * rim + glint - plane) * in_pot
        plane += (soil_rgb[c] * soil - plane) * in_soil
        if moss:
            plane += (moss_rgb[c] * grain - plane) * (cover * in_soil)
        cv2.resize(plane.astype(np.float32), (width, height), dst=planes[c], interpolation=cv2.INTER_LINEAR)

    # Perlite, grit and clods, sharp-edged at full resolution, only on the soil.
    density = rng.uniform(0.0, 3e-3) * (500.0 / scale) ** 0.5 / (grit * grit)
    n_specks = min(int(height * width * density), 2000)
    centres = np.round(4.0 * rng.uniform(0.0, 1.0, (n_specks, 2)) * [width, height])
    axes = np.round(4.0 * rng.uniform(0.4, 2.2, (n_specks, 2)) * (scale / 500.0 * grit)) + 1
    tilt = rng.uniform(0.0, 180.0, n_specks)
    grey = rng.uniform(0.5, 0.95, n_specks)
    white = rng.random(n_specks) < rng.uniform(0.2, 0.8)
    colours = np.where(white[:, None], grey[:, None] * np.float32([1.0, 1.0, 0.95]),
                       grey[:, None] * rng.uniform(0.4, 1.2) * soil_rgb)
    speck_lut = np.zeros((3, 256), dtype=np.float32)
    speck_lut[:, 1:1 + min(n_specks, 255)] = colours[:255].T
    specks = np.zeros((height, width), dtype=np.uint8)
    for j, (c, ax, tl) in enumerate(zip(centres.astype(int).tolist(), axes.astype(int).tolist(), tilt.tolist())):
        cv2.ellipse(specks, c, ax, tl, 0.0, 360.0, 1 + j % 255, -1, cv2.LINE_8, 2)
    soil_full = None
    if layout != "soil":
        soil_full = cv2.resize(np.asarray(in_soil, dtype=np.float32), (width, height),
                               interpolation=cv2.INTER_LINEAR)
        specks[soil_full < 0.5] = 0
    has_speck = specks > 0
    for c in range(3):
        np.copyto(planes[c], cv2.LUT(specks, speck_lut[c]), where=has_speck)
    return planes, soil_full


# ---------------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------------

def _perspective(rng: np.random.Generator, height: int, width: int) -> np.ndarray | None:
    """A slight perspective homography (output -> drawn scene) or None (half the images). The
    output's corners come from points inside the drawn image, so no border is ever sampled."""
    if rng.random() < 0.5:
        return None
    inset = rng.uniform(0.0, 0.08, (4, 2)) * [width, height]
    src = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    signs = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    return cv2.getPerspectiveTransform(src + signs * inset.astype(np.float32), src)


def _warp_ids(ids: np.ndarray, warp: np.ndarray | None) -> np.ndarray:
    if warp is None:
        return ids
    h, w = ids.shape
    return cv2.warpPerspective(ids, warp, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def _camera(rng: np.random.Generator, planes: np.ndarray, rules: dict | None = None) -> np.ndarray:
    """Exposure, colour temperature, vignetting, uneven light, blur, noise, contrast, gamma and
    JPEG -> [H, W, 3] uint8 RGB. ``planes`` ([3, H, W] float RGB in [0, 1]) is used up.
    ``rules``: the "dark" family's, see FAMILIES."""
    _, height, width = planes.shape
    scale = min(height, width)
    ys, xs = grid(height, width, 8)
    cx, cy = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7)
    gx, gy = (float(g) / scale for g in rng.uniform(-0.4, 0.4, 2))
    vignette = rng.uniform(0.0, 1.5) if rng.random() < 0.6 else 0.0
    rr = (np.square(xs - cx) + np.square(ys - cy)) / (0.5 * (height * height + width * width))
    exposure = _drawn(lambda: math.exp(rng.uniform(math.log(0.3), math.log(2.2))), lambda e: e < _DARK, "dark",
                      rules)
    lighting = np.maximum(255.0 * exposure * (1.0 + gx * (xs - cx) + gy * (ys - cy)) * (1.0 - 0.5 * vignette * rr), 0.0)
    gain = cv2.resize(lighting.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    warm, tint = rng.uniform(-1.0, 1.0), rng.uniform(-0.06, 0.06)
    balance = np.float32([1.0 + 0.25 * warm, 1.0 + tint, 1.0 - 0.25 * warm])

    sigma = math.exp(rng.uniform(math.log(0.3), math.log(3.0))) * scale / 500.0
    motion = None
    if rng.random() < 0.15:
        length = int(rng.integers(3, max(4, int(0.03 * scale)) + 1))
        motion = np.zeros((length, length), np.float32)
        motion[length // 2] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), rng.uniform(0.0, 180.0), 1.0)
        motion = cv2.warpAffine(motion, rot, (length, length))
        motion /= motion.sum()
    noise_sd = math.exp(rng.uniform(math.log(0.8), math.log(12.0)))  # grey levels
    colour_noise = rng.random() < 0.5
    noise = None
    channels = []
    for c, plane in enumerate(planes):
        plane *= gain
        plane *= balance[c]
        cv2.GaussianBlur(plane, (0, 0), sigma, dst=plane)
        if motion is not None:
            cv2.filter2D(plane, -1, motion, dst=plane)
        if noise is None or colour_noise:
            # Triangular noise (sum of two uniform bytes): near Gaussian, cheap to draw.
            pair = rng.integers(0, 256, (2, height, width), dtype=np.uint8).astype(np.float32)
            noise = pair[0]
            noise += pair[1]
            noise -= 255.0
            noise *= np.float32(noise_sd / 73.6)  # the sum's standard deviation is ~73.6
            noise += 0.5
        plane += noise
        np.clip(plane, 0.0, 255.0, out=plane)
        channels.append(plane.astype(np.uint8))
    # Contrast (towards a grey level; low-contrast images), black level and gamma.
    contrast = rng.uniform(0.45, 1.15)
    pivot = rng.uniform(0.3, 0.6)
    gamma = rng.uniform(0.7, 1.4)
    levels = np.arange(256) / 255.0
    curve = np.clip(pivot + (levels - pivot) * contrast, 0.0, 1.0) ** gamma
    image = cv2.LUT(cv2.merge(channels), np.round(255.0 * curve).astype(np.uint8))
    if rng.random() < 0.6:
        quality = int(rng.integers(15, 96))
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image
