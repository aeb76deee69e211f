"""What real plant photographs show that the random style left out: the ``realism`` options.

Scored on real photographs, a model trained on the random style (``leafseg.synth.scenes``)
counted moss and algae on the soil as leaves, cut leaves where the blade meets the petiole,
merged or missed the leaves of tiny seedlings in small crops, missed the youngest leaves at a
rosette's centre, and had never seen seedlings on agar or paper. Each option draws one of them:

* ``moss``: the share of images with moss, an algal film or liverwort on the soil, in the
  photograph and never in the label (``paint_bryophytes``).
* ``petioles``: ``"thin"`` (as ever: 8 to 16 % of the blade's width) or ``"real"`` (15 to 35 %,
  as Arabidopsis petioles are, and long ones more common). The petiole is part of its leaf's
  label either way, as in the CVPPP benchmarks.
* ``seedlings``: the share of images that are a tight crop of a seedling of 4 to 8 leaves
  (two cotyledons and true leaves on long petioles) filling the frame, the image itself
  48 to 128 px (drawn larger, then reduced: ``downscale_ids``).
* ``agar``: the share of images of a seedling (cotyledons and up to four true leaves) on agar
  or germination paper in a petri dish, its hypocotyl and roots drawn but not labelled; half
  of them small crops like ``seedlings``.
* ``young``: the share of rosettes given one to four young leaves of a few pixels at their
  centre, each just above the labelling threshold or larger, labelled.

All off (``Realism()``), the random style draws what it always drew, byte for byte: the options'
decisions and their drawing come from generators of their own (``stream``: the image's
generator jumped ahead, which leaves the image's own draws untouched), so an option adds what
it draws and, where it can, changes nothing else: a mossy image is the plain one with moss on
its soil, the same leaves and the same label.

This module holds the pieces; ``leafseg.synth.scenes.random_rosette`` puts them together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
from scipy.special import ndtri

from leafseg.data.masks import hsv_to_rgb
from leafseg.synth.leaves import GOLDEN_ANGLE_DEG, Leaf, fractal_noise, grid, smoothstep

__all__ = ["REALISM", "PHOTO_MIX", "PETIOLES", "Realism", "check_realism", "stream", "decide", "moss_stream", "young_stream",
           "petiole_stream", "petiole_stalks",
           "young_leaves", "seedling_leaves", "seedling_axis", "paint_bryophytes", "plate_planes", "condensation",
           "downscale_ids", "crop_side", "path", "line_coverage", "blend", "hsv_colour"]

REALISM = {
    "moss": "share of images (0..1) with moss, an algal film or liverwort on the soil, never labelled",
    "petioles": "thin: petioles 8-16 % of the blade width (as ever); real: 15-35 %, long ones more common; "
                "labelled with their leaf either way",
    "seedlings": "share of images (0..1) that are a tight 48-128 px crop of a seedling of 4-8 leaves on long "
                 "petioles",
    "agar": "share of images (0..1) of a seedling on agar or germination paper, hypocotyl and roots not labelled",
    "young": "share of rosettes (0..1) with 1-4 young leaves of a few pixels at the centre, labelled",
}
# The mix that real photographs asked for: leaf-small version 2 fine-tuned on it
# (leafseg.training.recipe) and leafseg adapt draws its rosettes with it.
PHOTO_MIX = {"moss": 0.3, "petioles": "real", "seedlings": 0.15, "agar": 0.1, "young": 0.5}
PETIOLES = ("thin", "real")
# Crops of the seedlings and agar options: the shorter side, log-uniform in pixels.
CROP_SIDES = (48, 128)
# The generators of the options (``stream``): which jump of the image's generator each uses.
_DECIDE, _MOSS, _YOUNG, _PETIOLES = 1, 2, 3, 4


@dataclass(frozen=True)
class Realism:
    """The realism options, all off by default; see the module docstring and ``REALISM``."""

    moss: float = 0.0
    petioles: str = "thin"
    seedlings: float = 0.0
    agar: float = 0.0
    young: float = 0.0

    def __bool__(self) -> bool:
        return self != Realism()


def check_realism(realism, families: dict | None = None) -> Realism:
    """``realism`` (None, a dict of options or a ``Realism``) as a ``Realism``; ValueError naming an
    unknown option or a bad value, or style ``families`` rules given with seedling or agar
    images (which belong to no family)."""
    if realism is None:
        return Realism()
    if isinstance(realism, Realism):
        options = {f.name: getattr(realism, f.name) for f in fields(Realism)}
    else:
        options = dict(realism)
    for name, value in options.items():
        if name not in REALISM:
            raise ValueError(f"unknown realism option {name!r}: one of {', '.join(REALISM)}")
        if name == "petioles":
            if value not in PETIOLES:
                raise ValueError(f"realism option petioles: one of {', '.join(PETIOLES)}, got {value!r}")
            continue
        try:
            share = float(value)
        except (TypeError, ValueError):
            share = math.nan
        if isinstance(value, (bool, np.bool_)) or not 0.0 <= share <= 1.0:
            raise ValueError(f"realism option {name} is a share of images in [0, 1]; got {value!r}")
        options[name] = share
    out = Realism(**options)
    if out.seedlings + out.agar > 1.0:
        raise ValueError(f"realism options seedlings and agar are shares of the same images: their sum must be at "
                         f"most 1, got {out.seedlings:g} + {out.agar:g}")
    if families and (out.seedlings or out.agar):
        raise ValueError(f"style families ({', '.join(families)}) are drawn by rosette images only, and the realism "
                         f"options seedlings and agar draw other images: use one or the other")
    return out


def stream(rng: np.random.Generator, which: int) -> np.random.Generator:
    """An option's own generator: ``rng``'s bit generator jumped ``which`` times (2**127 draws
    each for PCG64), ``rng`` itself untouched, so the option's draws move none of the image's."""
    return np.random.Generator(rng.bit_generator.jumped(which))


def decide(rng: np.random.Generator, realism: Realism) -> tuple[str, bool, bool]:
    """(kind of image: "rosette", "seedling" or "agar"; moss on its soil; young leaves at its
    centre) for the image whose generator is ``rng``. The three draws are made whatever the
    shares, so turning one option on leaves the other options' decisions as they were.
    ``rng`` is not advanced; call this, and take the options' streams, before drawing from it."""
    u_kind, u_moss, u_young = stream(rng, _DECIDE).random(3)
    kind = ("agar" if u_kind < realism.agar else "seedling" if u_kind < realism.agar + realism.seedlings
            else "rosette")
    return kind, bool(u_moss < realism.moss), bool(u_young < realism.young)


def moss_stream(rng: np.random.Generator) -> np.random.Generator:
    """The generator the moss of the image whose generator is ``rng`` is drawn with."""
    return stream(rng, _MOSS)


def young_stream(rng: np.random.Generator) -> np.random.Generator:
    """The generator the young leaves of the image whose generator is ``rng`` are drawn with."""
    return stream(rng, _YOUNG)


def petiole_stream(rng: np.random.Generator) -> np.random.Generator:
    """The generator the real petioles of the image whose generator is ``rng`` are drawn with."""
    return stream(rng, _PETIOLES)


# ---------------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------------

# Longest petiole of a plant, as a fraction of the leaf length, one drawn per plant: the random
# style's choices (none, short, medium, long) and, for real petioles, longer ones more often.
THIN_PETIOLE_MAX = (0.03, 0.25, 0.45, 0.65)
REAL_PETIOLE_MAX = (0.2, 0.35, 0.5, 0.6)


def petiole_stalks(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real petioles of one plant's n leaves: ([n] width where the blade starts, as a fraction of
    the blade's width, 0.15..0.35; [n] width at the base as a fraction of that, 0.55..0.95)."""
    plant = rng.uniform(0.17, 0.3)
    stalk = np.clip(plant * rng.uniform(0.85, 1.15, n), 0.15, 0.35)
    return stalk, rng.uniform(0.55, 0.95, n)


def young_leaves(rng: np.random.Generator, leaves: list[Leaf], centre: tuple[float, float], radius: float,
                 min_visible_pixels: int, room: int) -> list[Leaf]:
    """One to four young leaves (at most ``room``) for the centre of a rosette reaching about
    ``radius``, youngest (smallest) last: round blades on short petioles continuing the plant's
    golden-angle spiral from its last leaf, from about 1.2 to 6 times ``min_visible_pixels`` in
    area (a few pixels: the smallest a label holds) up to a fifth of the radius long."""
    count = min(int(rng.integers(1, 5)), room)
    if count <= 0:
        return []
    last = leaves[-1].angle if leaves else rng.uniform(0.0, 2.0 * math.pi)
    spin = rng.choice([-1.0, 1.0])
    # Blade area ~0.45 L * W and W ~ 0.75 L: length from the area.
    areas = np.sort(min_visible_pixels * np.exp(rng.uniform(math.log(1.2), math.log(6.0), count)))[::-1]
    lengths = np.minimum(np.sqrt(areas / (0.45 * 0.75)), max(0.2 * radius, 3.0))
    out = []
    for j, length in enumerate(lengths):
        theta = last + spin * math.radians((j + 1) * GOLDEN_ANGLE_DEG + rng.uniform(-10.0, 10.0))
        petiole = rng.uniform(0.05, 0.25)
        offset = min(radius * rng.uniform(0.0, 0.04), 0.3 * length)
        out.append(Leaf(x=centre[0] + offset * math.cos(theta), y=centre[1] + offset * math.sin(theta), angle=theta,
                        length=float(length), width=float((1.0 - petiole) * length / rng.uniform(1.0, 1.5)),
                        petiole=petiole, bend=rng.uniform(-0.06, 0.06), widest=rng.uniform(0.55, 0.7),
                        roundness=rng.uniform(0.4, 0.55), stalk=rng.uniform(0.2, 0.35), stalk_base=0.7))
    return out


def seedling_leaves(rng: np.random.Generator, cx: float, cy: float, reach: float, n: int) -> list[Leaf]:
    """The n leaves (2..12) of a seedling centred at (cx, cy), its longest about ``reach`` pixels,
    oldest first: two opposite cotyledons (round blades on long petioles), then n - 2 true leaves
    on a golden-angle spiral starting across the cotyledons, from about as long as the longest
    (the first pair) to a fifth of it, on long thin petioles (0.13 to 0.25 of the blade's width)."""
    axis = rng.uniform(0.0, 2.0 * math.pi)
    true = n - 2
    cotyledon = reach * (rng.uniform(0.9, 1.0) if true < 2 else rng.uniform(0.55, 0.8))
    leaves = []
    for j in range(2):
        length = cotyledon * rng.uniform(0.92, 1.08)
        petiole = rng.uniform(0.35, 0.55)
        leaves.append(Leaf(x=cx, y=cy, angle=axis + j * math.pi + rng.normal(0.0, 0.15), length=length,
                           width=(1.0 - petiole) * length / rng.uniform(0.95, 1.35), petiole=petiole,
                           bend=rng.normal(0.0, 0.05), widest=rng.uniform(0.5, 0.62), roundness=rng.uniform(0.3, 0.45),
                           stalk=rng.uniform(0.13, 0.25), stalk_base=rng.uniform(0.6, 0.9)))
    spin = rng.choice([-1.0, 1.0])
    theta = axis + math.pi / 2 + rng.normal(0.0, 0.2)
    for k in range(true):
        age = 1.0 - k / max(true - 1, 1)
        if k == 1:  # the first two true leaves nearly opposite
            theta += math.pi + rng.normal(0.0, 0.3)
        elif k > 1:
            theta += spin * math.radians(GOLDEN_ANGLE_DEG + rng.uniform(-12.0, 12.0))
        length = reach * (0.2 + 0.8 * age**0.9) * rng.uniform(0.85, 1.1)
        petiole = rng.uniform(0.3, 0.4 + 0.2 * age)
        amp = rng.uniform(0.0, 0.04, size=(2, 3, 1))
        cycles = rng.uniform(0.5, 1.0, size=(2, 3, 1)) * np.array([[2.0], [5.0], [9.0]])
        phase = rng.uniform(0.0, 2.0 * math.pi, size=(2, 3, 1))
        leaves.append(Leaf(x=cx, y=cy, angle=theta, length=length,
                           width=(1.0 - petiole) * length / rng.uniform(1.15, 1.7), petiole=petiole,
                           bend=rng.normal(0.0, 0.06), widest=rng.uniform(0.55, 0.72), roundness=rng.uniform(0.4, 0.6),
                           margin=np.concatenate([amp, cycles, phase], axis=2), stalk=rng.uniform(0.13, 0.25),
                           stalk_base=rng.uniform(0.6, 0.9)))
    return leaves


# The proportions of a seedling's hypocotyl and roots, in cotyledon lengths: (hypocotyl length
# range, main root length range, most laterals (exclusive), where laterals start (a 1/n of the
# root), their angle range from the root, their length range in root lengths, the bend of the
# hypocotyl, of the main root).
AGAR_AXIS = ((0.8, 3.0), (3.0, 10.0), 5, 5, (0.5, 1.3), (0.1, 0.4), 0.05, 0.07)


def seedling_axis(rng: np.random.Generator, x: float, y: float, direction: float, cotyledon: float,
                  step: float, shape=AGAR_AXIS) -> tuple[np.ndarray, list[np.ndarray]]:
    """A seedling's hypocotyl from where its cotyledons meet, (x, y), towards ``direction``, and
    its roots: ([K, 2] hypocotyl path, [main root, laterals...] paths), sized by the cotyledon
    length in the proportions ``shape`` (AGAR_AXIS: the main root 3 to 10 cotyledons long;
    leafseg.synth.trays draws its dishes' seedlings with its own)."""
    hypocotyl_range, root_range, laterals, start, angles, lengths, bend, root_bend = shape
    hypocotyl = path(rng, x, y, direction, cotyledon * rng.uniform(*hypocotyl_range), step, bend)
    end = hypocotyl[-1]
    heading = math.atan2(*(hypocotyl[-1] - hypocotyl[-2])[::-1])
    root = path(rng, end[0], end[1], heading, cotyledon * rng.uniform(*root_range), step, root_bend)
    roots = [root]
    for _ in range(int(rng.integers(0, laterals))):
        at = int(rng.integers(len(root) // start, len(root) - 1))
        ahead = math.atan2(*(root[at + 1] - root[at])[::-1])
        side = ahead + rng.choice([-1.0, 1.0]) * rng.uniform(*angles)
        roots.append(path(rng, root[at, 0], root[at, 1], side, len(root) * step * rng.uniform(*lengths), step, 0.1))
    return hypocotyl, roots


# ---------------------------------------------------------------------------------------------
# Moss, algae and liverwort
# ---------------------------------------------------------------------------------------------

def paint_bryophytes(rng: np.random.Generator, planes: np.ndarray, soil: np.ndarray | None, grit: float = 1.0
                     ) -> np.ndarray:
    """Paint what grows on old potting soil on ``planes`` ([3, H, W] float32 RGB 0..1, in place)
    where ``soil`` ([H, W] float32 0..1 coverage; None: everywhere) is:

    * moss (55 %): a carpet, scattered cushions or a band along the pot's edge of tiny granules,
      1 to 3 px at 500 px (``grit`` times that), yellow-green to bright green tips over darker
      green, thinning out into scattered specks at the patches' edges; no outline, no midrib;
    * an algal film (30 %): a flat, thin, darker olive-green film over the soil, its edges
      irregular and diffuse, the soil's texture showing through;
    * liverwort (15 %): flat, forking, dark-green ribbons (thalli) with a darker midline,
      radiating in small clusters.

    A quarter of the images get a second of the three. Returns [H, W] float32: how much of each
    pixel they cover (0..1).
    """
    _, height, width = planes.shape
    kinds = [int(rng.choice(3, p=[0.55, 0.3, 0.15]))]
    if rng.random() < 0.25:
        kinds.append((kinds[0] + int(rng.integers(1, 3))) % 3)
    cover = np.zeros((height, width), np.float32)
    # Algae lie flat on the soil, under moss and liverwort.
    for kind in sorted(kinds, key=lambda k: k != 1):
        drawn = (_moss, _algae, _liverwort)[kind](rng, planes, soil, grit)
        np.maximum(cover, drawn, out=cover)
    return cover


def _patches(rng: np.random.Generator, soil: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """[h4, w4] float32 0..1 on 4x4 cells: where the moss grows, a carpet over much of the soil,
    scattered cushions or a band along the soil's edge."""
    h4, w4 = -(-height // 4), -(-width // 4)
    layout = int(rng.choice(3, p=[0.35, 0.4, 0.25]))
    if layout == 2 and soil is None:
        layout = 1
    if layout == 0:  # a carpet
        noise = fractal_noise(rng, h4, w4, cells=(3, 8, 20), weights=(0.5, 0.3, 0.2))
        return np.clip((noise - rng.uniform(0.28, 0.5)) * rng.uniform(2.5, 6.0), 0.0, 1.0)
    scale = min(height, width)
    cushion = scale * rng.uniform(0.015, 0.06)  # radius, pixels
    cells = max(4.0, scale / (4.0 * cushion))
    noise = fractal_noise(rng, h4, w4, cells=(cells / 3.0, cells, 2.5 * cells), weights=(0.3, 0.5, 0.2))
    if layout == 1:  # scattered cushions
        return np.clip((noise - rng.uniform(0.5, 0.6)) * rng.uniform(4.0, 10.0), 0.0, 1.0)
    small = cv2.resize(soil, (w4, h4), interpolation=cv2.INTER_AREA)
    band = scale * rng.uniform(0.02, 0.08) / 4.0
    inner = cv2.GaussianBlur(small, (0, 0), band)
    edge = np.clip((small - inner) * 4.0, 0.0, 1.0) * small
    return np.clip(edge * (0.6 + 1.2 * (noise - 0.5)) * 1.8, 0.0, 1.0)


def _upsample(small: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def _moss(rng: np.random.Generator, planes: np.ndarray, soil: np.ndarray | None, grit: float) -> np.ndarray:
    _, height, width = planes.shape
    scale = min(height, width)
    patches = _patches(rng, soil, height, width)
    # Granules: white noise blurred to the granule size, in standard deviations. A pixel is moss
    # where the noise exceeds the quantile that leaves ``patches`` of the granules standing, so
    # a thin patch is a scatter of specks; even the densest carpet keeps its darkest sixth as
    # gaps between the granules, and each granule is lit at its top (bright where the noise
    # peaks), so moss is a texture, never a smooth area with an outline.
    sigma = rng.uniform(0.5, 1.0) * max(scale / 500.0, 0.6) * grit
    noise = rng.standard_normal((height, width), dtype=np.float32)
    cv2.GaussianBlur(noise, (0, 0), sigma, dst=noise)
    noise *= np.float32(1.0 / max(float(noise.std()), 1e-6))
    threshold = _upsample(np.maximum(ndtri(1.0 - np.clip(patches, 0.002, 0.998)), -1.0), height, width)
    present = np.clip((noise - threshold) * rng.uniform(1.5, 3.0), 0.0, 1.0)
    dense = _upsample(patches, height, width)
    if soil is not None:
        present *= soil
        dense *= soil
    tip_hue = rng.uniform(65.0, 115.0)
    tip = hsv_to_rgb([tip_hue / 360.0, rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.85)]).astype(np.float32)
    base = hsv_to_rgb([(tip_hue + rng.uniform(0.0, 20.0)) / 360.0, rng.uniform(0.5, 0.9),
                       rng.uniform(0.12, 0.3)]).astype(np.float32)
    gap = hsv_colour(rng, (50.0, 100.0), (0.3, 0.7), (0.03, 0.1))
    lift = np.clip(0.45 + 0.3 * noise, 0.0, 1.0)
    # Broad variation between cushions: some yellower or browner, some darker.
    tone = 0.7 + 0.6 * _upsample(fractal_noise(rng, -(-height // 8), -(-width // 8), cells=(4, 12)), height, width)
    shade = dense * np.float32(rng.uniform(0.4, 0.85))
    for c in range(3):
        plane = planes[c]
        plane += (gap[c] - plane) * shade
        colour = (base[c] + (tip[c] - base[c]) * lift) * tone
        plane += (colour - plane) * present
    return np.maximum(present, 0.5 * dense)


def _algae(rng: np.random.Generator, planes: np.ndarray, soil: np.ndarray | None, grit: float) -> np.ndarray:
    _, height, width = planes.shape
    h4, w4 = -(-height // 4), -(-width // 4)
    film = fractal_noise(rng, h4, w4, cells=(2, 6, 16), weights=(0.45, 0.35, 0.2))
    cover = smoothstep((film - rng.uniform(0.3, 0.5)) * rng.uniform(1.5, 3.5))
    mottle = _upsample(fractal_noise(rng, -(-height // 2), -(-width // 2),
                                     cells=tuple(c / grit for c in (20.0, 60.0, 160.0)), weights=(0.3, 0.4, 0.3)),
                       height, width)
    # Thin: the soil's own texture shows through, more where the film is patchy.
    alpha = _upsample(cover, height, width) * np.float32(rng.uniform(0.5, 0.85)) * (0.4 + 1.0 * mottle)
    np.clip(alpha, 0.0, 1.0, out=alpha)
    if soil is not None:
        alpha *= soil
    rgb = hsv_colour(rng, (70.0, 100.0), (0.4, 0.75), (0.12, 0.3))
    for c in range(3):
        plane = planes[c]
        plane += (rgb[c] * (0.75 + 0.5 * mottle) - plane) * alpha
    return alpha


def _liverwort(rng: np.random.Generator, planes: np.ndarray, soil: np.ndarray | None, grit: float) -> np.ndarray:
    _, height, width = planes.shape
    scale = min(height, width)
    places = np.flatnonzero(soil.ravel() > 0.5) if soil is not None else None
    segments = []
    breadth = scale * rng.uniform(0.02, 0.045) * min(grit, 3.0)
    step = max(1.5, breadth / 4.0)
    for _ in range(int(rng.integers(1, 5))):
        if places is not None and len(places):
            y, x = divmod(int(places[rng.integers(len(places))]), width)
        else:
            y, x = int(rng.integers(height)), int(rng.integers(width))
        lobes = int(rng.integers(1, 6))
        turn = rng.uniform(0.0, 2.0 * math.pi)
        for lobe in range(lobes):
            # Strap-shaped lobes spread around a centre, each forking in two once or twice.
            angle = turn + 2.0 * math.pi * lobe / lobes + rng.normal(0.0, 0.3)
            todo = [(float(x), float(y), angle, breadth * rng.uniform(1.2, 2.5), 0)]
            while todo:
                px, py, a, length, depth = todo.pop()
                piece = path(rng, px, py, a, length, step, 0.03)
                segments.append(piece)
                if depth < 2 and rng.random() < (0.85 if depth == 0 else 0.35):
                    fork = rng.uniform(0.25, 0.5)
                    heading = math.atan2(*(piece[-1] - piece[-2])[::-1])
                    for sign in (-1.0, 1.0):
                        todo.append((piece[-1, 0], piece[-1, 1], heading + sign * fork,
                                     length * rng.uniform(0.6, 0.9), depth + 1))
    body = line_coverage((height, width), segments, breadth)
    rib = line_coverage((height, width), segments, max(1.0, 0.12 * breadth))
    if soil is not None:
        keep = (soil * 255.0).astype(np.uint8)
        body = cv2.min(body, keep)
        rib = cv2.min(rib, keep)
    x0, y0, w, h = cv2.boundingRect(body)
    alpha = body.astype(np.float32) * np.float32(1.0 / 255.0)
    if w:
        # Flat and matt, faintly dotted with air pores, a darker groove down each lobe.
        window = (slice(y0, y0 + h), slice(x0, x0 + w))
        pores = 0.85 + 0.3 * fractal_noise(rng, h, w, cells=(max(4.0, w / 3.0), max(8.0, w / 1.5)), weights=(0.5, 0.5))
        groove = 1.0 - 0.35 * rib[window].astype(np.float32) / 255.0
        green = hsv_to_rgb([rng.uniform(95.0, 135.0) / 360.0, rng.uniform(0.45, 0.75), rng.uniform(0.18, 0.38)])
        weight = alpha[window]
        for c in range(3):
            plane = planes[c][window]
            plane += (np.float32(green[c]) * pores * groove - plane) * weight
    return alpha


# ---------------------------------------------------------------------------------------------
# Agar and paper
# ---------------------------------------------------------------------------------------------

def plate_planes(rng: np.random.Generator, height: int, width: int, light: float) -> tuple[np.ndarray, str]:
    """([3, H, W] float32 RGB 0..1, kind): the floor of a petri dish seen close up from above:
    translucent agar ("agar", half of them: pale grey to beige, a gradient of the light through
    it, faint cloudiness) or germination paper ("blue paper", "white paper": fibres and damp
    patches); in a third of them the dish's rim crosses the frame, the bench beyond it."""
    ys, xs = grid(height, width, 2)
    h2, w2 = ys.shape
    scale = min(height, width)
    kind = ("agar", "agar", "blue paper", "white paper")[int(rng.integers(4))]
    a = rng.uniform(0.0, 2.0 * math.pi)
    ramp = ((xs - width / 2.0) * math.cos(a) + (ys - height / 2.0) * math.sin(a)) / scale
    if kind == "agar":
        base = hsv_colour(rng, (25.0, 60.0), (0.03, 0.22), (0.5, 0.85))
        texture = 1.0 + 0.08 * (fractal_noise(rng, h2, w2, cells=(2, 6, 14)) - 0.5) + rng.uniform(0.05, 0.25) * ramp
    else:
        base = (hsv_colour(rng, (195.0, 225.0), (0.25, 0.55), (0.5, 0.85)) if kind == "blue paper"
                else hsv_colour(rng, (0.0, 360.0), (0.0, 0.06), (0.78, 0.95)))
        fibres = fractal_noise(rng, h2, w2, cells=(60, 160, 320), weights=(0.3, 0.3, 0.4))
        damp = smoothstep((fractal_noise(rng, h2, w2, cells=(2, 5)) - rng.uniform(0.45, 0.6)) * 5.0)
        texture = (1.0 + rng.uniform(0.04, 0.12) * (fibres - 0.5)) * (1.0 - rng.uniform(0.0, 0.2) * damp)
        texture += rng.uniform(0.0, 0.1) * ramp
    bench = hsv_colour(rng, (0.0, 360.0), (0.0, 0.4), (0.05, 0.4))
    outside = np.zeros_like(xs)
    rim = np.zeros_like(xs)
    if rng.random() < 0.35:
        radius = scale * rng.uniform(1.2, 3.0)
        turn = rng.uniform(0.0, 2.0 * math.pi)
        reach = radius + scale * rng.uniform(-0.45, 0.05)  # the rim passes this far from the centre
        cx, cy = width / 2.0 - reach * math.cos(turn), height / 2.0 - reach * math.sin(turn)
        r = np.sqrt(np.square(xs - cx) + np.square(ys - cy))
        wall = scale * rng.uniform(0.01, 0.03)
        outside = np.clip((r - radius - wall) * 0.5 + 0.5, 0.0, 1.0)
        rim = np.sin(np.pi * np.clip((r - radius) / wall, 0.0, 1.0)) * (0.9 + 0.2 * math.cos(turn - light))
    planes = np.empty((3, height, width), np.float32)
    for c in range(3):
        plane = base[c] * texture
        plane += (np.float32(0.5 + 0.5 * base[c]) * 1.1 - plane) * rim
        plane += (bench[c] - plane) * outside
        cv2.resize(plane.astype(np.float32), (width, height), dst=planes[c], interpolation=cv2.INTER_LINEAR)
    return planes, kind


def condensation(rng: np.random.Generator, planes: np.ndarray, light: float, dense: bool = True) -> None:
    """What the dish's lid adds over everything, in place: soft highlights of the lamps on it,
    droplets of condensation (a darker edge and a bright spot towards the light; clustered,
    0.5 to 4 px in radius at 500 px; ``dense``: many) and sometimes a light fog."""
    _, height, width = planes.shape
    scale = min(height, width)
    ys, xs = grid(height, width, 4)
    glow = np.zeros_like(xs)
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(0.0, width), rng.uniform(0.0, height)
        a, b = scale * rng.uniform(0.1, 0.4), scale * rng.uniform(0.02, 0.1)
        turn = rng.uniform(0.0, math.pi)
        u = (xs - cx) * math.cos(turn) + (ys - cy) * math.sin(turn)
        v = (ys - cy) * math.cos(turn) - (xs - cx) * math.sin(turn)
        glow += np.float32(rng.uniform(0.15, 0.5)) * np.exp(-(np.square(u / a) + np.square(v / b)))
    glow = _upsample(glow, height, width)
    count = int(height * width * (rng.uniform(5e-4, 4e-3) if dense else rng.uniform(0.0, 5e-4)) * (500.0 / scale) ** 2)
    body = np.zeros((height, width), np.uint8)
    spark = np.zeros((height, width), np.uint8)
    if count:
        # Clustered: candidates kept where a coarse noise is high.
        crowd = fractal_noise(rng, 16, 16, cells=(3, 8))
        at = rng.uniform(0.0, 1.0, (3 * count, 2))
        kept = at[rng.random(3 * count) < np.clip(2.5 * (crowd[(at[:, 1] * 15.99).astype(int),
                                                                 (at[:, 0] * 15.99).astype(int)] - 0.3), 0.0, 1.0)]
        kept = kept[:count] * [width, height]
        radii = np.exp(rng.uniform(math.log(0.5), math.log(4.0), len(kept))) * scale / 500.0
        off = (-0.35 * np.cos(light), -0.35 * np.sin(light))
        for (x, y), r in zip(kept.tolist(), radii.tolist()):
            # Large droplets are rings (a darker edge), small ones dark dots.
            cv2.circle(body, (round(4 * x), round(4 * y)), max(1, round(4 * r)), 255,
                       max(1, round(0.35 * r)) if r > 1.5 else -1, cv2.LINE_AA, 2)
            cv2.circle(spark, (round(4 * (x + off[0] * r)), round(4 * (y + off[1] * r))), max(1, round(1.2 * r)), 255,
                       -1, cv2.LINE_AA, 2)
    fog = rng.uniform(0.05, 0.2) if rng.random() < 0.3 else 0.0
    edge = body.astype(np.float32) * np.float32(rng.uniform(0.1, 0.3) / 255.0)
    shine = spark.astype(np.float32) * np.float32(rng.uniform(0.3, 0.7) / 255.0)
    for c in range(3):
        plane = planes[c]
        plane *= 1.0 - edge
        plane += (1.0 - plane) * np.clip(glow + shine, 0.0, 1.0)
        if fog:
            plane += (np.float32(0.85) - plane) * np.float32(fog)


# ---------------------------------------------------------------------------------------------
# Small crops
# ---------------------------------------------------------------------------------------------

def crop_side(rng: np.random.Generator, longest: int) -> int:
    """The shorter side of a small crop: log-uniform in ``CROP_SIDES``, at most ``longest``."""
    lo, hi = CROP_SIDES
    return min(int(round(math.exp(rng.uniform(math.log(lo), math.log(hi))))), longest)


def downscale_ids(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """[height, width] uint8 leaf ids of ``ids`` (uint8, larger) reduced by majority: each output
    pixel takes the id covering most of its area (area interpolation of each id's mask), ties
    to the lower id."""
    best = np.full((height, width), -1.0, np.float32)
    out = np.zeros((height, width), np.uint8)
    for k in np.flatnonzero(np.bincount(ids.ravel(), minlength=1)):
        share = cv2.resize((ids == k).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        better = share > best
        out[better] = k
        best[better] = share[better]
    return out


# ---------------------------------------------------------------------------------------------
# Drawing helpers (also the dishes' of leafseg.synth.trays)
# ---------------------------------------------------------------------------------------------

def path(rng: np.random.Generator, x: float, y: float, angle: float, length: float, step: float,
         wiggle: float) -> np.ndarray:
    """[K, 2] (x, y) points of a gently bending path of ``length`` pixels from (x, y)."""
    n = max(2, math.ceil(length / step))
    turns = angle + np.cumsum(rng.normal(0.0, wiggle, n))
    steps = (length / n) * np.stack([np.cos(turns), np.sin(turns)], axis=1)
    return np.concatenate([[[x, y]], [x, y] + np.cumsum(steps, axis=0)])


def line_coverage(shape: tuple[int, int], paths: list[np.ndarray], thickness: float) -> np.ndarray:
    """[H, W] uint8 anti-aliased coverage (0..255) of polylines ``thickness`` pixels wide."""
    mask = np.zeros(shape, np.uint8)
    if paths:
        cv2.polylines(mask, [np.round(p * 4.0).astype(np.int32) for p in paths], False, 255,
                      max(1, round(thickness)), cv2.LINE_AA, 2)
    return mask


def blend(planes: np.ndarray, coverage: np.ndarray, rgb, alpha: float = 1.0) -> None:
    """planes ([3, H, W] float RGB) towards ``rgb`` by ``alpha`` x coverage (uint8 0..255), in place."""
    x, y, w, h = cv2.boundingRect(coverage)
    if w == 0:
        return
    window = (slice(y, y + h), slice(x, x + w))
    weight = coverage[window].astype(np.float32) * np.float32(alpha / 255.0)
    for c in range(3):
        plane = planes[c][window]
        plane += (np.float32(rgb[c]) - plane) * weight


def hsv_colour(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float],
               val: tuple[float, float]) -> np.ndarray:
    """RGB float32 of a colour drawn uniformly in the given ranges (hue in degrees)."""
    return hsv_to_rgb([rng.uniform(*hue) / 360.0, rng.uniform(*sat), rng.uniform(*val)]).astype(np.float32)
